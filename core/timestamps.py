"""The four timestamp formats of the Signal API, and the "ISO 8601 UTC" type of the ASAPP schemas.

One set of rules for both sides: the processor validates files with them and the embedded API
parses requests with them, so a value the processor accepts is never refused by the API.
Every parser returns an aware datetime in UTC, so nothing downstream ever holds a naive time.

Two formats are local wall-clock times: *compressed* (always Pacific time) and *Excel style* (the
tenant's zone). Around DST changes a wall-clock time can be missing or doubled, and we decide
explicitly instead of letting arithmetic guess:

* a time inside the spring-forward gap (02:30 on 2026-03-08 in Los Angeles) does not exist and is
  an error: any reading of it would move the event by an hour without anyone noticing;
* a time inside the autumn fold (01:30 on 2026-11-01 in Los Angeles, which happens twice) is the
  first occurrence, still on daylight time, as ``fold=0`` of PEP 495 and spreadsheets read it.

Every instant accepted lies in ``[EARLIEST, LATEST]``: from 1900-01-01 (the first day a
spreadsheet can show) to 9999-12-30 in UTC, so it has a date with a four-digit year in every time
zone and renders everywhere it is shown (API responses, the Transactions API in the account's
zone, reports). Anything outside is a ``TimestampError``, never an ``OverflowError`` later.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

__all__ = [
    "EARLIEST",
    "FORMATS_HINT",
    "LATEST",
    "PACIFIC",
    "PACIFIC_ZONE",
    "TimestampError",
    "format_iso_utc",
    "parse_iso_utc",
    "parse_timestamp",
]

# The Signal API's home zone: its compressed timestamps are Pacific by definition, whatever a
# tenant's zone. It is also the product's default zone (core.config.DEFAULT_ZONE).
PACIFIC_ZONE = "America/Los_Angeles"
PACIFIC = ZoneInfo(PACIFIC_ZONE)
UTC_ZONE = ZoneInfo("UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The accepted instants (see the module docstring): a day's margin below year 10000 in any zone.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)

FORMATS_HINT = (
    "expected epoch seconds (10 digits) or milliseconds (13), YYYYMMDDHHMMSSsss (17 digits, "
    "Pacific time), ISO 8601 with an offset or Z (2016-04-11T13:00:00-07:00) or "
    "YYYY/MM/DD HH:MM:SS AM/PM"
)


class TimestampError(ValueError):
    """Text that is none of the accepted formats, or names a time that does not exist."""


_ISO = re.compile(
    r"(\d{4})([-/])(\d{2})\2(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))",
    re.ASCII,
)
_EXCEL = re.compile(
    r"(\d{4})/(\d{1,2})/(\d{1,2}) +(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))? *([AaPp][Mm])",
    re.ASCII,
)
_ISO_UTC = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?",
    re.ASCII,
)


def parse_timestamp(text: str, tz: ZoneInfo) -> datetime:
    """One of the four Signal API formats as UTC; Excel style is read in ``tz``.

    Raises TimestampError naming the value and the formats accepted, or the range.
    """
    value = text.strip()
    try:
        if value.isdigit() and value.isascii():
            return _in_range(text, _parse_digits(value))
        if match := _ISO.fullmatch(value):
            return _in_range(text, _parse_iso(value, match))
        if match := _EXCEL.fullmatch(value):
            return _in_range(text, _parse_excel(value, match, tz))
    except OverflowError:
        raise TimestampError(_out_of_range(text)) from None
    raise TimestampError(f"{text!r} is not a timestamp: {FORMATS_HINT}")


def parse_iso_utc(text: str) -> datetime:
    """An ASAPP "ISO 8601 formatted UTC timestamp", as UTC.

    ``Z`` or an explicit offset is honoured; a value without either is UTC, as the schema declares.
    Up to nine fractional digits are accepted (nanosecond exporters) and cut to microseconds. A
    spreadsheet date cell, which the reader renders in the Excel style, is read as UTC too.
    """
    value = text.strip()
    match = _ISO_UTC.fullmatch(value)
    if match is None and (excel := _EXCEL.fullmatch(value)):
        try:
            return _in_range(text, _parse_excel(value, excel, UTC_ZONE))
        except OverflowError:
            raise TimestampError(_out_of_range(text)) from None
    if match is None:
        raise TimestampError(
            f"{text!r} is not an ISO 8601 UTC timestamp: expected YYYY-MM-DDTHH:MM:SS[.ffffff]Z,"
            " e.g. 2020-01-03T20:02:13Z, or a spreadsheet date cell"
        )
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    zone = UTC if zulu or not sign else _offset(value, sign, off_h, off_m)
    moment = _build(value, [year, month, day, hour, minute, second], fraction, zone)
    try:
        return _in_range(text, moment.astimezone(UTC))
    except OverflowError:
        raise TimestampError(_out_of_range(text)) from None


def format_iso_utc(moment: datetime) -> str:
    """The canonical text of an aware instant: ISO 8601 UTC with milliseconds and ``Z``."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:23] + "Z"


def _out_of_range(text: str) -> str:
    return f"{text!r} is out of range: in UTC it must fall from 1900-01-01 to 9999-12-30"


def _in_range(text: str, moment: datetime) -> datetime:
    if not EARLIEST <= moment <= LATEST:
        raise TimestampError(_out_of_range(text))
    return moment


def _parse_digits(value: str) -> datetime:
    if len(value) == 10:
        return EPOCH + timedelta(seconds=int(value))
    if len(value) == 13:
        return EPOCH + timedelta(milliseconds=int(value))
    if len(value) == 17:
        fields = [value[start : start + 2] for start in range(4, 14, 2)]
        naive = _build(value, [value[:4], *fields], value[14:], None)
        return _localize(value, naive, PACIFIC)
    raise TimestampError(
        f"{value!r} has {len(value)} digits: a numeric timestamp has 10 (epoch seconds),"
        " 13 (epoch milliseconds) or 17 (YYYYMMDDHHMMSSsss, Pacific time)"
    )


def _parse_iso(value: str, match: re.Match[str]) -> datetime:
    # The pattern has vetted the shape, so the C parser may read it; if it refuses (an invalid
    # date, a lower-case z), the groups say precisely what is wrong.
    try:
        return datetime.fromisoformat(value.replace("/", "-")).astimezone(UTC)
    except ValueError:
        pass
    year, _, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    zone = UTC if zulu else _offset(value, sign, off_h, off_m)
    moment = _build(value, [year, month, day, hour, minute, second], fraction, zone)
    return moment.astimezone(UTC)


def _parse_excel(value: str, match: re.Match[str], tz: ZoneInfo) -> datetime:
    year, month, day, hour, minute, second, fraction, meridiem = match.groups()
    hour_24 = _hour_24(value, int(hour), meridiem)
    naive = _build(value, [year, month, day, hour_24, minute, second], fraction, None)
    return _localize(value, naive, tz)


def _hour_24(value: str, hour: int, meridiem: str) -> int:
    """The 24-hour value of an Excel-style hour.

    Besides the 12-hour clock (12 AM is midnight, 12 PM is noon), the Signal API documents a
    24-hour value with a redundant marker (``13:00:00 PM``); 0 AM is read the same way. A 24-hour
    afternoon hour marked AM contradicts itself and is refused.
    """
    afternoon = meridiem.upper() == "PM"
    if hour > 23:
        raise TimestampError(f"{value!r}: hour {hour} is out of range")
    if hour > 12:
        if not afternoon:
            raise TimestampError(f"{value!r}: hour {hour} contradicts AM")
        return hour
    if hour == 0:
        if afternoon:
            raise TimestampError(f"{value!r}: hour 0 contradicts PM")
        return 0
    if hour == 12:
        return 12 if afternoon else 0
    return hour + 12 if afternoon else hour


def _offset(value: str, sign: str, hours: str, minutes: str) -> timezone:
    if int(hours) > 23 or int(minutes) > 59:
        raise TimestampError(f"{value!r}: UTC offset {sign}{hours}:{minutes} is out of range")
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-delta if sign == "-" else delta)


def _build(
    value: str, fields: Sequence[str | int], fraction: str | None, zone: timezone | None
) -> datetime:
    """A datetime from year, month, day, hour, minute, second and the digits after the point."""
    year, month, day, hour, minute, second = map(int, fields)
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    except ValueError as exc:
        raise TimestampError(f"{value!r} is not a valid date and time: {exc}") from None


def _localize(value: str, naive: datetime, zone: ZoneInfo) -> datetime:
    """``naive`` read in ``zone`` as UTC, with the DST rule of the module docstring."""
    offset = naive.replace(tzinfo=zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    if naive.replace(tzinfo=zone, fold=1).utcoffset() != offset:
        local = (naive - offset).replace(tzinfo=UTC).astimezone(zone)
        if local.replace(tzinfo=None) != naive:
            raise TimestampError(
                f"{value!r} does not exist in {zone.key}: the clocks skip that hour when daylight"
                " saving time starts; give the time with a UTC offset instead"
            )
    return (naive - offset).replace(tzinfo=UTC)
