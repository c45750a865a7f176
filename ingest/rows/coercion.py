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
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from core.timestamps import format_iso_utc, parse_iso_utc, parse_timestamp

__all__ = [
    "MAX_STRING_LENGTH",
    "TYPE_NAMES",
    "Checker",
    "checker",
    "too_long",
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

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_MONEY = re.compile(r"-?\d+(?:\.\d{1,2})?", re.ASCII)
_MONEY_DIGITS = re.compile(r"-?\d+(?:\.\d+)?", re.ASCII)
_PHONE = re.compile(r"\+[1-9]\d{7,14}", re.ASCII)
_CANONICAL_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", re.ASCII)


@functools.cache
def checker(type_name: str, tz: ZoneInfo) -> Checker:
    """The checker of one value of ``type_name``; Signal API timestamps are read in ``tz``."""
    if type_name == "timestamp":
        return functools.partial(_timestamp, tz=tz)
    try:
        return _CHECKERS[type_name]
    except KeyError:
        raise ValueError(f"unknown type {type_name!r}; known: {', '.join(TYPE_NAMES)}") from None


def _string(value: str) -> str:
    if len(value) > MAX_STRING_LENGTH:
        raise ValueError(too_long(value))
    return value


def too_long(value: str) -> str:
    """Why a string value is refused."""
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
    """A canonical timestamp that is well-formed may still name a day that does not exist, or
    one outside the range every timestamp must keep (``core.timestamps``)."""
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date and time: {exc}") from None
    parse_iso_utc(value)


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
