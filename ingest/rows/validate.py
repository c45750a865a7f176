"""Validate a table against its feed: file-level checks reject the file, row-level ones a row.

File level: the name and size (``check_file``), then the header against the template (empty file,
nameless or duplicate columns, missing required columns, unknown columns where the template refuses
them, order where it matters) and the mapping (a required request field nobody gives). A file whose
share of bad rows exceeds the configured maximum is rejected too, with its row errors kept.

Row level: required values, value types (``ingest.rows.coercion``), allowed values, the type of the
request field a column is mapped to, custom data fields missing from the tenant's data dictionary
(signal names may be new, custom data fields may not [invoca-sftp-signal-upload.txt]), a signal row
that cannot find its call, and a call that ends before it starts.

Checks run a column at a time on polars columns (see ``ingest.rows.column_checks``).
Values come out in canonical form (see ``ingest.rows.coercion``), keyed by the template's spelling of
the column name, and the good rows also column by column (``Validation.columns``), which is how
``ingest.rows.mapping.map_rows`` maps a file.
Blank rows (every value missing) are skipped without a result; row numbers stay those of the file.
"""

from __future__ import annotations

import itertools
import stat
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from core.config import MiB
from core.crypto import AtRest, TamperedFile
from core.filenames import upload_name_error
from core.gcpause import collection_paused
from ingest.rows.column_checks import check_column
from ingest.rows.feeds import Feed
from ingest.rows.fields import DICTIONARY_SECTIONS, Target, target_type
from ingest.rows.kinds import KINDS, NotBefore, OneOf
from ingest.rows.readers import Table
from ingest.rows.templates import Column, Template

__all__ = ["RowResult", "Validation", "check_file", "check_file_name", "validate"]

#: The file-name rule, shared with the front door.
check_file_name = upload_name_error

#: File row number of the first data row: the header is row 1.
FIRST_DATA_ROW = 2
# Types whose canonical text is the value itself.
_VERBATIM_TYPES = frozenset({"string", "text"})


class RowResult:
    """One row: its file row number, its canonical values by column, why it is rejected or None.

    Rows made by ``validate`` build their values dict only when it is read, as mapping a whole file
    works on ``Validation.columns`` instead.
    """

    __slots__ = ("_cells", "_keys", "_values", "error", "number")
    _keys: tuple[str, ...]
    _cells: tuple[str | None, ...]

    def __init__(self, number: int, values: dict[str, str | None], error: str | None) -> None:
        self.number = number
        self.error = error
        self._values: dict[str, str | None] | None = values

    @classmethod
    def _lazy(
        cls, number: int, keys: tuple[str, ...], cells: tuple[str | None, ...], error: str | None
    ) -> RowResult:
        row = cls.__new__(cls)
        row.number, row.error, row._values, row._keys, row._cells = number, error, None, keys, cells
        return row

    @property
    def values(self) -> dict[str, str | None]:
        if self._values is None:
            self._values = dict(zip(self._keys, self._cells))
        return self._values

    @values.setter
    def values(self, values: dict[str, str | None]) -> None:
        self._values = values

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RowResult):
            return NotImplemented
        return (self.number, self.values, self.error) == (other.number, other.values, other.error)

    def __repr__(self) -> str:
        return f"RowResult(number={self.number!r}, values={self.values!r}, error={self.error!r})"


@dataclass(frozen=True)
class GoodColumns:
    """The good rows of a validation column by column, for ``ingest.rows.mapping.map_rows``.

    ``values[p]`` holds the values of column ``keys[p]`` in the rows ``numbers``, canonical for the
    request field the column goes to in ``feed``, timestamps read in ``tz``.
    """

    feed: Feed
    tz: ZoneInfo
    keys: tuple[str, ...]
    numbers: list[int]
    values: list[pl.Series]


@dataclass(frozen=True)
class _Checked:
    """What ``validate`` found, column by column: enough to make each row's result on demand."""

    keys: tuple[str, ...]
    canonical: list[pl.Series]
    #: Row indices (from the first data row) of the rows that are not blank.
    filled: list[int]
    errors: dict[int, str]

    def results(self) -> list[RowResult]:
        return self._results(self.filled)

    def bad(self) -> list[RowResult]:
        return self._results(sorted(self.errors))

    def _results(self, indices: list[int]) -> list[RowResult]:
        cells = [column.gather(indices).to_list() for column in self.canonical]
        values = zip(*cells) if cells else itertools.repeat(())
        return [
            RowResult._lazy(FIRST_DATA_ROW + index, self.keys, row, self.errors.get(index))
            for index, row in zip(indices, values)
        ]


class Validation:
    """A file's verdict (``file_error``), its row results and, when ``validate`` made it, its good
    rows by column. Rows of a large file are made only when asked for: the processor needs the
    bad ones and the columns."""

    __slots__ = ("_checked", "_rows", "columns", "file_error")

    def __init__(
        self,
        file_error: str | None,
        rows: list[RowResult],
        columns: GoodColumns | None = None,
    ) -> None:
        self.file_error = file_error
        self._rows: list[RowResult] | None = rows
        self._checked: _Checked | None = None
        self.columns = columns

    @classmethod
    def _of(
        cls, file_error: str | None, checked: _Checked, columns: GoodColumns | None
    ) -> Validation:
        validation = cls(file_error, [], columns)
        validation._rows, validation._checked = None, checked
        return validation

    @property
    def rows(self) -> list[RowResult]:
        if self._rows is None:
            assert self._checked is not None
            self._rows = self._checked.results()
        return self._rows

    @property
    def row_count(self) -> int:
        """Rows that are not blank."""
        return len(self._checked.filled) if self._rows is None and self._checked else len(self.rows)

    @property
    def good(self) -> list[RowResult]:
        return [row for row in self.rows if row.error is None]

    @property
    def bad(self) -> list[RowResult]:
        if self._rows is None and self._checked is not None:
            return self._checked.bad()
        return [row for row in self.rows if row.error is not None]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Validation):
            return NotImplemented
        return (self.file_error, self.rows) == (other.file_error, other.rows)

    def __repr__(self) -> str:
        return f"Validation(file_error={self.file_error!r}, rows={self.rows!r})"


def check_file(path: Path, max_bytes: int, allowed_extensions: Iterable[str]) -> str | None:
    """Why the file at ``path`` cannot be processed at all (name, type, size), or None."""
    error = upload_name_error(path.name, allowed_extensions)
    if error:
        return error
    try:
        info = path.lstat()
    except OSError as exc:
        return f"{path.name!r} cannot be read: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        return f"{path.name!r} is not a regular file"
    try:
        size = AtRest.size(path)  # the plaintext's, for a file sealed at rest
    except TamperedFile:
        return f"{path.name!r} cannot be read: its stored copy is damaged; please upload the file again"
    if size > max_bytes:
        return (
            f"{path.name!r} is {size / MiB:.1f} MB ({size} bytes); files may be at"
            f" most {max_bytes / MiB:.1f} MB ({max_bytes} bytes)"
        )
    return None


@dataclass
class _Column:
    """One file column to check: where it is, what it is called, what it must hold."""

    index: int
    key: str
    column: Column | None
    target: Target | None

    @property
    def type(self) -> str:
        if self.column is not None:
            return self.column.type
        return target_type(self.target) if self.target else "text"


@collection_paused()
def validate(
    table: Table,
    feed: Feed,
    dictionary: Collection[str],
    tz: ZoneInfo,
    max_bad_row_share: float,
) -> Validation:
    """Check ``table`` against ``feed``; see the module docstring for what is checked."""
    error = _header_error(table.header, feed.template)
    if error:
        return Validation(file_error=error, rows=[])
    plan = _plan(table.header, feed)
    known_fields = {name.lower() for name in dictionary}
    error = _mapping_error(plan, feed, known_fields)
    if error:
        return Validation(file_error=error, rows=[])

    width = len(table.header)
    errors: dict[int, list[str]] = {}
    columns = _series(table, width, errors)
    rows = len(columns[0])
    present = [
        (column.is_not_null() & (column != "")).alias(str(n)) for n, column in enumerate(columns)
    ]
    mask = pl.select(pl.any_horizontal(present)).to_series()
    filled = list(range(rows)) if mask.all() else mask.arg_true().to_list()
    if errors:
        filled = sorted(set(filled) | set(errors))
    canonical: list[pl.Series] = []
    invalid: list[set[int]] = []
    for item in plan:
        values, problems = _check_column(item, columns[item.index], known_fields, tz)
        canonical.append(values)
        invalid.append({index for index, _ in problems})
        for index, message in problems:
            errors.setdefault(index, []).append(f"{item.key}: {message}")
    _check_rows(plan, canonical, invalid, feed, errors)

    keys = tuple(item.key for item in plan)
    # Blank rows (every value missing) get no result, so no error either (a required column is
    # missing in them too); the others keep their file row numbers.
    kept = set(filled)
    row_errors = {index: "; ".join(messages) for index, messages in errors.items() if index in kept}
    checked = _Checked(keys=keys, canonical=canonical, filled=filled, errors=row_errors)
    by_column = None
    if all(map(_canonical_for_target, plan)):
        good = [index for index in filled if index not in row_errors] if row_errors else filled
        by_column = GoodColumns(
            feed=feed,
            tz=tz,
            keys=keys,
            numbers=[FIRST_DATA_ROW + index for index in good],
            values=[values if len(good) == rows else values.gather(good) for values in canonical],
        )
    share_error = _share_error(len(filled), len(row_errors), max_bad_row_share)
    return Validation._of(share_error, checked, by_column)


def _canonical_for_target(item: _Column) -> bool:
    """Whether checked values of ``item`` are canonical for its request field.

    They are, except where choices give values their own spelling after a type check whose
    canonical text is not the value itself (``True`` for ``true``).
    """
    if item.target is None or item.column is None or not item.column.choices:
        return True
    required_type = target_type(item.target)
    return required_type != item.type or required_type in _VERBATIM_TYPES


def _header_error(header: list[str], template: Template) -> str | None:
    if not header:
        return "the file is empty: it has no header row"
    for position, name in enumerate(header, start=1):
        if not name:
            return f"column {position} of the header has no name"
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        first = seen.setdefault(name.lower(), position)
        if first != position:
            return f"column {name!r} appears twice in the header (columns {first} and {position})"
    missing = [column.name for column in template.required if column.name.lower() not in seen]
    if missing:
        return f"missing required column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
    if template.extra_columns == "forbidden":
        unknown = [name for name in header if template.column(name) is None]
        if unknown:
            return (
                f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))};"
                f" template {template.name!r} has: {', '.join(c.name for c in template.columns)}"
            )
    if template.ordered:
        present = [column.name for column in template.columns if column.name.lower() in seen]
        found = [column.name for column in map(template.column, header) if column is not None]
        if present != found:
            return f"columns out of order: expected {', '.join(present)}; found {', '.join(found)}"
    return None


def _plan(header: list[str], feed: Feed) -> list[_Column]:
    template = feed.template
    explicit = {name.lower(): name for name, _ in feed.mapping.columns}
    plan = []
    for index, name in enumerate(header):
        column = template.column(name)
        if column is None and template.extra_columns == "ignored":
            continue
        key = column.name if column else explicit.get(name.lower(), name)
        target = feed.target(key)
        if column is None and target is None:
            continue
        plan.append(_Column(index=index, key=key, column=column, target=target))
    return plan


def _mapping_error(plan: list[_Column], feed: Feed, known_fields: set[str]) -> str | None:
    """File-level gaps of the mapping: a required field no column of this file gives."""
    mapping = feed.mapping
    constants = {target for target, _ in mapping.constants}
    for target in constants:
        if target.section in DICTIONARY_SECTIONS and target.field.lower() not in known_fields:
            return f"the feed's constant {target}: {_not_in_dictionary(target)}"
    given = {item.target for item in plan if item.target} | constants
    kind = KINDS[mapping.kind]
    for target in kind.required:
        if target not in given:
            return f"no column of this file gives {target}, which is required"
    for rule in kind.one_of:
        if not given & set(rule.targets):
            fields = ", ".join(target.field for target in rule.targets)
            return rule.file_error.format(fields=fields)
    return None


def _series(table: Table, width: int, errors: dict[int, list[str]]) -> list[pl.Series]:
    """The table's first ``width`` columns; rows longer than that are errors."""
    if table.series is not None:
        return table.series
    columns = table.columns
    if columns is None:
        rows = table.rows
        for index, length in enumerate(map(len, rows)):
            if length > width:
                errors[index] = [f"the row has {length} values but the header has {width} columns"]
        if rows and min(map(len, rows)) < width:
            rows = [row + [None] * (width - len(row)) for row in rows]
        columns = [list(values) for values, _ in zip(zip(*rows), range(width))] if rows else []
        if not columns:
            columns = [[] for _ in range(width)]
    return [pl.Series(values, dtype=pl.String) for values in columns]


def _check_column(
    item: _Column, values: pl.Series, known_fields: set[str], tz: ZoneInfo
) -> tuple[pl.Series, list[tuple[int, str]]]:
    canonical, problems = check_column(item.type, tz, values)
    if item.column is not None and item.column.required and values.null_count():
        problems.extend((index, "missing value") for index in values.is_null().arg_true().to_list())
    if item.column is not None and item.column.choices:
        canonical = _check_choices(item.column.choices, canonical, problems)
    target = item.target
    if target is not None:
        required_type = target_type(target)
        if required_type != item.type:
            bad = {index for index, _ in problems}
            canonical, more = check_column(required_type, tz, canonical)
            problems.extend(
                (index, f"{message} (mapped to {target})")
                for index, message in more
                if index not in bad
            )
        if target.section in DICTIONARY_SECTIONS and target.field.lower() not in known_fields:
            message = _not_in_dictionary(target)
            problems.extend(
                (index, message) for index in values.is_not_null().arg_true().to_list()
            )
    problems.sort(key=lambda problem: problem[0])
    return canonical, problems


def _check_choices(
    choices: tuple[str, ...], values: pl.Series, problems: list[tuple[int, str]]
) -> pl.Series:
    allowed = {choice.lower(): choice for choice in choices}
    spelled: dict[str, str] = {}
    for value in values.drop_nulls().unique().to_list():
        if value.lower() in allowed:
            spelled[value] = allowed[value.lower()]
    canonical = values.replace(list(spelled), list(spelled.values()))
    refused = (values.is_not_null() & ~values.is_in(list(spelled))).arg_true()
    problems.extend(
        (index, f"{value!r} is not one of {', '.join(choices)}")
        for index, value in zip(refused.to_list(), values.gather(refused).to_list())
    )
    return canonical


def _check_rows(
    plan: list[_Column],
    canonical: list[pl.Series],
    invalid: list[set[int]],
    feed: Feed,
    errors: dict[int, list[str]],
) -> None:
    """Rules that span columns, as the feed's kind declares them: required request fields, one
    of several (a signal's search), one value not before another (a call's end).

    ``invalid[p]`` holds the rows whose value in column ``p`` failed its own checks.
    """
    kind = KINDS[feed.mapping.kind]
    constants = {target for target, _ in feed.mapping.constants}
    by_target = {item.target: position for position, item in enumerate(plan) if item.target}
    for target in kind.required:
        position = by_target.get(target)
        if target in constants or position is None:
            continue
        item = plan[position]
        if item.column is not None and item.column.required:
            continue
        for index in canonical[position].is_null().arg_true().to_list():
            errors.setdefault(index, []).append(f"{item.key}: missing value; {target} is required")
    for one_of in kind.one_of:
        _check_one_of(one_of, plan, canonical, constants, by_target, errors)
    for not_before in kind.not_before:
        _check_not_before(not_before, plan, canonical, invalid, by_target, errors)


def _check_one_of(
    rule: OneOf,
    plan: list[_Column],
    canonical: list[pl.Series],
    constants: set[Target],
    by_target: dict[Target, int],
    errors: dict[int, list[str]],
) -> None:
    if constants & set(rule.targets):
        return
    positions = [by_target[key] for key in rule.targets if key in by_target]
    if not positions:
        return
    message = rule.row_error.format(columns=", ".join(plan[p].key for p in positions))
    missing = pl.select(
        pl.all_horizontal(canonical[p].is_null().alias(str(p)) for p in positions)
    ).to_series()
    for index in missing.arg_true().to_list():
        errors.setdefault(index, []).append(message)


def _check_not_before(
    rule: NotBefore,
    plan: list[_Column],
    canonical: list[pl.Series],
    invalid: list[set[int]],
    by_target: dict[Target, int],
    errors: dict[int, list[str]],
) -> None:
    start = by_target.get(rule.earlier)
    end = by_target.get(rule.later)
    if start is None or end is None:
        return
    skip = invalid[start] | invalid[end]
    # Canonical timestamps share one fixed-width UTC format: text order is time order.
    early = (canonical[end] < canonical[start]).fill_null(False).arg_true().to_list()
    for index in early:
        if index not in skip:
            begun, ended = canonical[start][index], canonical[end][index]
            errors.setdefault(index, []).append(
                f"{plan[end].key} ({ended}) is before {plan[start].key} ({begun})"
            )


def _not_in_dictionary(target: Target) -> str:
    return f"custom data field {target.field!r} is not in the tenant's data dictionary"


def _share_error(rows: int, bad: int, max_bad_row_share: float) -> str | None:
    if not rows:
        return None
    share = bad / rows
    if share <= max_bad_row_share:
        return None
    return (
        f"{bad} of {rows} rows are bad ({share:.0%}), more than the {max_bad_row_share:.0%}"
        " allowed: the whole file is rejected"
    )
