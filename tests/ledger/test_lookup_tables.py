"""Lookup tables: a row keyed by calling number (and campaign) sets custom data on its calls."""

from __future__ import annotations

from tests.ledger.helpers import TRANSACTION_ID, TenantClient, error

START = "1460404800"
PHONE = "+18885551212"


async def custom_data(client: TenantClient, external_id: str) -> list[dict[str, str]]:
    response = await client.call(external_id=external_id, start_time=START)
    assert response.status_code == 200
    data: list[dict[str, str]] = response.json()["call"]["custom_data"]
    return data


async def test_a_row_applies_its_data_to_every_matching_call(client: TenantClient) -> None:
    first = (await client.call(external_id="a", start_time=START, calling_phone_number=PHONE)).json()["call"]
    second = (await client.call(external_id="b", start_time=START, calling_phone_number=PHONE)).json()["call"]
    await client.call(external_id="other", start_time=START, calling_phone_number="+14155550100")

    response = await client.lookup_row(
        "marketing", primary_key="+1 888-555-1212", data={"campaign": "Spring"}
    )

    assert response.status_code == 201
    assert response.json() == {
        "lookup_row": {
            "table": "marketing",
            "primary_key": PHONE,
            "secondary_key": None,
            "data": {"Campaign": "Spring"},
        },
        "updated_calls": [
            {
                "complete_call_id": first["complete_call_id"],
                "call_transaction_id": first["transaction_id"],
                "transaction_id": TRANSACTION_ID,
            },
            {
                "complete_call_id": second["complete_call_id"],
                "call_transaction_id": second["transaction_id"],
                "transaction_id": TRANSACTION_ID,
            },
        ],
    }
    assert await custom_data(client, "a") == [{"name": "Campaign", "value": "Spring"}]
    assert await custom_data(client, "other") == []
    events = await client.transactions(transaction_type="post_call_event", include_columns="custom_data")
    assert [row["transaction_id"] for row in events] == [
        call["transaction_id"] for call in response.json()["updated_calls"]
    ]
    assert all(row["custom_data"] == {"Campaign": "Spring"} for row in events)


async def test_a_secondary_key_must_match_the_campaign(client: TenantClient) -> None:
    await client.call(
        external_id="spring",
        start_time=START,
        calling_phone_number=PHONE,
        advertiser_campaign_id_from_network="spring-sale",
    )
    await client.call(
        external_id="fall",
        start_time=START,
        calling_phone_number=PHONE,
        advertiser_campaign_id_from_network="fall-sale",
    )

    response = await client.lookup_row(
        "marketing", primary_key=PHONE, secondary_key="spring-sale", data={"Agent": "Dana"}
    )

    assert len(response.json()["updated_calls"]) == 1
    assert await custom_data(client, "spring") == [{"name": "Agent", "value": "Dana"}]
    assert await custom_data(client, "fall") == []


async def test_an_updated_row_corrects_the_calls_post_call_event(client: TenantClient) -> None:
    await client.call(external_id="a", start_time=START, calling_phone_number=PHONE)
    first = await client.lookup_row("marketing", primary_key=PHONE, data={"Campaign": "Spring"})
    same = await client.lookup_row("marketing", primary_key=PHONE, data={"Campaign": "Spring"})
    changed = await client.lookup_row("marketing", primary_key=PHONE, data={"Campaign": "Summer"})

    assert (first.status_code, same.status_code, changed.status_code) == (201, 200, 200)
    assert same.json()["updated_calls"] == []
    events = await client.transactions(transaction_type="post_call_event", include_columns="custom_data")
    assert [(row["corrects_transaction_id"], row["custom_data"]) for row in events] == [
        (None, {"Campaign": "Spring"}),
        (events[0]["transaction_id"], {"Campaign": "Summer"}),
    ]


async def test_a_call_created_later_inherits_the_rows_data(client: TenantClient) -> None:
    await client.lookup_row("marketing", primary_key=PHONE, data={"Campaign": "Spring"})
    await client.lookup_row(
        "agents", primary_key=PHONE, secondary_key="other-campaign", data={"Agent": "Dana"}
    )

    response = await client.call(external_id="late", start_time=START, calling_phone_number=PHONE)

    assert response.json()["call"]["custom_data"] == [{"name": "Campaign", "value": "Spring"}]
    assert (await client.transactions(include_columns="custom_data"))[0]["custom_data"] == {
        "Campaign": "Spring"
    }


async def test_row_fields_must_be_in_the_data_dictionary(client: TenantClient) -> None:
    response = await client.lookup_row(
        "marketing", primary_key=PHONE, data={"Campaign": "x", "Shoe Size": "9"}
    )

    assert response.status_code == 403
    assert response.json() == error(
        "RecordInvalid",
        "Validation failed: data: field 'Shoe Size' is not in the data dictionary of this account",
    )


async def test_the_primary_key_is_a_phone_number_and_data_is_required(client: TenantClient) -> None:
    response = await client.lookup_row("marketing", primary_key="customer-7")

    assert response.status_code == 403
    assert response.json() == error(
        "RecordInvalid",
        "Validation failed: primary_key: must be a phone number in E.164 format such as '+1 8885551212',"
        " got 'customer-7'; data must be present",
    )


async def test_a_call_created_later_inherits_its_campaigns_rows_the_newest_winning(client: TenantClient) -> None:
    await client.lookup_row("marketing", primary_key=PHONE, data={"Campaign": "Spring", "Agent": "Ana"})
    await client.lookup_row("agents", primary_key=PHONE, secondary_key="fall-sale", data={"Agent": "Dana"})
    await client.lookup_row("agents", primary_key=PHONE, secondary_key="spring-sale", data={"Agent": "Eve"})

    in_fall = await client.call(external_id="fall", start_time=START, calling_phone_number=PHONE,
                                advertiser_campaign_id_from_network="fall-sale")
    elsewhere = await client.call(external_id="other", start_time=START, calling_phone_number=PHONE,
                                  advertiser_campaign_id_from_network="winter-sale")

    assert in_fall.json()["call"]["custom_data"] == [
        {"name": "Campaign", "value": "Spring"}, {"name": "Agent", "value": "Dana"}]
    assert elsewhere.json()["call"]["custom_data"] == [
        {"name": "Campaign", "value": "Spring"}, {"name": "Agent", "value": "Ana"}]
