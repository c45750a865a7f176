"""Check a whole column of text at once: polars does the work per row, ``ingest.rows.coercion`` decides.

Every value's verdict, canonical text and error message are those of the one-value checker of its
type (``ingest.rows.coercion.checker``); polars only spares calls to it, where a 5 MB file has tens of
thousands of rows:

* values that a type's pattern proves canonical (``12.50`` as money, ``+18885551212`` as a phone
  number) are taken as they are, in one vectorised pass;
* every other value is checked once per distinct value, as files repeat names, amounts and dates;
* timestamps of one clock hour share their work (``_timestamps``).

``tests/ingest/test_columns.py`` checks each type against the one-value checker, value by value.
"""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

import polars as pl

from ingest.rows.coercion import MAX_STRING_LENGTH, Checker, checker, too_long

__all__ = ["Problems", "check_column"]

#: (row index, message) for each bad value of a column, in row order.
Problems = list[tuple[int, str]]

_TIMESTAMP_TYPES = frozenset({"timestamp", "iso_utc"})
# Every MM:SS of an hour, and MMSS; see _timestamps.
_MINUTES_SECONDS = [f"{minute:02d}:{second:02d}" for minute in range(60) for second in range(60)]
_MINUTES_SECONDS_DIGITS = [text.replace(":", "") for text in _MINUTES_SECONDS]
_COMPRESSED_LENGTH = len("YYYYMMDDHHMMSSsss")
_PROBES = 2
# Where MM:SS is in the canonical text, YYYY-MM-DDTHH:MM:SS.sssZ.
_CANONICAL_MINUTE = len("YYYY-MM-DDTHH:")


def _matching(pattern: str) -> Callable[[pl.Expr], pl.Expr]:
    """Values that fully match ``pattern`` (ASCII digits only, as the checkers' ``re.ASCII``)."""
    return lambda value: pl.when(value.str.contains(f"^(?:{pattern})$")).then(value)


# Canonical values by a pattern that implies the checker returns the value as it is; null where
# the pattern cannot tell, for the checker to decide.
_PROVEN: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "integer": _matching(r"0|-?[1-9][0-9]{0,17}"),
    "decimal": _matching(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"),
    "money": _matching(r"-?[0-9]+(?:\.[0-9]{1,2})?"),
    "phone": lambda value: _matching(r"\+[1-9][0-9]{7,14}")(
        value.str.replace_all(" ", "", literal=True)
    ),
}


def check_column(type_name: str, tz: ZoneInfo, column: pl.Series) -> tuple[pl.Series, Problems]:
    """The canonical values of a text ``column`` of ``type_name`` (a bad value stays as it is,
    a missing one null), and its problems; Signal API timestamps are read in ``tz``."""
    if type_name == "text":
        return column, []
    if type_name == "string":
        return column, _too_long(column)
    check = checker(type_name, tz)
    if type_name in _TIMESTAMP_TYPES:
        return _timestamps(check, column)
    proven = _PROVEN.get(type_name)
    known = None if proven is None else column.to_frame("v").select(proven(pl.col("v"))).to_series()
    return _by_value(check, column, known)


def _too_long(column: pl.Series) -> Problems:
    lengths = column.str.len_chars()
    if not (lengths > MAX_STRING_LENGTH).any():
        return []
    indices = (lengths > MAX_STRING_LENGTH).arg_true()
    return [
        (index, too_long(value))
        for index, value in zip(indices.to_list(), column.gather(indices).to_list())
    ]


def _by_value(
    check: Checker, column: pl.Series, known: pl.Series | None = None
) -> tuple[pl.Series, Problems]:
    """Each distinct value of ``column`` that ``known`` leaves null, through ``check`` once."""
    todo = column if known is None else column.filter(known.is_null())
    canonical: dict[str, str] = {}
    failures: dict[str, str] = {}
    for value in todo.drop_nulls().unique().to_list():
        try:
            canonical[value] = check(value)
        except ValueError as exc:
            canonical[value] = value
            failures[value] = str(exc)
    checked = column.replace_strict(
        list(canonical), list(canonical.values()), default=None, return_dtype=pl.String
    )
    if known is not None:
        checked = pl.select(pl.coalesce(pl.lit(known), pl.lit(checked))).to_series()
    if not failures:
        return checked, []
    indices = column.is_in(list(failures)).arg_true()
    return checked, [
        (index, failures[value])
        for index, value in zip(indices.to_list(), column.gather(indices).to_list())
    ]


def _timestamps(check: Checker, column: pl.Series) -> tuple[pl.Series, Problems]:
    """``_by_value``, with the values of one clock hour sharing most of their work.

    A day's export has many rows per hour, and parsing (above all a local time, with its DST rule)
    costs far more than slicing. Values are grouped by everything but their minutes and seconds,
    where the shape of the value puts them: ``MM:SS`` after the first colon of
    ``YYYY-MM-DDTHH:MM:SS...`` (ISO 8601) and ``YYYY/MM/DD HH:MM:SS...`` (Excel style), or
    ``MMSS`` in ``YYYYMMDDHHMMSSsss`` (compressed). A group of more values than probes is probed:
    the exact checker is run on it at 00:00 and at 59:59. When both are valid and their canonical
    texts differ only there, that local hour has one UTC offset (an offset change inside it would
    show at one end, and no zone of the tz database changes its offset twice within an hour), so
    every minute and second of it is valid and maps to the same text with its own minutes and
    seconds. Anything else, a wrong guess of the shape included, goes to the exact checker, so
    results and messages are always the checker's own.
    """
    value = pl.col("v")
    frame = column.to_frame("v").with_columns(
        clock=(value.str.slice(13, 1) == ":") & value.str.slice(14, 5).is_in(_MINUTES_SECONDS),
        compressed=(value.str.len_chars() == _COMPRESSED_LENGTH)
        & value.str.slice(10, 4).is_in(_MINUTES_SECONDS_DIGITS),
    )
    frame = frame.with_columns(
        key=pl.when("clock")
        .then(pl.lit("c") + value.str.slice(0, 14) + value.str.slice(19))
        .when("compressed")
        .then(pl.lit("d") + value.str.slice(0, 10) + value.str.slice(14)),
        minutes=pl.when("clock")
        .then(value.str.slice(14, 5))
        .when("compressed")
        .then(value.str.slice(10, 2) + ":" + value.str.slice(12, 2)),
    )
    groups = frame.group_by("key").agg(pl.col("v").n_unique().alias("values")).drop_nulls()
    heads: dict[str, str] = {}
    tails: dict[str, str] = {}
    for key, values in groups.iter_rows():
        if values <= _PROBES:
            continue
        if key[0] == "c":
            hour = _probe_hour(check, key[1:15], key[15:], ":")
        else:
            hour = _probe_hour(check, key[1:11], key[11:], "")
        if hour is not None:
            heads[key], tails[key] = hour
    known = frame.select(
        pl.col("key").replace_strict(heads, default=None, return_dtype=pl.String)
        + pl.col("minutes")
        + pl.col("key").replace_strict(tails, default=None, return_dtype=pl.String)
    ).to_series()
    return _by_value(check, column, known)


def _probe_hour(check: Checker, before: str, after: str, colon: str) -> tuple[str, str] | None:
    """The canonical text around ``MM:SS`` for every minute and second of an hour, or None.

    ``before`` and ``after`` surround the minutes and seconds, ``colon`` between them.
    """
    try:
        first = check(before + "00" + colon + "00" + after)
        last = check(before + "59" + colon + "59" + after)
    except ValueError:
        return None
    head, tail = first[:_CANONICAL_MINUTE], first[_CANONICAL_MINUTE + len("00:00") :]
    if first != head + "00:00" + tail or last != head + "59:59" + tail:
        return None
    return head, tail
