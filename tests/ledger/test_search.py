"""Finding the call a signal belongs to: ids, Call Record IDs, and the closeness rule."""

from __future__ import annotations

import pytest

from ledger.matching import DURATION_GAP_WEIGHT
from tests.ledger.helpers import TenantClient, error

START = 1460404800  # 11 April 2016, 1 PM Pacific, the document's example instant
NO_CALL = error("RecordNotFound", "No call found. Please refer to the documentation.")


async def make_call(client: TenantClient, external_id: str, start: int, **fields: object) -> dict:
    response = await client.call(external_id=external_id, start_time=str(start), **fields)
    assert response.status_code == 201, response.text
    return response.json()["call"]


async def found(client: TenantClient, search: dict) -> str:
    response = await client.signal(search, {"name": "Sale"})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["call"]["transaction_id"])


async def test_by_call_record_id(client: TenantClient) -> None:
    call = await make_call(client, "a", START)
    await make_call(client, "b", START)

    assert await found(client, {"call_record_id": call["complete_call_id"].upper()}) == call["transaction_id"]


async def test_the_transaction_id_of_a_call_correction_finds_the_call(client: TenantClient) -> None:
    call = await make_call(client, "a", START, duration_in_seconds=10)
    corrected = (await client.call(external_id="a", start_time=str(START), duration_in_seconds=11)).json()[
        "call"
    ]

    assert corrected["last_transaction_id"] != call["transaction_id"]
    assert await found(client, {"transaction_id": corrected["last_transaction_id"]}) == call["transaction_id"]


DOCUMENTED_FORMATS = [
    "1460404800",
    "1460404800000",
    "20160411130000000",
    "2016/04/11T23:00:00.000+03:00",
    "2016/04/11T13:00:00.000-07:00",
    "2016/04/11T20:00:00.000Z",
    "2016-04-11T13:00:00-07:00",
    "2016/04/11 13:00:00.000 PM",
    "2016/04/11 01:00:00 PM",
]


async def test_every_documented_timestamp_format_finds_the_call(client: TenantClient) -> None:
    near = await make_call(client, "near", START)
    await make_call(client, "hour-later", START + 3600)

    for timestamp in DOCUMENTED_FORMATS:
        assert await found(client, {"call_start_time": timestamp}) == near["transaction_id"], timestamp


async def test_the_closest_start_wins_without_a_duration(client: TenantClient) -> None:
    await make_call(client, "early", START - 90)
    late = await make_call(client, "late", START + 30)

    assert await found(client, {"call_start_time": START}) == late["transaction_id"]


async def test_a_duration_gap_weighs_twenty_times_a_start_gap(client: TenantClient) -> None:
    # 100 s away in start but exact in duration beats 10 s away in start but 10 s off in duration.
    exact_duration = await make_call(client, "exact", START + 100, duration_in_seconds=300)
    await make_call(client, "off", START + 10, duration_in_seconds=310)
    assert DURATION_GAP_WEIGHT * 10 + 10 > 100

    assert (
        await found(client, {"call_start_time": START, "duration_in_seconds": 300})
        == (exact_duration["transaction_id"])
    )


async def test_no_call_beyond_the_tolerance(client: TenantClient) -> None:
    await make_call(client, "far", START + 601, duration_in_seconds=60)
    await make_call(client, "off-by-duration", START + 500, duration_in_seconds=66)

    response = await client.signal({"call_start_time": START, "duration_in_seconds": 60}, {"name": "Sale"})

    assert response.status_code == 404
    assert response.json() == NO_CALL


async def test_the_calling_number_narrows_the_search(client: TenantClient) -> None:
    await make_call(client, "other-caller", START, calling_phone_number="+14155550100")
    mine = await make_call(client, "my-call", START + 200, calling_phone_number="+18885551212")

    search = {"call_start_time": START, "calling_phone_number": "+1 (888) 555-1212"}
    assert await found(client, search) == mine["transaction_id"]


async def test_campaign_advertiser_and_network_filters_narrow_the_search(client: TenantClient) -> None:
    fields = {
        "advertiser_id_from_network": "adv-1",
        "advertiser_campaign_id_from_network": "camp-1",
        "network_id": "net-1",
    }
    await make_call(client, "unfiltered", START)
    wanted = await make_call(client, "filtered", START + 60, **fields)

    assert await found(client, {"call_start_time": START, **fields}) == wanted["transaction_id"]


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("advertiser_id_from_network", "You do not have access to this advertiser"),
        ("advertiser_campaign_id_from_network", "You do not have access to this advertiser campaign"),
        ("network_id", "You do not have access to this network"),
    ],
)
async def test_a_filter_value_the_account_has_no_calls_with_is_unauthorized(
    client: TenantClient, field: str, message: str
) -> None:
    await make_call(client, "mine", START, **{field: "mine"})

    response = await client.signal({"call_start_time": START, field: "someone-elses"}, {"name": "Sale"})

    assert response.status_code == 403
    assert response.json() == error("UnauthorizedAdvertiser", message)


async def test_filters_are_ignored_with_a_transaction_id(client: TenantClient) -> None:
    call = await make_call(client, "mine", START)
    search = {
        "transaction_id": call["transaction_id"],
        "call_start_time": START + 86400,
        "advertiser_id_from_network": "nobody",
        "calling_phone_number": "+15555550123",
    }

    assert await found(client, search) == call["transaction_id"]


async def test_an_unknown_transaction_id_is_not_found(client: TenantClient) -> None:
    await make_call(client, "mine", START)

    response = await client.signal({"transaction_id": "0000FFFF-00000001"}, {"name": "Sale"})

    assert response.status_code == 404
    assert response.json() == NO_CALL
