"""The four Signal API timestamp formats, ASAPP's ISO 8601 UTC, and their edges."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.timestamps import (
    EARLIEST,
    EPOCH,
    LATEST,
    TimestampError,
    format_iso_utc,
    parse_iso_utc,
    parse_timestamp,
)

PACIFIC = ZoneInfo("America/Los_Angeles")
BERLIN = ZoneInfo("Europe/Berlin")
# The instant every example of the Signal API doc stands for: 11 April 2016, 1 PM Pacific.
DOC_INSTANT = datetime(2016, 4, 11, 20, 0, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


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
        "2016-04-11T20:00:00Z",
        "2016-04-11T20:00:00z",
        "2016-04-11T13:00:00-0700",
        "2016/04/11 13:00:00.000 PM",
        "2016/04/11 13:00:00 PM",
        "2016/04/11 01:00:00 PM",
        "2016/4/11 1:00:00 pm",
        "  1460404800  ",
    ],
)
def test_every_example_of_the_doc_is_the_same_instant(text: str) -> None:
    assert parse_timestamp(text, PACIFIC) == DOC_INSTANT


def test_results_are_aware_utc() -> None:
    parsed = parse_timestamp("2016/04/11 01:00:00 PM", PACIFIC)
    assert parsed.tzinfo is UTC


def test_epoch_milliseconds_keep_their_fraction() -> None:
    assert parse_timestamp("1460404800123", PACIFIC) == utc(2016, 4, 11, 20, 0, 0, 123000)


def test_iso_fraction_is_optional_and_kept() -> None:
    assert parse_timestamp("2016-04-11T20:00:00.5Z", PACIFIC) == utc(2016, 4, 11, 20, 0, 0, 500000)


def test_compressed_is_pacific_whatever_the_tenant_zone() -> None:
    assert parse_timestamp("20160411130000250", BERLIN) == utc(2016, 4, 11, 20, 0, 0, 250000)


def test_excel_style_is_read_in_the_tenant_zone() -> None:
    assert parse_timestamp("2016/04/11 01:00:00 PM", BERLIN) == utc(2016, 4, 11, 11, 0)


def test_offsets_ignore_the_tenant_zone() -> None:
    assert parse_timestamp("2016-04-11T13:00:00-07:00", BERLIN) == DOC_INSTANT


@pytest.mark.parametrize(
    "text, hour",
    [
        ("2016/04/11 12:00:00 AM", 0),
        ("2016/04/11 00:30:00 AM", 0),
        ("2016/04/11 12:00:00 PM", 12),
        ("2016/04/11 11:00:00 AM", 11),
        ("2016/04/11 11:00:00 PM", 23),
        ("2016/04/11 23:00:00 PM", 23),
    ],
)
def test_excel_hours(text: str, hour: int) -> None:
    local = parse_timestamp(text, PACIFIC).astimezone(PACIFIC)
    assert local.hour == hour


@pytest.mark.parametrize(
    "text, reason",
    [
        ("2016/04/11 13:00:00 AM", "contradicts AM"),
        ("2016/04/11 00:00:00 PM", "contradicts PM"),
        ("2016/04/11 24:00:00 PM", "out of range"),
        ("2016/04/11 13:00:00", "is not a timestamp"),
        ("2016-04-11 01:00:00 PM", "is not a timestamp"),
    ],
)
def test_bad_excel_times_are_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_timestamp(text, PACIFIC)


@pytest.mark.parametrize(
    "digits", ["12345678901", "123456789012", "12345678901234", "1234567890123456"]
)
def test_other_digit_counts_are_refused(digits: str) -> None:
    with pytest.raises(ValueError, match=f"has {len(digits)} digits"):
        parse_timestamp(digits, PACIFIC)


@pytest.mark.parametrize(
    "text",
    [
        "2016/02/30T00:00:00Z",
        "2015-02-29T00:00:00Z",
        "2016-13-01T00:00:00Z",
        "2016-04-11T24:00:00Z",
        "2016-04-11T23:60:00Z",
        "20160230130000000",
        "2016/04/31 01:00:00 PM",
    ],
)
def test_invalid_dates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a valid date and time"):
        parse_timestamp(text, PACIFIC)


@pytest.mark.parametrize(
    "text",
    [
        "2016-04-11T13:00:00",  # no offset: ambiguous
        "2016-04-11",
        "2016/04-11T13:00:00Z",  # mixed separators
        "yesterday",
        "",
        "1460404800.5",
        "-1460404800",
        "١٤٦٠٤٠٤٨٠٠",  # Arabic-Indic digits are digits to Python, not to us
    ],
)
def test_not_a_timestamp(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a timestamp|digits"):
        parse_timestamp(text, PACIFIC)


def test_offset_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        parse_timestamp("2016-04-11T13:00:00+24:00", PACIFIC)


def test_error_names_the_formats() -> None:
    with pytest.raises(ValueError) as caught:
        parse_timestamp("11/04/2016", PACIFIC)
    message = str(caught.value)
    assert "'11/04/2016'" in message and "10 digits" in message and "AM/PM" in message


# DST in Los Angeles: 2026-03-08 02:00 PST jumps to 03:00 PDT; 2026-11-01 02:00 PDT falls back to
# 01:00 PST, so 01:00-01:59 happens twice.


def test_spring_gap_is_refused_excel() -> None:
    with pytest.raises(ValueError, match="does not exist in America/Los_Angeles"):
        parse_timestamp("2026/03/08 02:30:00 AM", PACIFIC)


def test_spring_gap_is_refused_compressed() -> None:
    with pytest.raises(ValueError, match="does not exist"):
        parse_timestamp("20260308020000000", BERLIN)


def test_around_the_spring_gap() -> None:
    assert parse_timestamp("2026/03/08 01:59:59 AM", PACIFIC) == utc(2026, 3, 8, 9, 59, 59)
    assert parse_timestamp("2026/03/08 03:00:00 AM", PACIFIC) == utc(2026, 3, 8, 10, 0)


def test_spring_gap_with_an_offset_is_fine() -> None:
    assert parse_timestamp("2026-03-08T02:30:00-08:00", PACIFIC) == utc(2026, 3, 8, 10, 30)


def test_autumn_fold_is_the_first_occurrence() -> None:
    first = parse_timestamp("2026/11/01 01:30:00 AM", PACIFIC)
    assert first == utc(2026, 11, 1, 8, 30)  # 01:30 PDT (-7), not 01:30 PST (-8)
    assert parse_timestamp("20261101013000000", PACIFIC) == first


def test_around_the_autumn_fold() -> None:
    assert parse_timestamp("2026/11/01 12:59:59 AM", PACIFIC) == utc(2026, 11, 1, 7, 59, 59)
    assert parse_timestamp("2026/11/01 02:00:00 AM", PACIFIC) == utc(2026, 11, 1, 10, 0)


def test_the_second_occurrence_needs_an_offset() -> None:
    assert parse_timestamp("2026-11-01T01:30:00-08:00", PACIFIC) == utc(2026, 11, 1, 9, 30)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2020-01-03T20:02:13Z", utc(2020, 1, 3, 20, 2, 13)),
        ("2022-03-16T18:42:24.488424Z", utc(2022, 3, 16, 18, 42, 24, 488424)),
        ("2007-04-05T14:30:05.123Z", utc(2007, 4, 5, 14, 30, 5, 123000)),
        ("2020-01-03T20:02:13.123456789Z", utc(2020, 1, 3, 20, 2, 13, 123456)),
        ("2020-01-03T20:02:13", utc(2020, 1, 3, 20, 2, 13)),
        ("2020-01-03 20:02:13", utc(2020, 1, 3, 20, 2, 13)),
        ("2020-01-03T12:02:13-08:00", utc(2020, 1, 3, 20, 2, 13)),
        ("2020-01-03T20:02:13+00:00", utc(2020, 1, 3, 20, 2, 13)),
        ("2020/01/03 08:02:13 PM", utc(2020, 1, 3, 20, 2, 13)),  # a spreadsheet date cell
        ("2026/03/08 02:30:00 AM", utc(2026, 3, 8, 2, 30)),  # UTC has no DST gap
    ],
)
def test_iso_utc(text: str, expected: datetime) -> None:
    parsed = parse_iso_utc(text)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text, reason",
    [
        ("2020/01/03T20:02:13Z", "not an ISO 8601 UTC timestamp"),
        ("2020/01/03 20:02:13", "not an ISO 8601 UTC timestamp"),
        ("1578081733", "not an ISO 8601 UTC timestamp"),
        ("2020-01-03", "not an ISO 8601 UTC timestamp"),
        ("2020-02-30T20:02:13Z", "not a valid date and time"),
    ],
)
def test_iso_utc_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_iso_utc(text)


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-07:00", "0001/01/01 00:00:00 AM"]
)
def test_instants_outside_the_utc_calendar_are_errors(text: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_timestamp(text, BERLIN)


def test_iso_utc_outside_the_utc_calendar_is_an_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_iso_utc("0001-01-01 00:00:00+05:00")


def test_compressed_and_excel_fractions_are_kept() -> None:
    assert parse_timestamp("20160411130000250", PACIFIC).microsecond == 250000
    assert parse_timestamp("2016/04/11 01:00:00.5 PM", PACIFIC).microsecond == 500000


# Properties (hypothesis): the parsers raise nothing but TimestampError on any text, accept only
# instants from EARLIEST to LATEST, and read back what the documented formats write.

ZONES = [ZoneInfo(key) for key in (
    "UTC", "America/Los_Angeles", "Europe/Berlin", "Pacific/Kiritimati", "Pacific/Pago_Pago",
    "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns",
)]
zones = st.sampled_from(ZONES)
# Local times from two days before EARLIEST to past LATEST, so both ends of the range are reached.
naive_times = st.datetimes(min_value=datetime(1899, 12, 30), max_value=datetime(9999, 12, 31, 23, 59))
# Text shaped like each format, with any digits, so the calendar and offset edges are reached.
near_misses = st.one_of(
    st.from_regex(r"[0-9]{4}[-/][0-9]{2}[-/][0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?"
                  r"([Zz]|[+-][0-9]{2}:?[0-9]{2})", fullmatch=True),
    st.from_regex(r"[0-9]{4}/[0-9]{1,2}/[0-9]{1,2} +[0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3})? *"
                  r"[AaPp][Mm]", fullmatch=True),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                  r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?", fullmatch=True),
    st.from_regex(r"[0-9]{8,18}", fullmatch=True),
    st.text(),
)


def _parse_or_reason(parse: Callable[[], datetime]) -> datetime | str:
    """The instant, or the reason of the parser's own error (any other exception fails the test)."""
    try:
        moment = parse()
    except TimestampError as exc:
        return str(exc)
    assert moment.tzinfo is UTC and EARLIEST <= moment <= LATEST
    return moment


@settings(deadline=None)
@given(near_misses, zones)
def test_any_text_is_an_instant_in_range_or_a_timestamp_error(text: str, zone: ZoneInfo) -> None:
    _parse_or_reason(lambda: parse_timestamp(text, zone))
    _parse_or_reason(lambda: parse_iso_utc(text))


@settings(deadline=None)
@given(st.datetimes(min_value=EARLIEST.replace(tzinfo=None), max_value=LATEST.replace(tzinfo=None)))
def test_canonical_text_reads_back_to_the_millisecond(naive: datetime) -> None:
    moment = naive.replace(tzinfo=UTC)
    expected = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    text = format_iso_utc(moment)
    assert parse_timestamp(text, PACIFIC) == expected
    assert parse_iso_utc(text) == expected
    assert format_iso_utc(parse_iso_utc(text)) == text


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=10**10 - 1), st.integers(min_value=0, max_value=999))
def test_epoch_seconds_and_milliseconds_read_back(seconds: int, millis: int) -> None:
    assert parse_timestamp(f"{seconds:010d}", PACIFIC) == EPOCH + timedelta(seconds=seconds)
    if seconds < 10**10 - 1:  # 13 digits stop at year 2286 too
        moment = EPOCH + timedelta(seconds=seconds, milliseconds=millis)
        assert parse_timestamp(f"{seconds:010d}{millis:03d}", PACIFIC) == moment


def _wall_clock(naive: datetime, zone: ZoneInfo) -> datetime | None:
    """The instant of a local time by the module's DST rule (fold 0), None inside a gap."""
    first = naive.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        return None
    return first.astimezone(UTC)


@settings(deadline=None)
@given(naive_times, zones)
def test_excel_style_reads_back_in_the_tenants_zone(naive: datetime, zone: ZoneInfo) -> None:
    naive = naive.replace(microsecond=naive.microsecond // 1000 * 1000)
    hour = naive.hour % 12 or 12
    text = naive.strftime(f"%Y/%m/%d {hour:02d}:%M:%S.") + f"{naive.microsecond // 1000:03d} " \
        + ("PM" if naive.hour >= 12 else "AM")
    _check_local_reading(parse_timestamp, text, naive, zone)


@settings(deadline=None)
@given(naive_times)
def test_compressed_reads_back_in_pacific_time(naive: datetime) -> None:
    naive = naive.replace(microsecond=naive.microsecond // 1000 * 1000)
    text = f"{naive.year:04d}{naive:%m%d%H%M%S}{naive.microsecond // 1000:03d}"
    _check_local_reading(parse_timestamp, text, naive, BERLIN, PACIFIC)


def _check_local_reading(
    parse: Callable[[str, ZoneInfo], datetime], text: str, naive: datetime, zone: ZoneInfo,
    read_in: ZoneInfo | None = None,
) -> None:
    """``text`` (``naive`` on a wall clock) is its instant, refused in a gap or out of range."""
    try:
        expected = _wall_clock(naive, read_in or zone)
    except OverflowError:  # before year 1 or after 9999 in UTC
        expected = None
    outcome = _parse_or_reason(lambda: parse(text, zone))
    if expected is None:
        assert isinstance(outcome, str) and ("does not exist" in outcome or "out of range" in outcome)
    elif EARLIEST <= expected <= LATEST:
        assert outcome == expected
    else:
        assert isinstance(outcome, str) and "out of range" in outcome
