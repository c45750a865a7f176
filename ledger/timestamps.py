"""The four timestamp formats of the Signal API, for ``call_start_time`` and ``occurred_at_time``.

All of them name the same instant for "11 April 2016, 1 PM Pacific":

- epoch seconds (10 digits) or milliseconds (13 digits), UTC: ``1460404800``, ``1460404800000``;
- compressed ``YYYYMMDDHHMMSSsss`` (17 digits), always Pacific time: ``20160411130000000``;
- ISO 8601 with an offset or ``Z``, the date split by ``/`` or ``-``, milliseconds optional:
  ``2016/04/11T13:00:00.000-07:00``, ``2016-04-11T20:00:00Z``;
- Excel style ``YYYY/MM/DD HH:MM:SS(.sss) AM/PM`` in the tenant's time zone. The document's own
  example is ``2016/04/11 13:00:00.000 PM``, so an hour of 13-23 is read on a 24-hour clock and
  the marker only has to agree with it; without a marker the hour is read on a 24-hour clock.

The ingest pipeline has its own copy of these rules; both should move to ``core``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ACCEPTED_FORMATS = (
    "epoch seconds (10 digits) or milliseconds (13 digits), YYYYMMDDHHMMSSsss (Pacific time),"
    " YYYY/MM/DDTHH:MM:SS.sss+hh:mm (or Z), or YYYY/MM/DD HH:MM:SS.sss AM/PM"
)

_DATE = r"(?P<year>\d{4})(?P<sep>[/-])(?P<month>\d{1,2})(?P=sep)(?P<day>\d{1,2})"
_TIME = r"(?P<hour>\d{1,2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:\.(?P<fraction>\d{1,6}))?"
_ISO = re.compile(_DATE + "T" + _TIME + r"\s*(?P<offset>Z|[+-]\d{2}:?\d{2})", re.IGNORECASE)
_EXCEL = re.compile(_DATE + r"\s+" + _TIME + r"(?:\s*(?P<marker>AM|PM))?", re.IGNORECASE)
_COMPRESSED = re.compile(r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{3})")


class TimestampError(ValueError):
    """Text that is none of the accepted formats, or names a date that does not exist."""


def parse_timestamp(text: str, tz: ZoneInfo) -> datetime:
    """The instant ``text`` names, as an aware UTC datetime; ``tz`` is used by the Excel form."""
    value = text.strip()
    try:
        moment = _parse(value, tz)
    except ValueError as exc:
        raise TimestampError(f"{text!r} is not a valid timestamp: {exc}") from None
    if moment is None:
        raise TimestampError(f"{text!r} is not a timestamp; use {ACCEPTED_FORMATS}")
    return moment.astimezone(timezone.utc)


def _parse(value: str, tz: ZoneInfo) -> datetime | None:
    if value.isdigit() and value.isascii():
        return _parse_digits(value)
    if match := _ISO.fullmatch(value):
        return _wall_clock(match, _hour(match, None)).replace(tzinfo=_offset(match["offset"]))
    if match := _EXCEL.fullmatch(value):
        local = _wall_clock(match, _hour(match, match["marker"]))
        return _localize(local, tz)
    return None


def _parse_digits(value: str) -> datetime | None:
    if len(value) == 10:
        return EPOCH + timedelta(seconds=int(value))
    if len(value) == 13:
        return EPOCH + timedelta(milliseconds=int(value))
    if match := _COMPRESSED.fullmatch(value):
        year, month, day, hour, minute, second, millis = (int(part) for part in match.groups())
        local = datetime(year, month, day, hour, minute, second, millis * 1000)
        return _localize(local, PACIFIC)
    return None


def _hour(match: re.Match[str], marker: str | None) -> int:
    hour = int(match["hour"])
    if marker is None:
        return hour
    if not 0 <= hour <= 23:
        raise ValueError(f"hour {hour} is out of range")
    if marker.upper() == "AM":
        if hour > 12:
            raise ValueError(f"hour {hour} contradicts AM")
        return 0 if hour == 12 else hour
    if hour == 0:
        raise ValueError("hour 0 contradicts PM")
    return hour if hour >= 12 else hour + 12


def _wall_clock(match: re.Match[str], hour: int) -> datetime:
    fraction = (match["fraction"] or "0").ljust(6, "0")
    return datetime(
        int(match["year"]),
        int(match["month"]),
        int(match["day"]),
        hour,
        int(match["minute"]),
        int(match["second"]),
        int(fraction),
    )


def _offset(text: str) -> timezone:
    if text.upper() == "Z":
        return timezone.utc
    digits = text[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    if delta >= timedelta(hours=24):
        raise ValueError(f"UTC offset {text} is out of range")
    return timezone(-delta if text[0] == "-" else delta)


def _localize(local: datetime, tz: ZoneInfo) -> datetime:
    """Wall-clock time in ``tz``; an ambiguous hour at a DST change takes the earlier instant."""
    return local.replace(tzinfo=tz, fold=0)
