"""Map a validated row to the request that carries it to its destination.

The kinds of request and their shapes are declared in ``ingest.rows.kinds`` (each body builder
says its shape), all JSON, paths relative to the destination's API base; for example:

* signal, ``POST /transactions/signals.json`` [invoca-signal-api.rst]:
  ``{"search": {...}, "signal": {...}, "custom_data": [{"name": ..., "value": ...}]}``. The token
  is not in the body; the poster adds ``oauth_token``. Re-posting the same signal is a no-op.
* call, ``POST /calls.json``: ``{"call": {"external_id", "start_time", "duration_in_seconds",
  "calling_phone_number"?, "attributes": {...}}}``. ``external_id`` is ``customer_id|call_start``,
  so a re-sent call row names the same call.
* lookup row, ``PUT /lookup_tables/{table}/rows`` (an upsert):
  ``{"primary_key": ..., "secondary_key"?: ..., "data": {...}}``.

Timestamps are always sent as ISO 8601 UTC with milliseconds (``2016-04-11T20:00:00.000Z``),
whatever format the file used. The Signal API would parse the other formats itself, but it would
read the Excel style in *its* zone, not the tenant's; one unambiguous format avoids that, and also
gives equal keys to equal instants written differently. Missing values are left out, so the API
applies its defaults (``value`` true, ``partner_unique_id`` empty, ``occurred_at_time`` now).

A body is kept as JSON text in one canonical spelling: compact, non-ASCII characters as they are,
fields in a fixed order (by section, then field name), whatever the column order of the file. Each
request has a key, the sha256 of its kind, method, path and that text, so equal requests have
equal keys and an outbox can refuse to queue a request twice; JSON's quoting keeps a value from
passing for another field.

A whole file is mapped by ``map_rows``, a column at a time, into the same requests ``map_row``
makes one row at a time; signal bodies, the bulk of all files, are then assembled as text by
polars, column by column, never built as dicts.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from json.encoder import encode_basestring
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import polars as pl

from core.gcpause import collection_paused
from ingest.rows.coercion import checker
from ingest.rows.feeds import Feed
from ingest.rows.fields import Target, target_type
from ingest.rows.kinds import KINDS, NO_SIGNAL_NAME, SIGNAL, DestinationRequest, Kind
from ingest.rows.validate import GoodColumns, RowResult, Validation

__all__ = [
    "CALL_PATH",
    "LOOKUP_PATH",
    "SIGNAL_PATH",
    "DestinationRequest",
    "MappedRows",
    "map_row",
    "map_rows",
]

# The paths of the kinds (``ingest.rows.kinds`` declares them), by their old names.
SIGNAL_PATH = KINDS["signal"].path
CALL_PATH = KINDS["call"].path
LOOKUP_PATH = KINDS["lookup"].path


def map_row(feed: Feed, values: dict[str, str | None], tz: ZoneInfo) -> DestinationRequest:
    """The request for one row, ``values`` as ``ingest.rows.validate`` returns them.

    Every value is normalised again for the field it goes to (cheaply, as it is already canonical),
    so raw text works too; a value that does not fit raises ValueError, as does a row that lacks
    a required field.
    """
    plan = _plan(feed, tuple(values), tz)
    row = list(values.values())
    sections: dict[str, dict[str, Any]] = {section: {} for section in plan.sections}
    for section, field, column, position, constant, check, integer in plan.steps:
        value = constant if position is None else row[position]
        if value is None:
            continue
        if check is not None:
            try:
                value = check(value)
            except ValueError as exc:
                raise ValueError(f"{column}: {exc}") from None
        sections[section][field] = int(value) if integer else value
    text = _dumps(plan.build(sections))
    return _request(plan.kind, plan.method, plan.path, text, _key(plan, text))


class MappedRows:
    """The requests of a file's good rows and the rows that cannot be mapped, by file row number,
    each list in file order.

    A file mapped by columns keeps its requests as columns too (``batch``), all of one kind,
    method and path; ``requests`` makes the request objects only when asked for.
    """

    __slots__ = ("_batch", "_requests", "failures")

    def __init__(
        self,
        requests: list[tuple[int, DestinationRequest]],
        failures: list[tuple[int, str]],
    ) -> None:
        self._requests: list[tuple[int, DestinationRequest]] | None = requests
        self._batch: RequestBatch | None = None
        self.failures = failures

    @classmethod
    def _of(cls, batch: RequestBatch, failures: list[tuple[int, str]]) -> MappedRows:
        mapped = cls([], failures)
        mapped._requests, mapped._batch = None, batch
        return mapped

    @property
    def requests(self) -> list[tuple[int, DestinationRequest]]:
        if self._requests is None:
            assert self._batch is not None
            self._requests = list(self._batch)
        return self._requests

    def __len__(self) -> int:
        """How many requests."""
        if self._requests is None and self._batch is not None:
            return len(self._batch.numbers)
        return len(self.requests)

    def rows(self) -> Iterator[tuple[int, str, str, str, str, str]]:
        """Each request as (row number, kind, method, path, text, key), without request objects."""
        if self._requests is None and self._batch is not None:
            batch = self._batch
            for number, text, key in zip(batch.numbers, batch.texts, batch.keys):
                yield number, batch.kind, batch.method, batch.path, text, key
            return
        for number, request in self.requests:
            yield number, request.kind, request.method, request.path, request.text, request.key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MappedRows):
            return NotImplemented
        return (self.requests, self.failures) == (other.requests, other.failures)

    def __repr__(self) -> str:
        return f"MappedRows(requests={self.requests!r}, failures={self.failures!r})"


@dataclass(frozen=True)
class RequestBatch:
    """Requests of one kind, method and path, column by column."""

    kind: str
    method: str
    path: str
    numbers: list[int]
    texts: list[str]
    keys: list[str]

    def __iter__(self) -> Iterator[tuple[int, DestinationRequest]]:
        plan = (self.kind, self.method, self.path)
        for number, text, key in zip(self.numbers, self.texts, self.keys):
            yield number, _request(*plan, text, key)


@collection_paused()
def map_rows(feed: Feed, validation: Validation, tz: ZoneInfo) -> MappedRows:
    """The requests of the good rows of ``validation``: what ``map_row`` makes of each, and why
    it refuses the others.

    A validation that ``validate`` made for this feed and zone is mapped a column at a time: its
    values are already canonical for the fields they go to, so they are not checked again, and
    values that repeat in a column are prepared once.
    """
    columns = validation.columns
    if columns is None or columns.feed is not feed or columns.tz != tz:
        return _map_each(feed, validation.good, tz)
    plan = _plan(feed, columns.keys, tz)
    if any(len(set(fields)) < len(fields) for fields in _section_fields(plan).values()):
        # Two columns filling one field: the row-by-row rule says which value wins.
        return _map_each(feed, validation.good, tz)
    return _map_columns(plan, columns)


def _map_each(feed: Feed, rows: Iterable[RowResult], tz: ZoneInfo) -> MappedRows:
    mapped = MappedRows(requests=[], failures=[])
    for row in rows:
        try:
            mapped.requests.append((row.number, map_row(feed, row.values, tz)))
        except ValueError as exc:
            mapped.failures.append((row.number, str(exc)))
    return mapped


def _map_columns(plan: _Plan, good: GoodColumns) -> MappedRows:
    if plan.kind == SIGNAL.name:
        # The bulk of all files: bodies assembled as text by polars (the same text as build's).
        return _signal_texts(plan, good)
    count = len(good.numbers)
    fields: dict[str, list[str]] = {section: [] for section in plan.sections}
    values: dict[str, list[Sequence[Any]]] = {section: [] for section in plan.sections}
    for step in plan.steps:
        column = _column(step, good, count)
        fields[step.section].append(step.field)
        values[step.section].append(_integers(column) if step.integer else column)
    sections = [
        _section_dicts(tuple(fields[section]), values[section], count) for section in plan.sections
    ]
    mapped = MappedRows(requests=[], failures=[])
    for number, row_sections in zip(good.numbers, zip(*sections)):
        try:
            text = _dumps(plan.build(dict(zip(plan.sections, row_sections))))
        except ValueError as exc:
            mapped.failures.append((number, str(exc)))
            continue
        request = _request(plan.kind, plan.method, plan.path, text, _key(plan, text))
        mapped.requests.append((number, request))
    return mapped


def _signal_texts(plan: _Plan, good: GoodColumns) -> MappedRows:
    """The requests of a signal file, their bodies put together as text by polars.

    Each value becomes its JSON with its field name, a section's parts are joined with commas,
    and the sections go into one template: the very text ``map_row`` gets from ``json`` for the
    same row, as ``tests/ingest/test_columns.py`` checks.
    """
    count = len(good.numbers)
    parts: dict[str, list[pl.Expr]] = {section: [] for section in plan.sections}
    names = pl.lit(None, dtype=pl.String)
    frame = pl.DataFrame({str(position): values for position, values in enumerate(good.values)})
    if not frame.width:
        frame = pl.DataFrame({"_": [None] * count}, schema={"_": pl.String})
    for step in plan.steps:
        column = _column_expr(step)
        if step.section == "custom_data":
            label, close = f'{{"name":{_text(step.field)},"value":', "}"
        else:
            label, close = f"{_text(step.field)}:", ""
        values = column if step.integer else _json_strings(column, frame)
        parts[step.section].append(pl.lit(label) + values + pl.lit(close))
        if (step.section, step.field) == ("signal", "name"):
            names = column
    search, signal, custom = (_joined(parts[section]) for section in plan.sections)
    custom_data = pl.when(custom != "").then(pl.lit(',"custom_data":[') + custom + pl.lit("]"))
    bodies = pl.concat_str(
        pl.lit('{"search":{'), search, pl.lit('},"signal":{'), signal, pl.lit("}"),
        custom_data.otherwise(pl.lit("")), pl.lit("}"),
    )
    result = frame.select(text=bodies, named=names.fill_null("") != "")
    texts = result.get_column("text").to_list()
    named = result.get_column("named")
    failures: list[tuple[int, str]] = []
    numbers = good.numbers
    if not named.all():
        unnamed = (~named).arg_true().to_list()
        failures = [(good.numbers[index], NO_SIGNAL_NAME) for index in unnamed]
        kept = named.arg_true().to_list()
        numbers = [good.numbers[index] for index in kept]
        texts = [texts[index] for index in kept]
    keys = [_key(plan, text) for text in texts]
    batch = RequestBatch(plan.kind, plan.method, plan.path, numbers, texts, keys)
    return MappedRows._of(batch, failures)


def _column_expr(step: _Step) -> pl.Expr:
    if step.position is None:
        return pl.lit(step.constant, dtype=pl.String)
    return pl.col(str(step.position))


def _json_strings(column: pl.Expr, frame: pl.DataFrame) -> pl.Expr:
    """Each value as a JSON string: quoted as it is, unless it holds a character JSON escapes,
    then as ``json`` spells it (each distinct value once)."""
    values = frame.select(column).to_series()
    if not values.str.contains(_JSON_ESCAPED).any():
        return pl.lit('"') + column + pl.lit('"')
    distinct = values.drop_nulls().unique().to_list()
    texts = list(map(_text, distinct))
    return column.replace_strict(distinct, texts, default=None, return_dtype=pl.String)


def _joined(parts: list[pl.Expr]) -> pl.Expr:
    """Each row's present parts of a section, comma-separated."""
    if not parts:
        return pl.lit("")
    return pl.concat_str(parts, separator=",", ignore_nulls=True).fill_null("")


def _column(step: _Step, good: GoodColumns, count: int) -> Sequence[str | None]:
    if step.position is None:
        return [step.constant] * count
    return good.values[step.position].to_list()


def _key(plan: _Plan, text: str) -> str:
    return hashlib.sha256(f"{plan.kind}\n{plan.method} {plan.path}\n{text}".encode()).hexdigest()


def _request(kind: str, method: str, path: str, text: str, key: str) -> DestinationRequest:
    """A DestinationRequest made without the frozen dataclass' five ``object.__setattr__`` calls,
    which cost a microsecond a row; the instance is the same as one made by ``__init__``."""
    request = object.__new__(DestinationRequest)
    fields = {"kind": kind, "method": method, "path": path, "text": text, "key": key}
    object.__setattr__(request, "__dict__", fields)
    return request


def _section_fields(plan: _Plan) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {section: [] for section in plan.sections}
    for step in plan.steps:
        fields[step.section].append(step.field)
    return fields


def _integers(column: Sequence[str | None]) -> list[int | None]:
    numbers: dict[str | None, int] = {
        value: int(value) for value in set(column) if value is not None
    }
    return list(map(numbers.get, column))


def _section_dicts(
    fields: tuple[str, ...], columns: list[Sequence[Any]], count: int
) -> list[dict[str, Any]]:
    """One dict per row of a section's present values, in step order."""
    if not fields:
        return [{} for _ in range(count)]
    rows = zip(*columns)
    if not any(None in column for column in columns):
        return list(map(dict, map(zip, repeat(fields), rows)))
    return [
        {name: value for name, value in zip(fields, row) if value is not None}
        if None in row
        else dict(zip(fields, row))
        for row in rows
    ]


class _Step(NamedTuple):
    """One value of the request: from a column of the row, or a constant of the feed.

    A tuple, unpacked in the per-row loop, as attribute access would dominate its cost.
    """

    section: str
    field: str
    column: str
    position: int | None
    constant: str | None
    check: Callable[[str], str] | None
    integer: bool


@dataclass(frozen=True)
class _Plan:
    """How rows with one set of columns become requests; made once per feed and file."""

    kind: str
    method: str
    path: str
    sections: tuple[str, ...]
    steps: tuple[_Step, ...]
    build: Callable[[dict[str, dict[str, Any]]], dict[str, Any]]


def _plan(feed: Feed, columns: tuple[str, ...], tz: ZoneInfo) -> _Plan:
    cache_key = (id(feed), columns, tz)
    cached = _PLANS.get(cache_key)
    if cached is not None and cached[0] is feed:
        _PLANS.move_to_end(cache_key)
        return cached[1]
    kind = KINDS[feed.mapping.kind]
    steps = [
        _step(kind, target, f"constant {target}", None, value, None)
        for target, value in feed.mapping.constants
    ]
    for position, column in enumerate(columns):
        target = feed.target(column)
        if target is not None:
            check = checker(target_type(target), tz)
            steps.append(_step(kind, target, column, position, None, check))
    order = kind.sections
    # Sorted steps make bodies whose fields, and so keys, do not depend on the file's column order.
    steps.sort(key=lambda step: (order.index(step.section), step.field.lower()))
    plan = _Plan(
        kind=kind.name, method=kind.method, path=kind.request_path(feed.mapping.table),
        sections=order, steps=tuple(steps), build=kind.build,
    )
    _PLANS[cache_key] = (feed, plan)
    while len(_PLANS) > MAX_CACHED_PLANS:
        _PLANS.popitem(last=False)
    return plan


def _step(
    kind: Kind,
    target: Target,
    column: str,
    position: int | None,
    constant: str | None,
    check: Callable[[str], str] | None,
) -> _Step:
    return _Step(
        section=target.section,
        field=target.field,
        column=column,
        position=position,
        constant=constant,
        check=check,
        integer=target in kind.numbers,
    )


# The canonical spelling of a body, and of one text value in it.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_text: Callable[[str], str] = encode_basestring
# Characters that ``json`` escapes in a string (with ``ensure_ascii=False``), as a polars pattern.
_JSON_ESCAPED = r'["\\\x00-\x1f]'
# Plans by (feed identity, columns, zone); a handful of feeds and files are active at a time.
MAX_CACHED_PLANS = 64
_PLANS: OrderedDict[tuple[int, tuple[str, ...], ZoneInfo], tuple[Feed, _Plan]] = OrderedDict()
