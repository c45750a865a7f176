"""Mapping validated rows to Signal API requests, call records and lookup-table rows."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ingest.rows.feeds import default_feeds, parse_feed
from ingest.rows.mapping import DestinationRequest, map_row
from ingest.rows.readers import read_table
from ingest.rows.validate import validate

PACIFIC = ZoneInfo("America/Los_Angeles")
EXAMPLES = Path(__file__).resolve().parents[3] / "etc" / "feeds"
FIXTURES = Path(__file__).parents[1] / "fixtures"
SIGNALS = default_feeds()["signals"]
CALLS = default_feeds()["calls"]
LOOKUP = parse_feed((EXAMPLES / "lookup.toml").read_text())
ORDERS = parse_feed((EXAMPLES / "orders.toml").read_text())

SIGNAL_ROW = {
    "transaction_id": "00000000-00000001",
    "name": "Quote",
    "partner_unique_id": "1",
    "description": "Honda Accord 2015",
    "occurred_at_time": "2016-04-11T20:00:00.000Z",
    "sale_amount": "100.00",
    "value": "true",
    "duration_in_seconds": "65",
    "region": "west",
    "Plan_Type": "gold",
    "custom_parameter_1": None,
}


def test_signal_request() -> None:
    request = map_row(SIGNALS, SIGNAL_ROW, PACIFIC)
    assert (request.kind, request.method, request.path) == (
        "signal",
        "POST",
        "/transactions/signals.json",
    )
    assert request.body == {
        "search": {"duration_in_seconds": 65, "transaction_id": "00000000-00000001"},
        "signal": {
            "description": "Honda Accord 2015",
            "name": "Quote",
            "occurred_at_time": "2016-04-11T20:00:00.000Z",
            "partner_unique_id": "1",
            "sale_amount": "100.00",
            "value": "true",
        },
        "custom_data": [
            {"name": "Plan_Type", "value": "gold"},
            {"name": "region", "value": "west"},
        ],
    }
    assert "oauth_token" not in request.body


def test_missing_values_are_left_to_the_api_defaults() -> None:
    request = map_row(SIGNALS, {"transaction_id": "T1", "name": "Sale", "value": None}, PACIFIC)
    assert request.body == {"search": {"transaction_id": "T1"}, "signal": {"name": "Sale"}}


@pytest.mark.parametrize(
    "raw, iso",
    [
        ("2016/04/11 01:00:00 PM", "2016-04-11T20:00:00.000Z"),
        ("1460404800", "2016-04-11T20:00:00.000Z"),
        ("20160411130000000", "2016-04-11T20:00:00.000Z"),
        ("2016/04/11T13:00:00-07:00", "2016-04-11T20:00:00.000Z"),
    ],
)
def test_raw_timestamps_are_sent_as_iso_utc(raw: str, iso: str) -> None:
    request = map_row(SIGNALS, {"call_start_time": raw, "name": "Sale"}, PACIFIC)
    assert request.body["search"] == {"call_start_time": iso}


def test_excel_style_uses_the_tenant_zone() -> None:
    values = {"call_start_time": "2016/04/11 01:00:00 PM", "name": "Sale"}
    request = map_row(SIGNALS, values, ZoneInfo("Asia/Tokyo"))
    assert request.body["search"]["call_start_time"] == "2016-04-11T04:00:00.000Z"


def test_raw_values_are_normalised_for_their_field() -> None:
    values = {
        "transaction_id": "T1",
        "name": "Sale",
        "value": "No",
        "calling_phone_number": "+1 888 555 1212",
    }
    body = map_row(SIGNALS, values, PACIFIC).body
    assert body["signal"]["value"] == "false"
    assert body["search"]["calling_phone_number"] == "+18885551212"


def test_a_value_that_does_not_fit_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"sale_amount: '\$5' is not an amount"):
        map_row(SIGNALS, {"transaction_id": "T1", "name": "Sale", "sale_amount": "$5"}, PACIFIC)


def test_a_signal_needs_a_name() -> None:
    with pytest.raises(ValueError, match="no signal name"):
        map_row(SIGNALS, {"transaction_id": "T1", "name": None}, PACIFIC)


def test_key_is_stable_and_content_based() -> None:
    first = map_row(SIGNALS, SIGNAL_ROW, PACIFIC)
    again = map_row(SIGNALS, dict(SIGNAL_ROW), PACIFIC)
    reordered = map_row(SIGNALS, dict(reversed(list(SIGNAL_ROW.items()))), PACIFIC)
    changed = map_row(SIGNALS, {**SIGNAL_ROW, "sale_amount": "100.01"}, PACIFIC)
    renamed = map_row(SIGNALS, {**SIGNAL_ROW, "region": None, "Region2": "west"}, PACIFIC)
    assert len(first.key) == 64 and int(first.key, 16) >= 0
    assert first.key == again.key == reordered.key
    assert reordered.body == first.body
    assert changed.key != first.key
    assert renamed.key != first.key


def test_equal_instants_in_other_formats_give_the_same_key() -> None:
    iso = map_row(SIGNALS, {"call_start_time": "2016-04-11T20:00:00Z", "name": "Sale"}, PACIFIC)
    epoch = map_row(SIGNALS, {"call_start_time": "1460404800", "name": "Sale"}, PACIFIC)
    assert iso.key == epoch.key


def test_constants_and_renamed_columns() -> None:
    values = {
        "Order ID": "A-000123",
        "Phone": "+18885551212",
        "Ordered At": "2016-04-11T20:00:00.000Z",
        "Total": "129.45",
        "Plan": "gold",
        "Internal Note": "call back",
    }
    request = map_row(ORDERS, values, PACIFIC)
    assert request.body == {
        "search": {
            "call_start_time": "2016-04-11T20:00:00.000Z",
            "calling_phone_number": "+18885551212",
        },
        "signal": {
            "description": "Order placed by phone",
            "name": "Sale",
            "partner_unique_id": "A-000123",
            "sale_amount": "129.45",
        },
        "custom_data": [{"name": "plan_type", "value": "gold"}],
    }


CALL_ROW = {
    "customer_id": "347bdddb",
    "call_start": "2020-01-03T20:02:13.000Z",
    "call_end": "2020-01-03T20:12:13.900Z",
    "survey_offered": "true",
    "time_in_queue": "600",
    "transfer": None,
    "calling_phone_number": "+18885551212",
}


def test_call_request() -> None:
    request = map_row(CALLS, CALL_ROW, PACIFIC)
    assert (request.kind, request.method, request.path) == ("call", "POST", "/calls.json")
    assert request.body == {
        "call": {
            "external_id": "347bdddb|2020-01-03T20:02:13.000Z",
            "start_time": "2020-01-03T20:02:13.000Z",
            "duration_in_seconds": 600,
            "calling_phone_number": "+18885551212",
            "attributes": {"survey_offered": "true", "time_in_queue": "600"},
        }
    }


def test_call_without_a_phone_number() -> None:
    body = map_row(CALLS, {**CALL_ROW, "calling_phone_number": None}, PACIFIC).body
    assert "calling_phone_number" not in body["call"]


def test_call_raw_iso_without_z_is_utc() -> None:
    values = {**CALL_ROW, "call_start": "2020-01-03 20:02:13", "call_end": "2020-01-03T20:02:14Z"}
    call = map_row(CALLS, values, PACIFIC).body["call"]
    assert call["start_time"] == "2020-01-03T20:02:13.000Z" and call["duration_in_seconds"] == 1


def test_call_ending_before_it_starts() -> None:
    with pytest.raises(ValueError, match="is before call_start"):
        map_row(CALLS, {**CALL_ROW, "call_end": "2020-01-03T20:00:00.000Z"}, PACIFIC)


def test_call_needs_its_fields() -> None:
    with pytest.raises(ValueError, match="no customer_id"):
        map_row(CALLS, {**CALL_ROW, "customer_id": None}, PACIFIC)


def test_lookup_request() -> None:
    values = {
        "primary_key": "ACME-001",
        "secondary_key": None,
        "region": "west",
        "account_tier": "gold",
    }
    request = map_row(LOOKUP, values, PACIFIC)
    assert (request.kind, request.method, request.path) == (
        "lookup",
        "PUT",
        "/lookup_tables/accounts/rows",
    )
    assert request.body == {
        "primary_key": "ACME-001",
        "data": {"account_tier": "gold", "region": "west"},
    }
    with_secondary = map_row(LOOKUP, {**values, "secondary_key": "EU"}, PACIFIC)
    assert with_secondary.body["secondary_key"] == "EU" and with_secondary.key != request.key


def test_same_body_in_different_kinds_has_different_keys() -> None:
    lookup = map_row(LOOKUP, {"primary_key": "K"}, PACIFIC)
    other = parse_feed(
        'name = "other"\ntemplate = "lookup"\n[mapping]\nkind = "lookup"\ntable = "other"\n'
    )
    assert map_row(other, {"primary_key": "K"}, PACIFIC).key != lookup.key


def test_request_is_frozen() -> None:
    request = map_row(LOOKUP, {"primary_key": "K"}, PACIFIC)
    assert isinstance(request, DestinationRequest)
    with pytest.raises(AttributeError):
        request.key = "x"  # type: ignore[misc]


def test_from_a_semicolon_file_to_requests(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "Order ID;Phone;Ordered At;Total;Plan;Internal Note\n"
        "A-000123;+1 8885551212;2016/04/11 01:00:00 PM;129.45;gold;call back\n"
        "A-000124;+1 8885551213;2016/04/11 01:05:00 PM;NULL;;\n",
        encoding="utf-8-sig",
    )
    validation = validate(read_table(path), ORDERS, ["plan_type"], PACIFIC, 0.0)
    assert validation.file_error is None and not validation.bad
    requests = [map_row(ORDERS, row.values, PACIFIC) for row in validation.good]
    assert requests[0].body["search"]["call_start_time"] == "2016-04-11T20:00:00.000Z"
    assert requests[1].body["signal"] == {
        "description": "Order placed by phone",
        "name": "Sale",
        "partner_unique_id": "A-000124",
    }
    assert "custom_data" not in requests[1].body


def test_calls_from_a_workbook_with_date_cells() -> None:
    """Date cells carry no zone; in the UTC columns of the call schema they are UTC."""
    validation = validate(read_table(FIXTURES / "calls.xlsx"), CALLS, [], PACIFIC, 0.0)
    assert validation.file_error is None and not validation.bad
    calls = [map_row(CALLS, row.values, PACIFIC).body["call"] for row in validation.good]
    assert calls == [
        {
            "external_id": "00042|2020-01-03T20:02:13.000Z",
            "start_time": "2020-01-03T20:02:13.000Z",
            "duration_in_seconds": 600,
            "calling_phone_number": "+18885551212",
            "attributes": {"time_in_queue": "600"},
        },
        {
            "external_id": "00043|2020-01-03T23:59:00.000Z",
            "start_time": "2020-01-03T23:59:00.000Z",
            "duration_in_seconds": 150,
            "attributes": {"time_in_queue": "0"},
        },
    ]


def test_a_value_cannot_forge_another_field_in_the_key() -> None:
    two_fields = {"transaction_id": "T", "name": "S", "custom_parameter_1": "a", "description": "b"}
    forged = "a\x1esignal.description=b"  # would collide if pairs were only joined by a separator
    one_field = {"transaction_id": "T", "name": "S", "custom_parameter_1": forged}
    keys = {map_row(SIGNALS, values, PACIFIC).key for values in (two_fields, one_field)}
    assert len(keys) == 2
