"""Validation: file-level checks reject the file, row-level checks reject the row."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.crypto import AtRest
from core.filenames import upload_name_error
from ingest.rows.feeds import Feed, default_feeds, parse_feed
from ingest.rows.readers import Table
from ingest.rows.validate import Validation, check_file, check_file_name, validate

PACIFIC = ZoneInfo("America/Los_Angeles")
EXAMPLES = Path(__file__).resolve().parents[3] / "etc" / "feeds"
DICTIONARY = ["Plan_Type", "region"]
ALLOWED = ("csv", "xlsx", "xls")

SIGNALS = default_feeds()["signals"]
CALLS = default_feeds()["calls"]
ORDERS = parse_feed((EXAMPLES / "orders.toml").read_text())
LOOKUP = parse_feed((EXAMPLES / "lookup.toml").read_text())


def run(
    feed: Feed,
    header: list[str],
    *rows: list[str | None],
    share: float = 1.0,
    tz: ZoneInfo = PACIFIC,
) -> Validation:
    return validate(
        Table(header=header, rows=[list(row) for row in rows]), feed, DICTIONARY, tz, share
    )


def signal_errors(column: str, *values: str) -> list[str | None]:
    """Row errors of signal rows that put each value in ``column``."""
    result = run(SIGNALS, ["transaction_id", "name", column], *(["T1", "Sale", v] for v in values))
    assert result.file_error is None
    return [row.error for row in result.rows]


def signal_values(column: str, value: str, tz: ZoneInfo = PACIFIC) -> str | None:
    result = run(SIGNALS, ["transaction_id", "name", column], ["T1", "Sale", value], tz=tz)
    assert result.rows[0].error is None, result.rows[0].error
    return result.rows[0].values[column]


# --- file level -------------------------------------------------------------------------------


def test_empty_file() -> None:
    assert run(SIGNALS, []).file_error == "the file is empty: it has no header row"


def test_nameless_column() -> None:
    assert run(SIGNALS, ["name", "", "x"]).file_error == "column 2 of the header has no name"


def test_duplicate_columns_ignore_case() -> None:
    error = run(SIGNALS, ["name", "transaction_id", "Name"]).file_error
    assert error == "column 'Name' appears twice in the header (columns 1 and 3)"


def test_missing_required_columns() -> None:
    assert run(SIGNALS, ["transaction_id"]).file_error == "missing required column: name"
    error = run(CALLS, ["customer_id"]).file_error
    assert error == "missing required columns: call_start, call_end"


def test_unknown_columns_where_the_template_forbids_them() -> None:
    error = run(CALLS, ["customer_id", "call_start", "call_end", "colour", "size"]).file_error
    assert error is not None and error.startswith(
        "unknown columns 'colour', 'size'; template 'calls' has:"
    )


def test_extra_columns_are_kept_as_custom_data() -> None:
    result = run(SIGNALS, ["transaction_id", "name", "plan_type"], ["T1", "Sale", "gold"])
    assert result.rows[0].values == {"transaction_id": "T1", "name": "Sale", "plan_type": "gold"}


def test_extra_columns_can_be_ignored() -> None:
    feed = parse_feed(
        'name = "x"\n[template]\nextra_columns = "ignored"\n'
        '[[template.columns]]\nname = "transaction_id"\n'
        '[[template.columns]]\nname = "name"\n[mapping]\nkind = "signal"\n'
    )
    result = run(feed, ["transaction_id", "junk", "name"], ["T1", "zzz", "Sale"])
    assert result.file_error is None
    assert result.rows[0].values == {"transaction_id": "T1", "name": "Sale"}


def test_header_matches_template_ignoring_case_and_takes_its_spelling() -> None:
    result = run(SIGNALS, ["Transaction_ID", "NAME"], ["T1", "Sale"])
    assert result.rows[0].values == {"transaction_id": "T1", "name": "Sale"}


ORDER_HEADER = ["Order ID", "Phone", "Ordered At", "Total", "Plan", "Internal Note"]
ORDER_ROW = ["A-1", "+1 8885551212", "2016/04/11 01:00:00 PM", "129.45", "gold", "call back"]


def test_ordered_template_accepts_its_order() -> None:
    result = run(ORDERS, ORDER_HEADER, ORDER_ROW)
    assert result.file_error is None and result.rows[0].error is None


def test_ordered_template_allows_absent_optional_columns() -> None:
    result = run(
        ORDERS,
        ["Order ID", "Phone", "Ordered At", "Plan"],
        ["A-1", "+18885551212", "1460404800", "x"],
    )
    assert result.file_error is None


def test_ordered_template_refuses_another_order() -> None:
    header = ["Phone", "Order ID", "Ordered At"]
    error = run(ORDERS, header, ["+18885551212", "A-1", "1460404800"]).file_error
    assert (
        error == "columns out of order: expected Order ID, Phone, Ordered At;"
        " found Phone, Order ID, Ordered At"
    )


def test_unordered_template_takes_any_order() -> None:
    result = run(SIGNALS, ["name", "sale_amount", "transaction_id"], ["Sale", "5", "T1"])
    assert result.file_error is None and result.rows[0].error is None


def test_required_field_with_no_column_in_this_file() -> None:
    feed = parse_feed(
        'name = "x"\n[[template.columns]]\nname = "transaction_id"\n[[template.columns]]\n'
        'name = "Product"\n[mapping]\nkind = "signal"\n[mapping.columns]\nProduct = "signal.name"\n'
    )
    assert run(feed, ["transaction_id"], ["T1"]).file_error == (
        "no column of this file gives signal.name, which is required"
    )


def test_signal_file_without_any_search_column() -> None:
    error = run(SIGNALS, ["name", "sale_amount"], ["Sale", "5"]).file_error
    assert error == (
        "no column of this file gives transaction_id, call_record_id, call_start_time:"
        " rows could not find their call"
    )


def test_constant_custom_data_field_missing_from_the_dictionary() -> None:
    feed = parse_feed(
        'name = "x"\ntemplate = "signals"\n[mapping]\nkind = "signal"\n[mapping.constants]\n'
        '"custom_data.source" = "sftp"\n'
    )
    error = run(feed, ["transaction_id", "name"], ["T1", "Sale"]).file_error
    assert error == (
        "the feed's constant custom_data.source: custom data field 'source' is not in the tenant's"
        " data dictionary"
    )


def test_bad_row_share_over_the_limit_rejects_the_file_and_keeps_row_errors() -> None:
    rows = [["T1", "Sale"], ["T2", None], ["T3", None], ["T4", "Sale"], ["T5", None]]
    result = run(SIGNALS, ["transaction_id", "name"], *rows, share=0.5)
    assert (
        result.file_error
        == "3 of 5 rows are bad (60%), more than the 50% allowed: the whole file is rejected"
    )
    assert [row.number for row in result.bad] == [3, 4, 6]


def test_bad_row_share_at_the_limit_passes() -> None:
    rows = [["T1", "Sale"], ["T2", None]]
    result = run(SIGNALS, ["transaction_id", "name"], *rows, share=0.5)
    assert result.file_error is None
    assert [(row.number, row.error) for row in result.rows] == [
        (2, None),
        (3, "name: missing value"),
    ]


def test_header_only_file_is_valid_and_empty() -> None:
    assert run(SIGNALS, ["transaction_id", "name"], share=0.0) == Validation(
        file_error=None, rows=[]
    )


# --- row level ----------------------------------------------------------------------------------


def test_row_numbers_follow_the_file_and_skip_blank_rows() -> None:
    rows = [["T1", "Sale"], [None, None], ["T3", "Sale"]]
    result = run(SIGNALS, ["transaction_id", "name"], *rows)
    assert [row.number for row in result.rows] == [2, 4]


def test_a_blank_row_is_no_bad_row_whichever_is_asked_first() -> None:
    """The processor asks for the bad rows alone; a blank row must not be one (it was, with
    "name: missing value", and counted against the bad-row share)."""
    rows = [["T1", "Sale"], [None, None], ["T3", "Sale"], [None, None]]
    result = run(SIGNALS, ["transaction_id", "name"], *rows, share=0.4)
    assert (result.file_error, result.bad, result.row_count) == (None, [], 2)


def test_row_longer_than_the_header() -> None:
    result = run(SIGNALS, ["transaction_id", "name"], ["T1", "Sale", "surplus"])
    assert result.rows[0].error == "the row has 3 values but the header has 2 columns"


def test_several_errors_in_one_row_are_joined() -> None:
    result = run(SIGNALS, ["transaction_id", "name", "sale_amount"], ["T1", None, "$5"])
    error = result.rows[0].error
    assert error is not None
    assert error.startswith("name: missing value; sale_amount: '$5' is not an amount")


def test_a_row_without_any_search_key() -> None:
    header = ["transaction_id", "call_record_id", "call_start_time", "name"]
    result = run(SIGNALS, header, [None, None, None, "Sale"], [None, "CR1", None, "Sale"])
    assert result.rows[0].error == (
        "no transaction_id, call_record_id, call_start_time: the row cannot find its call"
    )
    assert result.rows[1].error is None


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1460404800", "2016-04-11T20:00:00.000Z"),
        ("1460404800123", "2016-04-11T20:00:00.123Z"),
        ("20160411130000000", "2016-04-11T20:00:00.000Z"),
        ("2016/04/11T13:00:00.000-07:00", "2016-04-11T20:00:00.000Z"),
        ("2016/04/11 13:00:00.000 PM", "2016-04-11T20:00:00.000Z"),
        ("2016-04-11T20:00:00.000Z", "2016-04-11T20:00:00.000Z"),
    ],
)
def test_timestamps_become_iso_utc(value: str, expected: str) -> None:
    assert signal_values("occurred_at_time", value) == expected


def test_excel_timestamps_use_the_tenant_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert (
        signal_values("call_start_time", "2016/04/11 01:00:00 PM", berlin)
        == "2016-04-11T11:00:00.000Z"
    )


def test_bad_timestamps() -> None:
    errors = signal_errors(
        "occurred_at_time", "2026/03/08 02:30:00 AM", "146040480", "2016-02-30T00:00:00.000Z"
    )
    assert errors[0] is not None and "does not exist in America/Los_Angeles" in errors[0]
    assert errors[1] is not None and "has 9 digits" in errors[1]
    assert errors[2] is not None and "not a valid date and time" in errors[2]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("true", "true"),
        ("TRUE", "true"),
        ("1", "true"),
        ("Yes", "true"),
        ("false", "false"),
        ("0", "false"),
        ("no", "false"),
        ("NO", "false"),
    ],
)
def test_booleans(value: str, expected: str) -> None:
    assert signal_values("value", value) == expected


def test_bad_booleans() -> None:
    assert signal_errors("value", "maybe", "2", "y") == [
        "value: 'maybe' is not a boolean: expected true/false, 1/0 or yes/no",
        "value: '2' is not a boolean: expected true/false, 1/0 or yes/no",
        "value: 'y' is not a boolean: expected true/false, 1/0 or yes/no",
    ]


@pytest.mark.parametrize("value", ["100", "100.5", "100.00", "0.99", "-5.25", "1234567.89"])
def test_money(value: str) -> None:
    assert signal_values("sale_amount", value) == value


def test_bad_money() -> None:
    symbol, separator, decimals, comma = signal_errors(
        "sale_amount", "$100.00", "1,234.50", "9.999", "9,99"
    )
    assert symbol is not None and "without currency symbols or thousands separators" in symbol
    assert separator is not None and "without currency symbols or thousands separators" in separator
    assert decimals == "sale_amount: '9.999' has more than 2 decimal places"
    assert comma is not None and "is not an amount" in comma


def test_integers() -> None:
    assert signal_values("duration_in_seconds", "0060") == "60"
    assert signal_errors("duration_in_seconds", "60.5", "1e3", "sixty") == [
        "duration_in_seconds: '60.5' is not a whole number",
        "duration_in_seconds: '1e3' is not a whole number",
        "duration_in_seconds: 'sixty' is not a whole number",
    ]


def test_strings_up_to_255_characters() -> None:
    assert signal_errors("custom_parameter_1", "x" * 255, "x" * 256) == [
        None,
        "custom_parameter_1: is 256 characters long; at most 255 are allowed",
    ]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("+1 8885551212", "+18885551212"),
        ("+18885551212", "+18885551212"),
        ("+44 20 7123 4567", "+442071234567"),
        ("+12345678", "+12345678"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_phone_numbers(value: str, expected: str) -> None:
    assert signal_values("calling_phone_number", value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "8885551212",
        "+1234567",
        "+1234567890123456",
        "+1 (888) 555-1212",
        "+0 8885551212",
        "+1888555121x",
    ],
)
def test_bad_phone_numbers(value: str) -> None:
    (error,) = signal_errors("calling_phone_number", value)
    assert error == (
        f"calling_phone_number: {value!r} is not an E.164 phone number: expected '+', the country"
        " code and the number, 8 to 15 digits, e.g. +18885551212"
    )


def test_custom_data_fields_must_be_in_the_dictionary_ignoring_case() -> None:
    header = ["transaction_id", "name", "PLAN_TYPE", "colour"]
    result = run(SIGNALS, header, ["T1", "Sale", "gold", "red"], ["T2", "Sale", "gold", None])
    assert result.rows[0].error == (
        "colour: custom data field 'colour' is not in the tenant's data dictionary"
    )
    assert result.rows[1].error is None  # no value, nothing to apply


def test_signal_names_may_be_new() -> None:
    assert signal_errors("description", "x") == [None]
    result = run(SIGNALS, ["transaction_id", "name"], ["T1", "Brand New Signal"])
    assert result.rows[0].error is None


def test_lookup_data_fields_must_be_in_the_dictionary() -> None:
    result = run(
        LOOKUP, ["primary_key", "region", "tier"], ["K1", "west", "gold"], [None, "x", None]
    )
    assert [row.error for row in result.rows] == [
        "tier: custom data field 'tier' is not in the tenant's data dictionary",
        "primary_key: missing value",
    ]


def test_the_mapped_field_type_is_checked_too() -> None:
    # The inline column is a plain decimal; mapped to sale_amount it must also be money.
    feed = parse_feed(
        'name = "x"\n[[template.columns]]\nname = "id"\n[[template.columns]]\nname = "amount"\n'
        'type = "decimal"\n[mapping]\nkind = "signal"\n[mapping.columns]\n'
        'id = "search.transaction_id"\n'
        'amount = "signal.sale_amount"\n[mapping.constants]\n"signal.name" = "Sale"\n'
    )
    result = run(feed, ["id", "amount"], ["T1", "65.25"], ["T2", "65.255"], ["T3", "lots"])
    assert [row.error for row in result.rows] == [
        None,
        "amount: '65.255' has more than 2 decimal places (mapped to signal.sale_amount)",
        "amount: 'lots' is not a decimal number: expected digits and a '.', e.g. 129.45",
    ]


def test_orders_example_rows() -> None:
    bad = ["A-2", "8885551212", "2016/04/11 01:00:00 PM", "12,00", "gold", None]
    result = run(ORDERS, ORDER_HEADER, ORDER_ROW, bad)
    assert result.rows[0].values == {
        "Order ID": "A-1",
        "Phone": "+18885551212",
        "Ordered At": "2016-04-11T20:00:00.000Z",
        "Total": "129.45",
        "Plan": "gold",
        "Internal Note": "call back",
    }
    error = result.rows[1].error
    assert error is not None and error.startswith("Phone: '8885551212' is not an E.164")
    assert "Total: '12,00' is not an amount" in error


CALL_HEADER = [
    "customer_id",
    "call_start",
    "call_end",
    "survey_offered",
    "time_in_queue",
    "calling_phone_number",
]


def test_call_rows() -> None:
    good = ["C1", "2020-01-03T20:02:13Z", "2020-01-03T20:12:13.5Z", "TRUE", "600", "+1 8885551212"]
    backwards = ["C2", "2020-01-03T20:02:13Z", "2020-01-03T20:00:00Z", None, None, None]
    bad_types = ["C3", "2020-01-03 20:02:13 UTC", "2020-01-03T20:12:13Z", "sometimes", "6.5", None]
    bad_start = ["C4", "2020-13-03T20:02:13.000Z", "2020-01-03T20:12:13.000Z", None, None, None]
    result = run(CALLS, CALL_HEADER, good, backwards, bad_types, bad_start)
    assert result.rows[0].error is None
    assert result.rows[0].values == {
        "customer_id": "C1",
        "call_start": "2020-01-03T20:02:13.000Z",
        "call_end": "2020-01-03T20:12:13.500Z",
        "survey_offered": "true",
        "time_in_queue": "600",
        "calling_phone_number": "+18885551212",
    }
    assert result.rows[1].error == (
        "call_end (2020-01-03T20:00:00.000Z) is before call_start (2020-01-03T20:02:13.000Z)"
    )
    error = result.rows[2].error
    assert error is not None
    assert "call_start: '2020-01-03 20:02:13 UTC' is not an ISO 8601 UTC timestamp" in error
    assert "survey_offered: 'sometimes' is not a boolean" in error
    assert "time_in_queue: '6.5' is not a whole number" in error
    # An invalid start is reported once, not compared with the end.
    assert result.rows[3].error is not None and "before" not in result.rows[3].error


def test_choices_are_matched_ignoring_case_and_take_the_listed_spelling() -> None:
    feed = parse_feed(
        'name = "x"\n[[template.columns]]\nname = "transaction_id"\n[[template.columns]]\n'
        'name = "name"\nchoices = ["Sale", "Quote"]\n[[template.columns]]\nname = "notes"\n'
        'type = "text"\n[mapping]\nkind = "signal"\n[mapping.columns]\nnotes = "ignore"\n'
    )
    long_text = "word " * 400
    result = run(
        feed, ["transaction_id", "name", "notes"], ["T1", "SALE", long_text], ["T2", "Refund", None]
    )
    assert result.rows[0].error is None
    assert result.rows[0].values == {"transaction_id": "T1", "name": "Sale", "notes": long_text}
    assert result.rows[1].error == "name: 'Refund' is not one of Sale, Quote"


# --- check_file -----------------------------------------------------------------------------------


def test_check_file_accepts_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "signals.csv"
    path.write_bytes(b"a,b\n")
    assert check_file(path, 100, ALLOWED) is None


def test_check_file_reuses_the_shared_name_rule(tmp_path: Path) -> None:
    assert check_file_name is upload_name_error
    for name in ("two.dots.csv", "notes.txt"):
        path = tmp_path / name
        path.write_bytes(b"a\n")
        assert check_file(path, 100, ALLOWED) == upload_name_error(name, ALLOWED)


def test_check_file_size(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"x" * (5 * 1024 * 1024 + 1))
    assert check_file(path, 5 * 1024 * 1024, ALLOWED) == (
        "'big.csv' is 5.0 MB (5242881 bytes); files may be at most 5.0 MB (5242880 bytes)"
    )
    assert check_file(path, 5 * 1024 * 1024 + 1, ALLOWED) is None


def test_check_file_sizes_a_sealed_file_by_its_plaintext(tmp_path: Path) -> None:
    """A file sealed at rest is larger on disk than what was uploaded: the limit is on the upload;
    a sealed file whose header is cut is refused as damaged."""
    at_rest = AtRest.load(tmp_path / "keys", tmp_path / "var", create=True)
    path = tmp_path / "exact.csv"
    at_rest.write_bytes(path, b"x" * 1000)
    assert path.stat().st_size > 1000 and check_file(path, 1000, ALLOWED) is None
    assert "is 0.0 MB (1000 bytes)" in (check_file(path, 999, ALLOWED) or "")
    with open(path, "r+b") as raw:
        raw.truncate(50)
    assert check_file(path, 1000, ALLOWED) == (
        "'exact.csv' cannot be read: its stored copy is damaged; please upload the file again")


def test_check_file_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    target = tmp_path / "target.csv"
    target.write_bytes(b"a\n")
    link = tmp_path / "link.csv"
    os.symlink(target, link)
    assert check_file(folder, 100, ALLOWED) == "'folder.csv' is not a regular file"
    assert check_file(link, 100, ALLOWED) == "'link.csv' is not a regular file"
    assert (
        check_file(tmp_path / "gone.csv", 100, ALLOWED)
        == "'gone.csv' cannot be read: No such file or directory"
    )
