"""Value types: check one text value and return its canonical text, or say what is wrong with it.

Canonical text is what the rest of the pipeline relies on: timestamps become ISO 8601 UTC with
milliseconds (``2016-04-11T20:00:00.000Z``) whatever format they came in, booleans ``true`` or
``false``, phone numbers E.164 without spaces, whole numbers without a plus sign or leading
zeros. Every checker accepts its own canonical text, so a value can safely be checked twice (once
for its column's type, once for the request field it is mapped to).

Error messages name the value and what was expected, never the column: the caller adds that.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from core.timestamps import format_iso_utc, parse_iso_utc, parse_timestamp

__all__ = [
    "MAX_STRING_LENGTH",
    "TYPE_NAMES",
    "Checker",
    "ColumnChecker",
    "checker",
    "column_checker",
]

#: The Signal API's limit for its string parameters (custom_parameter_1..3 and the like).
MAX_STRING_LENGTH = 255

TYPE_NAMES = (
    "string",  # at most 255 characters
    "text",  # any length (transcript text, agent notes)
    "timestamp",  # one of the four Signal API formats
    "iso_utc",  # ASAPP: ISO 8601 UTC
    "bool",  # true/false, 1/0, yes/no
    "boolean01",  # the Signal API `value`: the same words, sent as true/false
    "integer",
    "decimal",
    "money",  # at most 2 decimals, no symbols or separators
    "phone",  # E.164
)

Checker = Callable[[str], str]
#: Checks a column at once: canonical values, and (row index, message) for each bad value.
ColumnChecker = Callable[[Sequence[str | None]], tuple[list[str | None], list[tuple[int, str]]]]

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_MONEY = re.compile(r"-?\d+(?:\.\d{1,2})?", re.ASCII)
_MONEY_DIGITS = re.compile(r"-?\d+(?:\.\d+)?", re.ASCII)
_PHONE = re.compile(r"\+[1-9]\d{7,14}", re.ASCII)
_CANONICAL_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", re.ASCII)

_TIMESTAMP_TYPES = frozenset({"timestamp", "iso_utc"})
# Every MM:SS of an hour, and MMSS; see _check_timestamps.
_MINUTES_SECONDS = frozenset(
    f"{minute:02d}:{second:02d}" for minute in range(60) for second in range(60)
)
_MINUTES_SECONDS_DIGITS = frozenset(text.replace(":", "") for text in _MINUTES_SECONDS)
_COMPRESSED_LENGTH = len("YYYYMMDDHHMMSSsss")
_PROBES = 2
# Where MM:SS is in the canonical text, YYYY-MM-DDTHH:MM:SS.sssZ.
_CANONICAL_MINUTE = len("YYYY-MM-DDTHH:")


@functools.cache
def checker(type_name: str, tz: ZoneInfo) -> Checker:
    """The checker of one value of ``type_name``; Signal API timestamps are read in ``tz``."""
    if type_name == "timestamp":
        return functools.partial(_timestamp, tz=tz)
    try:
        return _CHECKERS[type_name]
    except KeyError:
        raise ValueError(f"unknown type {type_name!r}; known: {', '.join(TYPE_NAMES)}") from None


def column_checker(type_name: str, tz: ZoneInfo) -> ColumnChecker:
    """The checker of a whole column: each distinct value is checked once, as files repeat names,
    amounts and dates; strings take a faster path still, as most columns are strings."""
    if type_name == "text":
        return lambda column: (list(column), [])
    if type_name == "string":
        return _check_strings
    check = checker(type_name, tz)
    if type_name in _TIMESTAMP_TYPES:
        return functools.partial(_check_timestamps, check)
    return functools.partial(_check_distinct, check)


def _check_distinct(
    check: Checker,
    column: Sequence[str | None],
    distinct: Iterable[str | None] | None = None,
    canonical: dict[str | None, str | None] | None = None,
) -> tuple[list[str | None], list[tuple[int, str]]]:
    """Check each of the ``distinct`` values of ``column`` (by default all), adding to the known
    ``canonical`` values, then give the column's canonical values and errors."""
    if canonical is None:
        canonical = {None: None}
    failures: dict[str, str] = {}
    for value in set(column) if distinct is None else distinct:
        if value is None:
            continue
        try:
            canonical[value] = check(value)
        except ValueError as exc:
            canonical[value] = value
            failures[value] = str(exc)
    values = list(map(canonical.__getitem__, column))
    if not failures:
        return values, []
    errors = [(index, failures[value]) for index, value in enumerate(column) if value in failures]
    return values, errors


def _check_timestamps(
    check: Checker, column: Sequence[str | None]
) -> tuple[list[str | None], list[tuple[int, str]]]:
    """Like ``_check_distinct``, with the values of one clock hour sharing most of their work.

    A day's export has many rows per hour, and parsing (above all a local time, with its DST rule)
    costs far more than slicing. Distinct values are grouped by everything but their minutes and
    seconds, where the shape of the value puts them: ``MM:SS`` after the first colon of
    ``YYYY-MM-DDTHH:MM:SS...`` (ISO 8601) and ``YYYY/MM/DD HH:MM:SS...`` (Excel style), or
    ``MMSS`` in ``YYYYMMDDHHMMSSsss`` (compressed). A group with more values than probes is
    probed: the exact checker is run on it at 00:00 and at 59:59. When both are valid and their
    canonical texts differ only there, that local hour has one UTC offset (an offset change inside
    it would show at one end, and no zone of the tz database changes its offset twice within an
    hour), so every minute and second of it is valid and maps to the same text with its own
    minutes and seconds. Anything else, a wrong guess of the shape included, goes to the exact
    checker, so results and messages are always the checker's own.
    """
    clock: dict[str, list[str]] = {}
    compressed: dict[str, list[str]] = {}
    singles: list[str] = []
    for value in set(column):
        if value is None:
            continue
        if value[14:19] in _MINUTES_SECONDS and value[13:14] == ":":
            clock.setdefault(value[:14] + value[19:], []).append(value)
        elif len(value) == _COMPRESSED_LENGTH and value[10:14] in _MINUTES_SECONDS_DIGITS:
            compressed.setdefault(value[:10] + value[14:], []).append(value)
        else:
            singles.append(value)
    canonical: dict[str | None, str | None] = {None: None}
    for values in clock.values():
        hour = _probe_hour(check, values[0][:14], values[0][19:], ":", len(values))
        if hour is None:
            singles.extend(values)
            continue
        head, tail = hour
        for value in values:
            canonical[value] = head + value[14:19] + tail
    for values in compressed.values():
        hour = _probe_hour(check, values[0][:10], values[0][14:], "", len(values))
        if hour is None:
            singles.extend(values)
            continue
        head, tail = hour
        for value in values:
            canonical[value] = head + value[10:12] + ":" + value[12:14] + tail
    return _check_distinct(check, column, singles, canonical)


def _probe_hour(
    check: Checker, before: str, after: str, colon: str, values: int
) -> tuple[str, str] | None:
    """The canonical text around ``MM:SS`` for every minute and second of an hour, or None.

    ``before`` and ``after`` surround the minutes and seconds of ``values`` values, ``colon``
    between them. Probing costs two exact checks, so fewer values are checked one by one.
    """
    if values <= _PROBES:
        return None
    try:
        first = check(before + "00" + colon + "00" + after)
        last = check(before + "59" + colon + "59" + after)
    except ValueError:
        return None
    head, tail = first[:_CANONICAL_MINUTE], first[_CANONICAL_MINUTE + len("00:00") :]
    if first != head + "00:00" + tail or last != head + "59:59" + tail:
        return None
    return head, tail


def _check_strings(column: Sequence[str | None]) -> tuple[list[str | None], list[tuple[int, str]]]:
    if max(map(len, filter(None, column)), default=0) <= MAX_STRING_LENGTH:
        return list(column), []
    errors = [
        (index, _too_long(value))
        for index, value in enumerate(column)
        if value is not None and len(value) > MAX_STRING_LENGTH
    ]
    return list(column), errors


def _string(value: str) -> str:
    if len(value) > MAX_STRING_LENGTH:
        raise ValueError(_too_long(value))
    return value


def _too_long(value: str) -> str:
    return f"is {len(value)} characters long; at most {MAX_STRING_LENGTH} are allowed"


def _text(value: str) -> str:
    return value


def _timestamp(value: str, tz: ZoneInfo) -> str:
    if _CANONICAL_TIMESTAMP.fullmatch(value):
        _valid_canonical(value)
        return value
    return format_iso_utc(parse_timestamp(value, tz))


def _iso_utc(value: str) -> str:
    if _CANONICAL_TIMESTAMP.fullmatch(value):
        _valid_canonical(value)
        return value
    return format_iso_utc(parse_iso_utc(value))


def _valid_canonical(value: str) -> None:
    """A canonical timestamp that is well-formed may still name a day that does not exist."""
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date and time: {exc}") from None


def _bool(value: str) -> str:
    word = value.lower()
    if word in _TRUE:
        return "true"
    if word in _FALSE:
        return "false"
    raise ValueError(f"{value!r} is not a boolean: expected true/false, 1/0 or yes/no")


def _integer(value: str) -> str:
    if not _INTEGER.fullmatch(value):
        raise ValueError(f"{value!r} is not a whole number")
    return str(int(value))


def _decimal(value: str) -> str:
    if not _DECIMAL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a decimal number: expected digits and a '.', e.g. 129.45"
        )
    return value


def _money(value: str) -> str:
    if _MONEY.fullmatch(value):
        return value
    if _MONEY_DIGITS.fullmatch(value):
        raise ValueError(f"{value!r} has more than 2 decimal places")
    raise ValueError(
        f"{value!r} is not an amount: use digits and a '.' only, without currency symbols or"
        " thousands separators, e.g. 1234.50"
    )


def _phone(value: str) -> str:
    number = value.replace(" ", "")
    if not _PHONE.fullmatch(number):
        raise ValueError(
            f"{value!r} is not an E.164 phone number: expected '+', the country code and the"
            " number, 8 to 15 digits, e.g. +18885551212"
        )
    return number


_CHECKERS: dict[str, Checker] = {
    "string": _string,
    "text": _text,
    "iso_utc": _iso_utc,
    "bool": _bool,
    "boolean01": _bool,
    "integer": _integer,
    "decimal": _decimal,
    "money": _money,
    "phone": _phone,
}
