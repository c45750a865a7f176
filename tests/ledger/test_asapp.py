"""The ASAPP records (extension): transcript messages and purchase lines, stored once per identity,
read back per tenant a page at a time."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from core.config import Settings
from core.tenants import Tenant, TenantStore
from ledger.auth import Gatekeeper
from ledger.records import ListingQuery
from ledger.requests import LedgerRequests
from ledger.store import LedgerStore
from tests.ledger.helpers import API, TenantClient, error

MESSAGE: dict[str, Any] = {
    "conversation_externalId": "3245556677",
    "sender_externalId": "6433421",
    "sender_role": "agent",
    "text": "Happy to help, one moment please",
    "timestamp": "2022-03-16T18:42:24.488424Z",
}
PURCHASE: dict[str, Any] = {
    "transaction_id": "1d71dce2-a50c-11ea-bb37-0242ac130002",
    "transaction_time": "2007-04-05T14:30:05.123Z",
    "transaction_value_one_time": "65.25",
    "external_customer_id": "34762720001",
    "external_session_id": "1a09ff6d-3d07-45dc-8fa9-4936bfc4e3e5",
    "product_id": "WI-BBGP",
    "product_name": "Broadband Gold Package",
    "product_quantity": 1,
    "product_value_one_time": "60.00",
}
ABSENT_PURCHASE_FIELDS = {
    "transaction_value_recurring": None, "customer_category": None, "customer_subcategory": None,
    "issue_id": None, "product_category": None, "product_subcategory": None, "product_value_recurring": None,
}


async def test_a_message_is_stored_once_and_its_repost_changes_nothing(client: TenantClient) -> None:
    created = await client.transcript(**MESSAGE)
    assert created.status_code == 201, created.text
    stored = {"id": 1, **MESSAGE, "attributes": {}}
    assert created.json() == {"message": stored}

    # The same instant written with an offset is the same message.
    again = await client.transcript(**{**MESSAGE, "timestamp": "2022-03-16T11:42:24.488424-07:00"})
    assert (again.status_code, again.json()) == (200, {"message": stored})
    assert await client.records("transcripts") == [stored]


async def test_a_messages_role_and_attributes_are_corrected_and_other_text_is_another_message(
    client: TenantClient,
) -> None:
    await client.transcript(**MESSAGE)
    corrected = await client.transcript(**{**MESSAGE, "sender_role": "Bot", "attributes": {"channel": "chat"}})
    assert corrected.status_code == 200
    assert corrected.json()["message"] == {"id": 1, **MESSAGE, "sender_role": "bot",
                                           "attributes": {"channel": "chat"}}
    other = await client.transcript(**{**MESSAGE, "text": "Anything else?", "sender_role": "agent"})
    assert (other.status_code, other.json()["message"]["id"]) == (201, 2)
    assert [(m["id"], m["sender_role"]) for m in await client.records("transcripts")] == [(1, "bot"), (2, "agent")]


async def test_a_file_timestamp_in_milliseconds_reads_back_in_microseconds(client: TenantClient) -> None:
    response = await client.transcript(**{**MESSAGE, "timestamp": "2022-03-16T18:42:24.488Z"})
    assert response.json()["message"]["timestamp"] == "2022-03-16T18:42:24.488000Z"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sender_role": None}, "message.sender_role: must be a string, got NoneType"),
        ({"sender_role": "supervisor"}, "message.sender_role: must be one of agent, customer, bot, got 'supervisor'"),
        ({"text": "  "}, "message.text: can't be blank"),
        ({"conversation_externalId": ""}, "message.conversation_externalId: must not be blank"),
        ({"timestamp": "1647456144"}, "message.timestamp: '1647456144' is not an ISO 8601 UTC timestamp"),
        ({"timestamp": "0001-01-01T00:00:00Z"}, "message.timestamp: '0001-01-01T00:00:00Z' is out of range"),
        ({"textt": "typo"}, "message.textt is not a known parameter"),
    ],
)
async def test_invalid_messages_are_refused_naming_the_field(
    client: TenantClient, change: dict[str, Any], message: str
) -> None:
    response = await client.transcript(**{**MESSAGE, **change})
    assert response.status_code == 403
    assert response.json()["errors"]["class"] == "RecordInvalid"
    assert response.json()["errors"]["invalid_data"].startswith(f"Validation failed: {message}")
    assert await client.records("transcripts") == []


async def test_a_missing_field_is_named(client: TenantClient) -> None:
    message = {name: value for name, value in MESSAGE.items() if name != "sender_externalId"}
    response = await client.transcript(**message)
    assert response.json() == error("RecordInvalid", "Validation failed: message.sender_externalId must be present")


async def test_a_purchase_line_is_replaced_whole_by_a_repost_that_differs(client: TenantClient) -> None:
    created = await client.purchase(**PURCHASE)
    assert created.status_code == 201, created.text
    line = {"id": 1, **PURCHASE, **ABSENT_PURCHASE_FIELDS, "transaction_time": "2007-04-05T14:30:05.123000Z",
            "product_value_one_time": "60", "attributes": {}}
    assert created.json() == {"purchase": line}
    again = await client.purchase(**{**PURCHASE, "transaction_value_one_time": "65.250", "product_quantity": "1"})
    assert (again.status_code, again.json()) == (200, {"purchase": line})

    changed = {**PURCHASE, "product_quantity": 2}
    del changed["product_value_one_time"]
    corrected = await client.purchase(**changed)
    assert corrected.status_code == 200
    replaced = {**line, "product_quantity": 2, "product_value_one_time": None}
    assert corrected.json() == {"purchase": replaced}
    assert await client.records("purchases") == [replaced]


async def test_each_product_of_a_transaction_is_its_own_line(client: TenantClient) -> None:
    await client.purchase(**PURCHASE)
    second = await client.purchase(**{**PURCHASE, "product_id": "WI-MODEM", "product_name": "Modem"})
    assert second.status_code == 201
    # Without a product_id the product_name names the line.
    unnamed = {**PURCHASE, "product_id": None, "product_name": "Router"}
    assert (await client.purchase(**unnamed)).status_code == 201
    assert (await client.purchase(**{**unnamed, "product_quantity": 3})).status_code == 200
    other = {**PURCHASE, "transaction_id": "t-2"}
    assert (await client.purchase(**other)).status_code == 201
    lines = await client.records("purchases", transaction_id=PURCHASE["transaction_id"])
    assert [(line["product_id"], line["product_name"], line["product_quantity"]) for line in lines] == [
        ("WI-BBGP", "Broadband Gold Package", 1), ("WI-MODEM", "Modem", 1), (None, "Router", 3)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"external_customer_id": None}, "external_customer_id or issue_id must be present"),
        ({"product_quantity": 10**12}, "purchase.product_quantity: must be a whole number from -999999999"),
        ({"product_quantity": 1.5}, "purchase.product_quantity: must be a whole number"),
        ({"product_value_one_time": "$60"}, "purchase.product_value_one_time: must be a decimal number"),
        ({"product_value_one_time": "1e400"}, "purchase.product_value_one_time: must be a decimal number"),
        ({"transaction_time": "yesterday"}, "purchase.transaction_time: 'yesterday' is not an ISO 8601"),
        ({"customer_category": "x" * 256}, "purchase.customer_category: must be at most 255 characters"),
        ({"external_session_id": None}, "purchase.external_session_id: "),
    ],
)
async def test_invalid_purchases_are_refused_naming_the_field(
    client: TenantClient, change: dict[str, Any], message: str
) -> None:
    response = await client.purchase(**{**PURCHASE, **change})
    assert response.status_code == 403, response.text
    assert response.json()["errors"]["invalid_data"].startswith(f"Validation failed: {message}")
    assert await client.records("purchases") == []


async def test_an_issue_id_attributes_a_purchase_too(client: TenantClient) -> None:
    response = await client.purchase(**{**PURCHASE, "external_customer_id": None, "issue_id": "1E10412200CC"})
    assert response.status_code == 201
    assert response.json()["purchase"]["issue_id"] == "1E10412200CC"


async def test_listings_page_after_a_cursor_and_filter(client: TenantClient) -> None:
    for number in range(5):
        conversation = "c-even" if number % 2 == 0 else "c-odd"
        await client.transcript(**{**MESSAGE, "conversation_externalId": conversation, "text": f"m{number}"})
    page = await client.records("transcripts", limit=2)
    assert [m["text"] for m in page] == ["m0", "m1"]
    rest = await client.records("transcripts", start_after_id=page[-1]["id"])
    assert [m["text"] for m in rest] == ["m2", "m3", "m4"]
    assert [m["text"] for m in await client.records("transcripts", conversation_externalId="c-odd")] == ["m1", "m3"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit must be a whole number from 1 to 4000"),
        ({"start_after_id": "-1"}, "start_after_id must be a record id"),
        ({"start_after_id": "9" * 30}, "start_after_id must be a record id"),
        ({"conversation_id": "x"}, "unknown parameter 'conversation_id'"),
        ({"transaction_id": "x"}, "unknown parameter 'transaction_id'"),
    ],
)
async def test_a_bad_listing_parameter_is_refused(
    http: httpx.AsyncClient, acme: Tenant, params: dict[str, str], message: str
) -> None:
    response = await http.get(f"{API}/asapp/transcripts.json", params={**params, "oauth_token": acme.api_token})
    assert response.status_code == 403
    assert response.json()["errors"]["invalid_data"].startswith(f"Validation failed: {message}")


async def test_each_tenant_sees_and_writes_only_its_own_records(
    client: TenantClient, other_client: TenantClient
) -> None:
    await client.transcript(**MESSAGE)
    await client.purchase(**PURCHASE)
    assert await other_client.records("transcripts") == []
    assert await other_client.records("purchases", transaction_id=PURCHASE["transaction_id"]) == []
    # The same records are new for the other tenant, and leave the first one's alone.
    assert (await other_client.transcript(**{**MESSAGE, "sender_role": "bot"})).status_code == 201
    assert (await other_client.purchase(**{**PURCHASE, "product_quantity": 9})).status_code == 201
    assert [m["sender_role"] for m in await client.records("transcripts")] == ["agent"]
    assert [p["product_quantity"] for p in await client.records("purchases")] == [1]


async def test_a_token_is_needed_to_write_and_to_read(http: httpx.AsyncClient, acme: Tenant) -> None:
    response = await http.post(f"{API}/asapp/transcripts", json={"message": MESSAGE})
    assert (response.status_code, response.json()) == (401, error("Unauthorized", "Missing oauth token"))
    response = await http.get(f"{API}/asapp/purchases", params={"oauth_token": "nope"})
    assert (response.status_code, response.json()) == (401, error("Unauthorized", "Invalid oauth token"))
    # A token in the body is enough to write.
    response = await http.post(f"{API}/asapp/purchases", json={"purchase": PURCHASE, "oauth_token": acme.api_token})
    assert response.status_code == 201


async def test_other_methods_get_405_with_allow(client: TenantClient) -> None:
    response = await client.http.put(f"{API}/asapp/transcripts.json", json={})
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"


def test_the_body_bound_applies_and_a_purged_tenant_starts_empty(
    settings: Settings, tenants: TenantStore, acme: Tenant
) -> None:
    store = LedgerStore.open(settings.ledger_location)
    try:
        small = LedgerRequests(settings.replace(api__max_body_bytes=200).api, tenants, store)
        big = f'{{"message": {{"text": "{"x" * 200}"}}}}'
        answer = small.apply(Gatekeeper(tenants, None), acme.api_token, "POST", "/asapp/transcripts.json", big)
        assert answer.status == 413
        requests = LedgerRequests(settings.api, tenants, store)
        assert requests.transcript_message(acme, {"message": MESSAGE}).status == 201
        assert requests.purchase(acme, {"purchase": PURCHASE}).status == 201
        store.purge_tenant("acme")
        assert store.asapp.messages("acme", ListingQuery()) == []
        assert store.asapp.purchases("acme", ListingQuery()) == []
    finally:
        store.close()




def test_the_in_process_router_serves_the_same_paths(settings: Settings, tenants: TenantStore, acme: Tenant) -> None:
    store = LedgerStore.open(settings.ledger_location)
    try:
        requests, gate = LedgerRequests(settings.api, tenants, store), Gatekeeper(tenants, None)

        def apply(method: str, path: str, body: dict[str, Any]) -> int:
            return requests.apply(gate, acme.api_token, method, path, json.dumps(body)).status

        assert apply("POST", "/asapp/transcripts", {"message": MESSAGE}) == 201
        assert apply("POST", "/asapp/transcripts.json", {"message": MESSAGE}) == 200
        assert apply("POST", "/asapp/purchases.json", {"purchase": PURCHASE}) == 201
        assert apply("PUT", "/asapp/purchases.json", {"purchase": PURCHASE}) == 405
        assert apply("POST", "/asapp/chats.json", {"message": MESSAGE}) == 404
        assert apply("POST", "/asapp/purchases.json", {"message": MESSAGE}) == 403
    finally:
        store.close()
