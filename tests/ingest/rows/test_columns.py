"""Whole columns at once: reading, checking and mapping agree with their one-value definitions.

The bulk paths (column cleaning in ``ingest.rows.readers``, ``ingest.rows.column_checks``,
``ingest.rows.mapping.map_rows``) exist for speed. Each test compares one with the plain definition,
on inputs chosen to hit its shortcuts and their edges.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import polars as pl
import pytest

from ingest.rows.coercion import checker
from ingest.rows.column_checks import Problems, check_column
from ingest.rows.feeds import Feed, default_feeds, parse_feed
from ingest.rows.mapping import MappedRows, map_row, map_rows
from ingest.rows.readers import Table, read_table
from ingest.rows.validate import RowResult, Validation, validate

PACIFIC = ZoneInfo("America/Los_Angeles")
EXAMPLES = Path(__file__).resolve().parents[3] / "etc" / "feeds"
SIGNALS = default_feeds()["signals"]
CALLS = default_feeds()["calls"]
ORDERS = parse_feed((EXAMPLES / "orders.toml").read_text())
LOOKUP = parse_feed((EXAMPLES / "lookup.toml").read_text())
DICTIONARY = ["plan_type", "region"]


def column_checker(
    type_name: str, tz: ZoneInfo
) -> Callable[[list[str | None]], tuple[list[str | None], Problems]]:
    """``check_column`` on a list, with the values as a list."""

    def check(values: list[str | None]) -> tuple[list[str | None], Problems]:
        canonical, problems = check_column(type_name, tz, pl.Series(values, dtype=pl.String))
        return canonical.to_list(), problems

    return check


def one_by_one(type_name: str, tz: ZoneInfo, column: list[str | None]) -> tuple[list, list]:
    """What ``column_checker`` must return: each value through the one-value checker."""
    check = checker(type_name, tz)
    values: list[str | None] = []
    errors: list[tuple[int, str]] = []
    for index, value in enumerate(column):
        if value is None:
            values.append(None)
            continue
        try:
            values.append(check(value))
        except ValueError as exc:
            values.append(value)
            errors.append((index, str(exc)))
    return values, errors


def hours_of_clock(start: datetime, hours: int) -> list[str]:
    """Every minute of the hours from ``start`` (local wall time), at a few seconds each, written
    in each timestamp shape whose hours are checked as a group."""
    texts = []
    for minute in range(hours * 60):
        for second in (0, 1, 29, 59):
            moment = start + timedelta(minutes=minute, seconds=second)
            year = f"{moment.year:04d}"
            texts += [
                f"{year}{moment:/%m/%d %I:%M:%S %p}",
                f"{year}{moment:-%m-%dT%H:%M:%S}-07:00",
                f"{year}{moment:-%m-%dT%H:%M:%S}Z",
                f"{year}{moment:-%m-%dT%H:%M:%S}.250Z",
                f"{year}{moment:%m%d%H%M%S}000",
            ]
    return texts


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("America/Los_Angeles", datetime(2026, 3, 8, 1, 0)),  # spring forward: 02:xx is missing
        ("America/Los_Angeles", datetime(2026, 11, 1, 0, 0)),  # fall back: 01:xx happens twice
        ("Australia/Lord_Howe", datetime(2026, 4, 5, 1, 0)),  # a half-hour fold
        ("Australia/Lord_Howe", datetime(2025, 10, 5, 1, 0)),  # a half-hour gap
        ("America/Goose_Bay", datetime(1990, 3, 31, 23, 0)),  # a gap from 00:01, not 00:00
        ("America/Goose_Bay", datetime(1990, 10, 27, 23, 0)),  # a fold until 00:01
        ("Europe/Amsterdam", datetime(1937, 6, 30, 23, 0)),  # a 28-second gap before midnight
        ("America/Los_Angeles", datetime(1883, 11, 18, 11, 0)),  # local mean time, 7:52:58 behind
        ("Europe/Berlin", datetime(1, 1, 1, 0, 0)),  # before year 1 in UTC
        ("America/Los_Angeles", datetime(9999, 12, 31, 22, 0)),  # after year 9999 in UTC
    ],
)
@pytest.mark.parametrize("type_name", ["timestamp", "iso_utc"])
def test_timestamp_columns_match_the_checker_around_offset_changes(
    zone: str, start: datetime, type_name: str
) -> None:
    tz = ZoneInfo(zone)
    column: list[str | None] = [*hours_of_clock(start, 2), None]
    assert column_checker(type_name, tz)(column) == one_by_one(type_name, tz, column)


def test_timestamp_columns_refuse_what_the_checker_refuses() -> None:
    hour = [f"2024/05/01 06:{minute:02d}:{second:02d} AM" for minute in (0, 59) for second in (0, 7)]
    odd = [
        "2024/05/01 06:15:60 AM",
        "2024/05/01 06:60:00 AM",
        "2024/05/01 06:1５:00 AM",  # noqa: RUF001 - a fullwidth digit on purpose
        "2024/05/01 06:15:00 XM",
        "2024/05/01 13:15:00 AM",
        "20240501061560000",
        "2024-05-01T06:15:00+24:00",
        "2024-02-30T06:15:00Z",
    ]
    column: list[str | None] = hour + odd + hour
    assert column_checker("timestamp", PACIFIC)(column) == one_by_one("timestamp", PACIFIC, column)


@pytest.mark.parametrize(
    ("type_name", "column"),
    [
        ("money", ["12.50", None, "12.50", "$12.50", "12.505", "0", "-3.1", "$12.50"]),
        ("phone", ["+1 888 555 1212", "+18885551212", "555-1212", None, "+1 888 555 1212"]),
        ("integer", ["007", "+5", "5", "-0", "5.0", None, "007", "0", "00", "\uff11\uff12", "-12",
                     "123456789012345678901"]),
        ("money", ["\u0661\u0662.5", "1.5", ".5", "-0.10", "1.", "1.5\n"]),
        ("decimal", ["1.", ".5", "+1.5", "1e5", "\u0661", "-.5", "."]),
        ("phone", ["+1 888 555 121\uff12", "+0123456789", "+1  888 5551212", "+1888555121212345"]),
        ("boolean01", ["Yes", "no", "1", "0", "TRUE", "maybe", None, "Yes"]),
        ("string", ["x" * 255, "y" * 256, None, "z"]),
        ("text", ["x" * 1000, None]),
    ],
)
def test_other_columns_match_the_checker(type_name: str, column: list[str | None]) -> None:
    got = column_checker(type_name, PACIFIC)(column)
    assert got == one_by_one(type_name, PACIFIC, column)


def test_out_of_range_timestamps_are_row_errors_not_crashes() -> None:
    column: list[str | None] = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-07:00"]
    _, errors = column_checker("timestamp", PACIFIC)(column)
    assert [index for index, _ in errors] == [0, 1]
    assert all("out of range" in message for _, message in errors)


@pytest.mark.parametrize("type_name", ["timestamp", "iso_utc"])
def test_canonical_timestamps_out_of_range_are_row_errors_too(type_name: str) -> None:
    """The text the pipeline itself writes is checked for the range as well, so the API never
    sees a year it refuses."""
    column: list[str | None] = ["0001-01-01T00:00:00.000Z", "1899-12-31T23:59:59.999Z",
                                "1900-01-01T00:00:00.000Z", "9999-12-31T00:00:00.000Z"]
    got = column_checker(type_name, PACIFIC)(column)
    assert got == one_by_one(type_name, PACIFIC, column)
    assert [index for index, _ in got[1]] == [0, 1, 3]


# --- reading ------------------------------------------------------------------------------------


def test_rectangular_and_ragged_files_read_alike(tmp_path: Path) -> None:
    body = "a,b,c\r\n 1 ,NULL,x\r\n2,, null \r\n3,Null,y\r\n"
    rectangular = tmp_path / "rectangular.csv"
    rectangular.write_text(body)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(body + "4\r\n5,z,w,,\r\n")
    expected = [["1", None, "x"], ["2", None, None], ["3", None, "y"]]
    assert read_table(rectangular).rows == expected
    assert read_table(ragged).rows == [*expected, ["4", None, None], ["5", "z", "w"]]


def test_rows_asked_for_replace_the_columns(tmp_path: Path) -> None:
    """Rows may be changed in place, so once they exist validation reads them, not the columns."""
    path = tmp_path / "signals.csv"
    path.write_text("transaction_id,name\nT1,Sale\n")
    table = read_table(path)
    assert table.columns == [["T1"], ["Sale"]]
    table.rows[0][1] = None
    assert table.columns is None
    assert validate(table, SIGNALS, [], PACIFIC, 1.0).rows[0].error == "name: missing value"


def test_workbook_columns_of_mixed_types(tmp_path: Path) -> None:
    """A column mixing booleans and numbers cannot share rendered cells: 1 == 1.0 == True."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["mixed", "amount", "when"])
    sheet.append([True, 12.5, datetime(2016, 4, 11, 13, 0)])
    sheet.append([1, 12.5, datetime(2016, 4, 11, 13, 0, 0, 250000)])
    sheet.append([1.5, " 7 ", "NULL"])
    sheet.append([" text ", 1e-05, datetime(2016, 4, 11, 0, 5)])
    path = tmp_path / "mixed.xlsx"
    book.save(path)
    assert read_table(path) == Table(
        ["mixed", "amount", "when"],
        [
            ["true", "12.5", "2016/04/11 01:00:00 PM"],
            ["1", "12.5", "2016/04/11 01:00:00.250 PM"],
            ["1.5", "7", None],
            ["text", "0.00001", "2016/04/11 12:05:00 AM"],
        ],
    )


# --- validating ---------------------------------------------------------------------------------


def test_tables_by_row_and_by_column_validate_alike() -> None:
    header = ["transaction_id", "name", "occurred_at_time", "sale_amount", "region"]
    rows: list[list[str | None]] = [
        ["T1", "Sale", "2016/04/11 01:00:00 PM", "10.00", "west"],
        [None, None, None, None, None],
        ["", "", None, None, ""],
        ["T4", None, "2016/04/11 01:00:99 PM", "$3", "west"],
        ["T5", "Sale", "1460404800", None, None],
    ]
    by_row = validate(Table(header, [list(row) for row in rows]), SIGNALS, DICTIONARY, PACIFIC, 1.0)
    columns = [list(column) for column in zip(*rows)]
    by_column = validate(Table.from_columns(header, columns), SIGNALS, DICTIONARY, PACIFIC, 1.0)
    assert by_column == by_row
    assert [row.number for row in by_row.rows] == [2, 5, 6]
    assert by_row.columns is not None
    assert by_row.columns.numbers == [row.number for row in by_row.good] == [2, 6]
    assert by_row.columns.values[0].to_list() == ["T1", "T5"]


def test_row_results_made_by_validation_behave_like_plain_ones() -> None:
    table = Table(["transaction_id", "name"], [["T1", "Sale"]])
    row = validate(table, SIGNALS, [], PACIFIC, 1.0).rows[0]
    plain = RowResult(2, {"transaction_id": "T1", "name": "Sale"}, None)
    assert row == plain
    assert repr(row) == repr(plain) == (
        "RowResult(number=2, values={'transaction_id': 'T1', 'name': 'Sale'}, error=None)"
    )
    row.values = {}
    assert row.values == {}


# --- mapping ------------------------------------------------------------------------------------


def row_by_row(feed: Feed, validation: Validation) -> MappedRows:
    """What ``map_rows`` must return: each good row through ``map_row``."""
    mapped = MappedRows(requests=[], failures=[])
    for row in validation.good:
        try:
            mapped.requests.append((row.number, map_row(feed, row.values, PACIFIC)))
        except ValueError as exc:
            mapped.failures.append((row.number, str(exc)))
    return mapped


SIGNAL_HEADER = [
    "transaction_id", "name", "occurred_at_time", "sale_amount", "value", "duration_in_seconds",
    "custom_parameter_1", "region", "plan_type",
]
SIGNAL_ROWS: list[list[str | None]] = [
    ["T1", "Sale", "2016/04/11 01:00:00 PM", "10.00", "yes", "65", "a%sb", "west", "gold"],
    ["T2", "Sale", "2016/04/11 01:00:01 PM", "10.00", "1", "65", 'say "hi"\\\n\tnow', "west", None],
    ["T3", "Lead", "1460404800", None, None, None, "a%sb", None, "gold"],
    ["T4", "", None, "$3", None, None, None, None, None],
    ["T5", "", None, None, None, None, None, None, None],
    ["T1", "Sale", "2016/04/11 01:00:00 PM", "10.00", "yes", "65", "a%sb", "west", "gold"],
]


@pytest.mark.parametrize(
    ("feed", "header", "rows"),
    [
        (SIGNALS, SIGNAL_HEADER, SIGNAL_ROWS),
        (
            ORDERS,
            ["Order ID", "Phone", "Ordered At", "Total", "Plan", "Internal Note"],
            [
                ["A-1", "+1 888 555 1212", "2016/04/11 01:00:00 PM", "129.45", "gold", "x"],
                ["A-2", "+18885551212", "2016/04/11 01:05:00 PM", None, None, None],
            ],
        ),
        (
            CALLS,
            ["customer_id", "call_start", "call_end", "time_in_queue", "calling_phone_number"],
            [
                ["00042", "2020-01-03T20:02:13Z", "2020-01-03T20:12:13.900Z", "600", None],
                ["00043", "2020-01-03 23:59:00", "2020-01-04T00:01:30Z", None, "+18885551212"],
            ],
        ),
        (
            LOOKUP,
            ["primary_key", "secondary_key", "region"],
            [["A1", None, "west"], ["A2", "B2", None], ["A3", "B3", "east"]],
        ),
    ],
)
def test_map_rows_matches_map_row(
    feed: Feed, header: list[str], rows: list[list[str | None]]
) -> None:
    validation = validate(Table(header, rows), feed, DICTIONARY, PACIFIC, 1.0)
    assert validation.good
    assert map_rows(feed, validation, PACIFIC) == row_by_row(feed, validation)


def test_map_rows_reports_the_rows_map_row_refuses() -> None:
    validation = validate(Table(SIGNAL_HEADER, SIGNAL_ROWS), SIGNALS, DICTIONARY, PACIFIC, 1.0)
    mapped = map_rows(SIGNALS, validation, PACIFIC)
    assert mapped.failures == [(6, "the row has no signal name")]
    assert [number for number, _ in mapped.requests] == [2, 3, 4, 7]
    assert mapped.requests[0][1] == mapped.requests[3][1]


def test_map_rows_checks_rows_it_did_not_see_validated() -> None:
    rows = [RowResult(2, {"transaction_id": "T1", "name": "Sale", "sale_amount": "$5"}, None)]
    mapped = map_rows(SIGNALS, Validation(file_error=None, rows=rows), PACIFIC)
    assert [(number, error.split(":")[:2]) for number, error in mapped.failures] == [
        (2, ["sale_amount", " '$5' is not an amount"])
    ]


def test_map_rows_of_two_columns_filling_one_field() -> None:
    """The row-by-row rule decides: the later column wins unless its value is missing."""
    feed = parse_feed(
        'name = "twice"\ntemplate = "signals"\n[mapping]\nkind = "signal"\n'
        '[mapping.columns]\n"custom_parameter_2" = "custom_data.region"\n'
    )
    header = ["transaction_id", "name", "custom_parameter_2", "region"]
    rows: list[list[str | None]] = [["T1", "Sale", "a", "b"], ["T2", "Sale", "a", None]]
    validation = validate(Table(header, rows), feed, DICTIONARY, PACIFIC, 1.0)
    mapped = map_rows(feed, validation, PACIFIC)
    assert mapped == row_by_row(feed, validation)
    assert [request.body["custom_data"] for _, request in mapped.requests] == [
        [{"name": "region", "value": "b"}],
        [{"name": "region", "value": "a"}],
    ]


def test_map_rows_of_choices_spelled_unlike_their_type() -> None:
    """``True`` is a valid choice, but a boolean goes out as ``true``, as ``map_row`` sends it."""
    feed = parse_feed(
        'name = "met"\n[template]\nextra_columns = "forbidden"\n'
        '[[template.columns]]\nname = "transaction_id"\nrequired = true\n'
        '[[template.columns]]\nname = "name"\nrequired = true\n'
        '[[template.columns]]\nname = "met"\ntype = "boolean01"\nchoices = ["True", "False"]\n'
        '[mapping]\nkind = "signal"\n[mapping.columns]\n"met" = "signal.value"\n'
    )
    rows: list[list[str | None]] = [["T1", "Sale", "true"], ["T2", "Sale", "FALSE"]]
    validation = validate(Table(["transaction_id", "name", "met"], rows), feed, [], PACIFIC, 1.0)
    assert [row.values["met"] for row in validation.good] == ["True", "False"]
    mapped = map_rows(feed, validation, PACIFIC)
    assert mapped == row_by_row(feed, validation)
    assert [request.body["signal"]["value"] for _, request in mapped.requests] == ["true", "false"]
