"""Query strings, read strictly (a typo is an error, not a no-op): the Transactions API's, and
the listings of the ASAPP records (extension)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ledger.bodies import NUL_REFUSED
from ledger.errors import RecordInvalid
from ledger.ids import MAX_SEQUENCE, format_transaction_id, parse_transaction_id
from ledger.records import ListingQuery, TransactionQuery, TransactionType
from ledger.render import DEFAULT_COLUMNS, DEFAULT_COLUMNS_TOKEN, OPTIONAL_COLUMNS

# The Transactions API's documented page sizes.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 4000
# The longest id a listing filters on, as every parameter of a record.
MAX_MATCH_LENGTH = 255
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
# The days a call can fall on (core.timestamps accepts 1900-01-01..9999-12-30 UTC).
FIRST_DAY = date(1900, 1, 1)
KNOWN_PARAMETERS = frozenset(
    {
        "start_after_transaction_id",
        "limit",
        "from",
        "to",
        "transaction_type",
        "include_columns",
        "oauth_token",
    }
)


@dataclass(frozen=True)
class TransactionsRequest:
    query: TransactionQuery
    columns: tuple[str, ...]


def parse_transactions_request(params: Mapping[str, str], tz: ZoneInfo) -> TransactionsRequest:
    """The query and the columns asked for; ``from``/``to`` are whole days in ``tz``."""
    unknown = sorted(set(params) - KNOWN_PARAMETERS)
    if unknown:
        raise RecordInvalid(f"unknown parameter {unknown[0]!r}; known: {', '.join(sorted(KNOWN_PARAMETERS))}")
    first = _date(params, "from")
    last = _date(params, "to")
    if first and last and first > last:
        raise RecordInvalid(f"from ({first}) must not be after to ({last})")
    query = TransactionQuery(
        after=_cursor(params.get("start_after_transaction_id")),
        limit=_limit(params.get("limit")),
        types=_types(params.get("transaction_type")),
        start_from=_midnight(first, tz) if first else None,
        start_before=_midnight(last + timedelta(days=1), tz) if last and last < date.max else None,
    )
    return TransactionsRequest(query, _columns(params.get("include_columns")))


def parse_listing_request(params: Mapping[str, str], match: str) -> ListingQuery:
    """A page of ASAPP records: ``start_after_id``, ``limit`` and the filter named ``match``."""
    known = {"start_after_id", "limit", match, "oauth_token"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise RecordInvalid(f"unknown parameter {unknown[0]!r}; known: {', '.join(sorted(known))}")
    after = (params.get("start_after_id") or "0").strip()
    if not (after.isascii() and after.isdigit() and len(after) <= len(str(MAX_SEQUENCE))) or int(
        after
    ) > MAX_SEQUENCE:
        raise RecordInvalid(
            f"start_after_id must be a record id, a whole number from 0 to {MAX_SEQUENCE},"
            f" got {params['start_after_id']!r}"
        )
    value = params.get(match)
    if value is not None and not 0 < len(value) <= MAX_MATCH_LENGTH:
        raise RecordInvalid(f"{match} must be 1 to {MAX_MATCH_LENGTH} characters")
    if value is not None and "\x00" in value:
        raise RecordInvalid(NUL_REFUSED.format(where=match))
    return ListingQuery(after=int(after), limit=_limit(params.get("limit")), match=value)


def _cursor(text: str | None) -> int:
    if not text:
        return 0
    sequence = parse_transaction_id(text.strip())
    if sequence is None:
        raise RecordInvalid(
            "start_after_transaction_id must be a transaction id such as 00000000-0000000A,"
            f" at most {format_transaction_id(MAX_SEQUENCE)}, got {text!r}"
        )
    return sequence


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= len(str(MAX_LIMIT))) or not (
        1 <= int(digits) <= MAX_LIMIT
    ):
        raise RecordInvalid(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def _date(params: Mapping[str, str], name: str) -> date | None:
    text = (params.get(name) or "").strip()
    if not text:
        return None
    if DATE_PATTERN.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            if day >= FIRST_DAY:
                return day
    raise RecordInvalid(
        f"{name} must be a date as YYYY-MM-DD from {FIRST_DAY} to {date.max}, got {text!r}"
    )


def _midnight(day: date, tz: ZoneInfo) -> float:
    return datetime.combine(day, time(0), tz).timestamp()


def _types(text: str | None) -> tuple[TransactionType, ...]:
    if not text:
        return ()
    known = {kind.value: kind for kind in TransactionType}
    types = []
    for name in (part.strip() for part in text.split(",")):
        if name not in known:
            raise RecordInvalid(f"transaction_type must be one of {', '.join(known)}, got {name!r}")
        types.append(known[name])
    return tuple(types)


def _columns(text: str | None) -> tuple[str, ...]:
    """The default columns, plus the optional ones named; default column names are accepted too."""
    if not text:
        return DEFAULT_COLUMNS
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - set(DEFAULT_COLUMNS) - set(OPTIONAL_COLUMNS) - {DEFAULT_COLUMNS_TOKEN})
    if unknown:
        optional = ", ".join(OPTIONAL_COLUMNS)
        raise RecordInvalid(
            f"include_columns: unknown column {unknown[0]!r}; optional columns are {optional}"
        )
    return DEFAULT_COLUMNS + tuple(column for column in OPTIONAL_COLUMNS if column in wanted)
