"""A token sees and touches only its own tenant's calls."""

from __future__ import annotations

import uuid

from tests.ledger.helpers import TenantClient, error

START = "1460404800"
NO_CALL = error("RecordNotFound", "No call found. Please refer to the documentation.")


async def test_another_tenants_call_cannot_be_found_or_signalled(
    client: TenantClient, other_client: TenantClient
) -> None:
    record_id = str(uuid.uuid4())
    call = (
        await client.call(
            call_record_id=record_id,
            start_time=START,
            transaction_id="00000000-00000001",
            advertiser_id_from_network="adv",
        )
    ).json()["call"]

    searches = [
        {"transaction_id": call["transaction_id"]},
        {"transaction_id": call["last_transaction_id"]},
        {"call_record_id": record_id},
        {"call_start_time": START},
    ]
    for search in searches:
        response = await other_client.signal(search, {"name": "Sale"})
        assert (response.status_code, response.json()) == (404, NO_CALL), search
    refused = await other_client.signal(
        {"call_start_time": START, "advertiser_id_from_network": "adv"}, {"name": "Sale"}
    )
    assert refused.json() == error("UnauthorizedAdvertiser", "You do not have access to this advertiser")
    assert await other_client.transactions() == []
    assert len(await client.transactions()) == 1


async def test_the_same_call_record_id_makes_separate_calls_per_tenant(
    client: TenantClient, other_client: TenantClient
) -> None:
    record_id = str(uuid.uuid4())
    mine = await client.call(call_record_id=record_id, start_time=START, network_id="mine")

    theirs = await other_client.call(call_record_id=record_id, start_time=START, network_id="theirs")

    assert (mine.status_code, theirs.status_code) == (201, 201)
    (row,) = await client.transactions()
    assert row["network_id"] == "mine"


async def test_lookup_rows_only_touch_their_tenants_calls(
    client: TenantClient, other_client: TenantClient
) -> None:
    await client.call(external_id="a", start_time=START, calling_phone_number="+18885551212")

    response = await other_client.lookup_row("marketing", primary_key="+18885551212", data={"Campaign": "x"})

    assert response.json()["updated_calls"] == []
    assert (await client.transactions(include_columns="custom_data"))[0]["custom_data"] == {}


async def test_signal_name_casing_is_per_tenant(client: TenantClient, other_client: TenantClient) -> None:
    await client.call(external_id="a", start_time=START)
    await other_client.call(external_id="a", start_time=START)

    await client.signal({"call_start_time": START}, {"name": "SALE"})
    theirs = await other_client.signal({"call_start_time": START}, {"name": "Sale"})

    assert theirs.json()["signal"]["name"] == "Sale"
