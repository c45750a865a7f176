"""The calls extension: how call metadata enters the ledger, with the same identity rules."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from core.tenants import Tenant
from ledger.ids import call_record_id_for
from tests.ledger.helpers import API, GUID, TRANSACTION_ID, TenantClient, error

START = "2016-04-11T13:00:00-07:00"


async def test_a_call_is_created_with_every_field(client: TenantClient) -> None:
    record_id = str(uuid.uuid4())

    response = await client.call(
        call_record_id=record_id,
        external_id="asapp-42",
        start_time=START,
        duration_in_seconds="95",
        calling_phone_number="+1 888 555 1212",
        advertiser_id_from_network=17,
        advertiser_campaign_id_from_network="spring",
        network_id="net",
        attributes={"queue": "billing", "escalated": True, "score": 4.5},
    )

    assert response.status_code == 201
    assert response.json() == {
        "call": {
            "transaction_id": TRANSACTION_ID,
            "complete_call_id": record_id,
            "external_id": "asapp-42",
            "start_time_t": "1460404800",
            "call_start_time": "04/11/2016 08:00 PM UTC",
            "duration_in_seconds": 95,
            "calling_phone_number": "+18885551212",
            "advertiser_id_from_network": "17",
            "advertiser_campaign_id_from_network": "spring",
            "network_id": "net",
            "attributes": {"queue": "billing", "escalated": "true", "score": "4.5"},
            "custom_data": [],
            "last_transaction_id": response.json()["call"]["transaction_id"],
            "corrects_transaction_id": None,
        }
    }


async def test_an_external_id_gives_a_stable_call_record_id(client: TenantClient, acme: Tenant) -> None:
    response = await client.call(external_id="asapp-42", start_time=START)

    assert response.json()["call"]["complete_call_id"] == GUID
    assert response.json()["call"]["complete_call_id"] == call_record_id_for(acme.name, "asapp-42")


async def test_identical_repost_changes_nothing_and_a_change_is_a_correction(client: TenantClient) -> None:
    created = await client.call(external_id="asapp-42", start_time=START, duration_in_seconds=60)
    again = await client.call(external_id="asapp-42", start_time=START, duration_in_seconds=60)
    corrected = await client.call(external_id="asapp-42", start_time=START, duration_in_seconds=61)

    assert (created.status_code, again.status_code, corrected.status_code) == (201, 200, 200)
    assert again.json() == created.json()
    call = corrected.json()["call"]
    assert call["transaction_id"] == created.json()["call"]["transaction_id"]
    assert call["duration_in_seconds"] == 61
    assert call["corrects_transaction_id"] == created.json()["call"]["last_transaction_id"]
    rows = await client.transactions(transaction_type="call")
    assert [
        (row["transaction_id"], row["corrects_transaction_id"], row["duration_in_seconds"]) for row in rows
    ] == [
        (created.json()["call"]["last_transaction_id"], None, 60),
        (call["last_transaction_id"], created.json()["call"]["last_transaction_id"], 61),
    ]
    assert {row["complete_call_id"] for row in rows} == {call["complete_call_id"]}


async def test_fields_left_out_of_a_repost_keep_their_values(client: TenantClient) -> None:
    await client.call(external_id="c", start_time=START, calling_phone_number="+18885551212", network_id="n")

    again = await client.call(external_id="c", start_time=START)

    assert again.status_code == 200
    assert again.json()["call"]["calling_phone_number"] == "+18885551212"
    assert again.json()["call"]["network_id"] == "n"


async def test_a_supplied_transaction_id_is_the_calls_id(client: TenantClient) -> None:
    await client.call(external_id="c", transaction_id="ABCDEF01-00000001", start_time=START)

    response = await client.signal({"transaction_id": "ABCDEF01-00000001"}, {"name": "Sale"})

    assert response.status_code == 201
    assert response.json()["call"]["transaction_id"] == "ABCDEF01-00000001"


async def test_a_transaction_id_belongs_to_one_call(client: TenantClient) -> None:
    await client.call(external_id="first", transaction_id="T-1", start_time=START)

    response = await client.call(external_id="second", transaction_id="T-1", start_time=START)

    assert response.status_code == 403
    assert response.json() == error(
        "RecordInvalid", "Validation failed: transaction_id T-1 already belongs to another call"
    )


INVALID_CALLS: list[tuple[dict[str, Any], str]] = [
    ({"start_time": START}, "call_record_id or external_id must be present"),
    ({"external_id": "c"}, "call.start_time must be present"),
    ({"external_id": "c", "start_time": None}, "call.start_time: can't be blank"),  # once a 500
    (
        {"external_id": "c", "start_time": START, "calling_phone_number": "8885551212"},
        ("call.calling_phone_number: must be a phone number in E.164 format such as '+1 8885551212',"
        " got '8885551212'"),
    ),
    (
        {"call_record_id": "42", "start_time": START},
        "call.call_record_id: must be a GUID such as 0f8fad5b-d9cb-469f-a165-70867728950e, got '42'",
    ),
    (
        {"external_id": "c", "start_time": START, "attributes": {"a": ["nested"]}},
        "call.attributes.a: must be a string, got list",
    ),
    ({"external_id": "c", "start_time": START, "agent": "bob"}, "call.agent is not a known parameter"),
]


async def test_invalid_calls(client: TenantClient) -> None:
    for call, message in INVALID_CALLS:
        response = await client.call(**call)

        assert (response.status_code, response.json()) == (
            403,
            error("RecordInvalid", f"Validation failed: {message}"),
        ), call


async def test_calls_need_a_token(http: httpx.AsyncClient) -> None:
    response = await http.post(f"{API}/calls", json={"call": {"external_id": "c", "start_time": START}})

    assert response.status_code == 401
