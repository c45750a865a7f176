"""The Signal API document, request by request: creation, identity, corrections, idempotency."""

from __future__ import annotations

import time

import httpx

from tests.ledger.helpers import API, DISPLAY_TIME, EPOCH_SECONDS, TRANSACTION_ID, TenantClient

DOC_CALL = {"transaction_id": "00000000-00000001", "external_id": "doc-call", "start_time": "1435993200"}
DOC_CALL_BRIEF = {
    "transaction_id": "00000000-00000001",
    "start_time_t": "1435993200",
    "call_start_time": "07/04/2015 07:00 AM UTC",
}
EMPTY_CUSTOM_PARAMETERS = {"custom_parameter_1": "", "custom_parameter_2": "", "custom_parameter_3": ""}


def doc_request(token: str, partner_unique_id: str, description: str) -> dict[str, object]:
    return {
        "search": {"transaction_id": "00000000-00000001"},
        "signal": {"name": "Quote", "partner_unique_id": partner_unique_id, "description": description},
        "oauth_token": token,
    }


async def test_the_documents_three_requests(client: TenantClient, http: httpx.AsyncClient) -> None:
    assert (await client.call(**DOC_CALL)).status_code == 201
    url = f"{API}/transactions/signals.json"
    before = int(time.time())

    first = await http.post(url, json=doc_request(client.token, "1", "Honda Accord 2015"))
    second = await http.post(url, json=doc_request(client.token, "2", "Toyota Camry 2015"))
    third = await http.post(url, json=doc_request(client.token, "1", "Honda Civic 2012"))

    assert (first.status_code, second.status_code, third.status_code) == (201, 201, 200)
    created = first.json()
    assert created == {
        "signal": {
            "transaction_id": TRANSACTION_ID,
            "corrects_transaction_id": None,
            "name": "Quote",
            "partner_unique_id": "1",
            "description": "Honda Accord 2015",
            "occurred_at_time_t": EPOCH_SECONDS,
            "occurred_at_time": DISPLAY_TIME,
            "value": "true",
            **EMPTY_CUSTOM_PARAMETERS,
        },
        "call": DOC_CALL_BRIEF,
    }
    assert before <= int(created["signal"]["occurred_at_time_t"]) <= time.time()
    assert second.json() == {
        "signal": {
            "transaction_id": TRANSACTION_ID,
            "corrects_transaction_id": None,
            "name": "Quote",
            "partner_unique_id": "2",
            "description": "Toyota Camry 2015",
            "occurred_at_time_t": EPOCH_SECONDS,
            "occurred_at_time": DISPLAY_TIME,
            "value": "true",
            **EMPTY_CUSTOM_PARAMETERS,
        },
        "call": DOC_CALL_BRIEF,
    }
    # The update keeps the first signal's occurrence time and gets a new transaction id.
    assert third.json() == {
        "signal": {
            "transaction_id": TRANSACTION_ID,
            "corrects_transaction_id": created["signal"]["transaction_id"],
            "name": "Quote",
            "partner_unique_id": "1",
            "description": "Honda Civic 2012",
            "occurred_at_time_t": created["signal"]["occurred_at_time_t"],
            "occurred_at_time": created["signal"]["occurred_at_time"],
            "value": "true",
            **EMPTY_CUSTOM_PARAMETERS,
        },
        "call": DOC_CALL_BRIEF,
    }
    ids = [response.json()["signal"]["transaction_id"] for response in (first, second, third)]
    assert ids == sorted(set(ids))


async def test_put_and_the_transaction_path_reach_the_same_signal(
    client: TenantClient, http: httpx.AsyncClient
) -> None:
    await client.call(**DOC_CALL)
    body = {"signal": {"name": "Sale", "sale_amount": "10"}, "oauth_token": client.token}

    created = await http.put(f"{API}/transactions/00000000-00000001/signals", json=body)
    same = await http.post(f"{API}/transactions/00000000-00000001/signals.json", json=body)
    changed = await http.put(
        f"{API}/transactions/signals",
        json={
            **body,
            "search": {"transaction_id": "00000000-00000001"},
            "signal": {"name": "sale", "sale_amount": 12.5},
        },
    )

    assert (created.status_code, same.status_code, changed.status_code) == (201, 200, 200)
    assert same.json() == created.json()
    assert changed.json()["signal"]["corrects_transaction_id"] == created.json()["signal"]["transaction_id"]
    assert changed.json()["signal"]["sale_amount"] == "12.50"
    assert changed.json()["signal"]["name"] == "Sale"


async def test_an_identical_repost_changes_nothing(client: TenantClient) -> None:
    await client.call(**DOC_CALL)
    signal = {
        "name": "Sale",
        "partner_unique_id": "7",
        "occurred_at_time": "1440607313",
        "sale_amount": "100.00",
        "value": "true",
    }
    first = await client.signal({"transaction_id": "00000000-00000001"}, signal)
    rows_before = await client.transactions()

    again = await client.signal({"transaction_id": "00000000-00000001"}, {**signal, "value": 1})

    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert await client.transactions() == rows_before


async def test_corrections_chain_and_keep_unsent_fields(client: TenantClient) -> None:
    await client.call(**DOC_CALL)
    search = {"transaction_id": "00000000-00000001"}
    first = (
        await client.signal(
            search,
            {
                "name": "Sale",
                "description": "order 1",
                "sale_amount": "99.99",
                "custom_parameter_2": "blue",
                "occurred_at_time": "1440607313",
            },
        )
    ).json()
    second = (await client.signal(search, {"name": "Sale", "value": "false"})).json()
    third = (await client.signal(search, {"name": "Sale", "sale_amount": ""})).json()

    assert second["signal"]["corrects_transaction_id"] == first["signal"]["transaction_id"]
    assert third["signal"]["corrects_transaction_id"] == second["signal"]["transaction_id"]
    assert second["signal"] | {"transaction_id": None, "corrects_transaction_id": None} == {
        "transaction_id": None,
        "corrects_transaction_id": None,
        "name": "Sale",
        "partner_unique_id": "",
        "description": "order 1",
        "occurred_at_time_t": "1440607313",
        "occurred_at_time": "08/26/2015 04:41 PM UTC",
        "sale_amount": "99.99",
        "value": "false",
        "custom_parameter_1": "",
        "custom_parameter_2": "blue",
        "custom_parameter_3": "",
    }
    assert "sale_amount" not in third["signal"]
    rows = await client.transactions(transaction_type="signal", include_columns="signals")
    assert [row["transaction_id"] for row in rows] == [
        first["signal"]["transaction_id"],
        second["signal"]["transaction_id"],
        third["signal"]["transaction_id"],
    ]
    assert rows[-1]["signals"] == [
        {
            key: value
            for key, value in third["signal"].items()
            if key not in ("transaction_id", "corrects_transaction_id")
        }
    ]


async def test_names_match_case_insensitively_and_keep_the_first_casing(client: TenantClient) -> None:
    await client.call(**DOC_CALL)
    await client.call(external_id="second-call", start_time="1435996800")
    first = await client.signal({"transaction_id": "00000000-00000001"}, {"name": "Free Trial"})
    same = await client.signal({"transaction_id": "00000000-00000001"}, {"name": "FREE TRIAL"})
    elsewhere = await client.signal({"call_start_time": "1435996800"}, {"name": "free trial"})

    assert (first.status_code, same.status_code, elsewhere.status_code) == (201, 200, 201)
    assert same.json() == first.json()
    assert elsewhere.json()["signal"]["name"] == "Free Trial"


async def test_a_new_partner_unique_id_adds_a_second_signal(client: TenantClient) -> None:
    await client.call(**DOC_CALL)
    search = {"transaction_id": "00000000-00000001"}
    default = await client.signal(search, {"name": "Sale", "description": "a"})
    explicit_empty = await client.signal(
        search, {"name": "Sale", "partner_unique_id": "", "description": "a"}
    )
    numbered = await client.signal(search, {"name": "Sale", "partner_unique_id": 2, "description": "a"})

    assert (default.status_code, explicit_empty.status_code, numbered.status_code) == (201, 200, 201)
    assert numbered.json()["signal"]["partner_unique_id"] == "2"
    assert len(await client.transactions(transaction_type="signal")) == 2


async def test_custom_data_is_set_on_the_call_in_the_dictionarys_spelling(client: TenantClient) -> None:
    await client.call(**DOC_CALL)
    response = await client.signal(
        {"transaction_id": "00000000-00000001"},
        {"name": "Sale"},
        custom_data=[{"name": "zip code", "value": 94110}, {"name": "CAMPAIGN", "value": "spring"}],
    )

    assert response.status_code == 201
    assert response.json()["custom_data"] == [
        {"name": "Zip Code", "value": "94110"},
        {"name": "Campaign", "value": "spring"},
    ]
    event, signal = await client.transactions(
        transaction_type="post_call_event,signal", include_columns="custom_data"
    )
    assert event["transaction_type"] == "post_call_event"
    assert event["custom_data"] == signal["custom_data"] == {"Zip Code": "94110", "Campaign": "spring"}
