"""The Transactions API: cursor paging, filters, optional columns, CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from ledger.render import DEFAULT_COLUMNS
from tests.ledger.helpers import TenantClient, error

START = 1460404800  # 2016-04-11 13:00 Pacific
DAY = 86400


async def add_call(client: TenantClient, external_id: str, start: int = START) -> str:
    response = await client.call(external_id=external_id, start_time=str(start))
    assert response.status_code == 201
    return str(response.json()["call"]["transaction_id"])


async def add_signal(client: TenantClient, call_transaction_id: str, partner_unique_id: str) -> str:
    response = await client.signal(
        {"transaction_id": call_transaction_id}, {"name": "Sale", "partner_unique_id": partner_unique_id}
    )
    assert response.status_code == 201
    return str(response.json()["signal"]["transaction_id"])


async def test_polling_with_the_cursor_sees_every_row_once_while_rows_arrive(client: TenantClient) -> None:
    call = await add_call(client, "c")
    written = [call] + [await add_signal(client, call, str(n)) for n in range(4)]
    seen: list[str] = []
    cursor = ""
    arrivals = iter(range(4, 10))
    while True:
        page = await client.transactions(start_after_transaction_id=cursor, limit=3)
        seen += [row["transaction_id"] for row in page]
        if page:
            cursor = page[-1]["transaction_id"]
        if (n := next(arrivals, None)) is not None:
            written.append(await add_signal(client, call, str(n)))
        elif len(page) < 3:
            break

    assert seen == written
    assert seen == sorted(seen)


async def test_the_default_and_largest_page(client: TenantClient) -> None:
    call = await add_call(client, "c")
    for n in range(3):
        await add_signal(client, call, str(n))

    assert len(await client.transactions()) == 4
    assert len(await client.transactions(limit=4000)) == 4
    assert len(await client.transactions(limit=2)) == 2


BAD_PARAMETERS: list[tuple[dict[str, Any], str]] = [
    ({"limit": 4001}, "limit must be a whole number from 1 to 4000, got '4001'"),
    ({"limit": 0}, "limit must be a whole number from 1 to 4000, got '0'"),
    ({"limit": "ten"}, "limit must be a whole number from 1 to 4000, got 'ten'"),
    (
        {"start_after_transaction_id": "42"},
        ("start_after_transaction_id must be a transaction id such as 00000000-0000000A,"
        " at most 7FFFFFFF-FFFFFFFF, got '42'"),
    ),
    (
        {"start_after_transaction_id": "80000000-00000000"},  # beyond SQLite's integers
        ("start_after_transaction_id must be a transaction id such as 00000000-0000000A,"
        " at most 7FFFFFFF-FFFFFFFF, got '80000000-00000000'"),
    ),
    (
        {"from_": "04/11/2016"},
        "from must be a date as YYYY-MM-DD from 1900-01-01 to 9999-12-31, got '04/11/2016'",
    ),
    (
        {"to": "0001-01-01"},
        "to must be a date as YYYY-MM-DD from 1900-01-01 to 9999-12-31, got '0001-01-01'",
    ),
    ({"limit": "²"}, "limit must be a whole number from 1 to 4000, got '²'"),
    ({"limit": "1" * 5000}, f"limit must be a whole number from 1 to 4000, got '{'1' * 5000}'"),
    ({"from_": "2016-04-12", "to": "2016-04-11"}, "from (2016-04-12) must not be after to (2016-04-11)"),
    (
        {"transaction_type": "sale"},
        "transaction_type must be one of call, signal, post_call_event, got 'sale'",
    ),
    (
        {"include_columns": "signals,recordings"},
        "include_columns: unknown column 'recordings'; optional columns are signals, custom_data, attributes",
    ),
    (
        {"lmit": 5},
        ("unknown parameter 'lmit'; known: from, include_columns, limit, oauth_token,"
        " start_after_transaction_id, to, transaction_type"),
    ),
]


async def test_bad_parameters_are_clear_errors(client: TenantClient) -> None:
    for params, message in BAD_PARAMETERS:
        response = await client.transactions_response(**params)

        assert (response.status_code, response.json()) == (
            403,
            error("RecordInvalid", f"Validation failed: {message}"),
        ), params


async def test_from_and_to_are_inclusive_days_in_the_accounts_time_zone(client: TenantClient) -> None:
    # 23:30 Pacific on 10 April is already 11 April in UTC; it still belongs to 10 April here.
    late_evening = await add_call(client, "evening", START - 13 * 3600 - 1800)
    on_the_day = await add_call(client, "day", START)
    next_day = await add_call(client, "next", START + DAY)

    def ids(rows: list[dict]) -> list[str]:
        return [row["call_transaction_id"] for row in rows]

    assert ids(await client.transactions(from_="2016-04-11", to="2016-04-11")) == [on_the_day]
    assert ids(await client.transactions(to="2016-04-10")) == [late_evening]
    assert ids(await client.transactions(from_="2016-04-11")) == [on_the_day, next_day]


async def test_a_late_signal_on_an_old_call_is_listed_under_the_calls_date(client: TenantClient) -> None:
    call = await add_call(client, "old", START - 30 * DAY)
    await add_call(client, "new", START)
    late_signal = await add_signal(client, call, "1")

    rows = await client.transactions(from_="2016-03-12", to="2016-03-12")

    assert [row["transaction_id"] for row in rows] == [call, late_signal]


async def test_transaction_type_filters(client: TenantClient) -> None:
    call = await add_call(client, "c")
    signal = await add_signal(client, call, "1")

    assert [row["transaction_id"] for row in await client.transactions(transaction_type="call")] == [call]
    assert [row["transaction_id"] for row in await client.transactions(transaction_type="signal")] == [signal]


async def test_signals_and_custom_data_only_when_asked_for(client: TenantClient) -> None:
    call = await add_call(client, "c")
    await client.signal(
        {"transaction_id": call},
        {"name": "Sale", "sale_amount": "5"},
        custom_data=[{"name": "Agent", "value": "Dana"}],
    )

    plain = await client.transactions()
    default_plus = await client.transactions(include_columns="$invoca_default_columns,signals")
    both = await client.transactions(include_columns="signals,custom_data")

    assert all(tuple(row) == DEFAULT_COLUMNS for row in plain)
    assert all(tuple(row) == (*DEFAULT_COLUMNS, "signals") for row in default_plus)
    assert [row["transaction_type"] for row in both] == ["call", "post_call_event", "signal"]
    assert [row["signals"] for row in both][:2] == [[], []]
    assert both[2]["signals"][0]["sale_amount"] == "5.00"
    assert [row["custom_data"] for row in both] == [{}, {"Agent": "Dana"}, {"Agent": "Dana"}]


async def test_rows_carry_call_fields_and_times_in_the_accounts_zone(client: TenantClient) -> None:
    await client.call(
        external_id="c",
        start_time=str(START),
        duration_in_seconds=42,
        calling_phone_number="+18885551212",
        attributes={"queue": "billing"},
    )

    (row,) = await client.transactions(include_columns="attributes")

    assert row["start_time_local"] == "2016-04-11T13:00:00-07:00"
    assert row["start_time_t"] == str(START)
    assert row["transaction_time"].endswith(("-07:00", "-08:00"))
    assert (row["duration_in_seconds"], row["calling_phone_number"], row["external_id"]) == (
        42,
        "+18885551212",
        "c",
    )
    assert row["attributes"] == {"queue": "billing"}


async def test_csv_export_has_the_same_rows(client: TenantClient) -> None:
    call = await add_call(client, "c")
    await client.signal({"transaction_id": call}, {"name": "Sale", "description": 'a "quoted", comma'})

    response = await client.transactions_response(suffix="csv", include_columns="signals")
    as_json = await client.transactions(include_columns="signals")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    header, *records = list(csv.reader(io.StringIO(response.text)))
    assert header == [*DEFAULT_COLUMNS, "signals"]
    assert [record[0] for record in records] == [row["transaction_id"] for row in as_json]
    assert json.loads(records[1][-1]) == as_json[1]["signals"]
    assert records[0][header.index("corrects_transaction_id")] == ""


async def test_csv_errors_are_json(client: TenantClient) -> None:
    response = await client.transactions_response(suffix="csv", limit=5000)

    assert response.status_code == 403
    assert response.json()["errors"]["class"] == "RecordInvalid"
