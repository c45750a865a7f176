"""The Signal API document's own timestamp examples, and the errors for anything else."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from core.timestamps import TimestampError, parse_timestamp

PACIFIC = ZoneInfo("America/Los_Angeles")
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
ONE_PM_PACIFIC = datetime(2016, 4, 11, 20, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text",
    [
        "1460404800",
        "1460404800000",
        "20160411130000000",
        "2016/04/11T23:00:00.000+03:00",
        "2016/04/11T13:00:00.000-07:00",
        "2016/04/11T20:00:00.000Z",
        "2016/04/11T13:00:00-07:00",
        "2016-04-11T20:00:00z",
        "2016/04/11 13:00:00.000 PM",
        "2016/04/11 13:00:00 PM",
        "2016/04/11 01:00:00 pm",
        " 1460404800 ",
    ],
)
def test_the_documents_examples_all_name_one_pm_pacific(text: str) -> None:
    assert parse_timestamp(text, PACIFIC) == ONE_PM_PACIFIC


def test_excel_style_is_read_in_the_accounts_zone_and_compressed_always_in_pacific() -> None:
    assert parse_timestamp("2016/04/11 04:00:00 PM", NEW_YORK) == ONE_PM_PACIFIC
    assert parse_timestamp("20160411130000000", NEW_YORK) == ONE_PM_PACIFIC


def test_milliseconds_are_kept() -> None:
    assert parse_timestamp("1460404800123", PACIFIC).microsecond == 123000
    assert parse_timestamp("20160411130000250", PACIFIC).microsecond == 250000
    assert parse_timestamp("2016/04/11 13:00:00.5 PM", PACIFIC).microsecond == 500000


def test_midnight_and_noon_on_a_twelve_hour_clock() -> None:
    assert parse_timestamp("2016/04/11 12:00:00 AM", UTC) == datetime(2016, 4, 11, tzinfo=timezone.utc)
    assert parse_timestamp("2016/04/11 12:00:00 PM", UTC).hour == 12


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("146040480", "has 9 digits"),
        ("2016/04/11 13:00:00", "is not a timestamp"),
        ("2016-04-11", "is not a timestamp"),
        ("2016/04/11T13:00:00", "is not a timestamp"),
        ("11/04/2016 13:00:00", "is not a timestamp"),
        ("2016/04/11 13:00:00 AM", "hour 13 contradicts AM"),
        ("2016/04/11 00:00:00 PM", "hour 0 contradicts PM"),
        ("2016/13/11 01:00:00 PM", "month must be in 1..12"),
        ("20160230130000000", "day is out of range for month"),
        ("2016/04/11T13:00:00+24:00", "UTC offset +24:00 is out of range"),
    ],
)
def test_anything_else_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(TimestampError, match=re.escape(reason)):
        parse_timestamp(text, PACIFIC)
