"""Read an uploaded CSV, XLSX or XLS file into a table of text.

Every value is text, never a number or a date guessed by a library, so identifiers and phone
numbers keep their leading zeros and validation sees what the customer typed. A value that is
empty, only whitespace, or ``NULL`` in any case is missing (``None``); other values are stripped.

The format is chosen by content, not by name: a workbook saved under a ``.csv`` name, or a
tab-separated export named ``.xls`` (as some call systems produce), is still read correctly. The
name rule itself is enforced separately (``ingest.rows.validate.check_file``).

CSV: UTF-8 with or without BOM, or UTF-16 with a BOM as Excel writes "Unicode text" (a BOM-less
UTF-16 file is recognised by its NUL bytes); other encodings are refused rather than misread. The
delimiter (comma, semicolon or tab) is the one found most often, outside quotes, on the header line.
Quoting is strict, so a stray quote cannot silently swallow the rest of the file. Files are
parsed by polars' multithreaded reader and cleaned a column at a time; wherever its rules and the
csv module's could part (a bare CR line end, a NUL byte, a quote out of place, a row longer than
the header), polars gives way and the csv module decides, so every file reads as the csv module
reads it.

Workbooks: the first sheet, through python-calamine. Cells that hold numbers are rendered the way
a person reads them: whole numbers without ``.0``, others in positional notation (never
``1e-05``). Date and date-time cells are rendered as ``YYYY/MM/DD hh:mm:ss[.sss] AM/PM``, the
Signal API's Excel format, which is read in the tenant's time zone, as Excel cells carry no zone. A
date without a time becomes midnight: calamine cannot tell a date cell from a date-time cell at
midnight, and midnight is what the serial number means. Time-of-day cells become ``HH:MM:SS``.
Error cells (``#N/A``) and formulas saved without a value are missing. A sheet's cells become text a
column at a time, each kind of cell rendered by polars in one go (``ingest.rows.cell_text``), and
reach validation as polars columns.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import python_calamine

from core.gcpause import collection_paused
from ingest.rows.cell_text import datetime_texts, number_texts, value_text
from ingest.rows.errors import FileRejected

__all__ = ["MISSING", "Table", "read_table"]

#: Cell texts (after stripping) that mean "no value".
MISSING = frozenset({""} | {"".join(c) for c in itertools.product(*zip("null", "NULL"))})
#: What ``str.strip()`` removes (every character whose ``isspace()`` is true), for polars to strip
#: the very same; ``tests/ingest/rows/test_readers.py`` checks it against this Python's Unicode tables.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

DELIMITERS = (",", ";", "\t")
ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# How many leading bytes are inspected for the NUL pattern of BOM-less UTF-16.
UTF16_SNIFF_BYTES = 256
# How many cells spread over a workbook column are asked their kind before it is read as text.
TEXT_SAMPLE_CELLS = 64


class Table:
    """A header and its rows, every value text or ``None`` for missing.

    Rows are in file order, including blank ones, so ``rows[i]`` is file row ``i + 2`` (the
    header is row 1). Short rows are padded with ``None``; trailing missing cells beyond the header
    are dropped; a row that is still longer than the header is kept as is, for validation to refuse.

    The readers hand a rectangular table over column by column (``from_columns``), as validation
    works a column at a time: the rows of a large file are then only made if someone asks for them.
    """

    __slots__ = ("_columns", "_rows", "_series", "header")

    def __init__(self, header: list[str], rows: list[list[str | None]]) -> None:
        self.header = header
        self._rows: list[list[str | None]] | None = rows
        self._columns: list[list[str | None]] | None = None
        self._series: list[pl.Series] | None = None

    @classmethod
    def from_columns(cls, header: list[str], columns: list[list[str | None]]) -> Table:
        """A table with one equally long column of values per header name."""
        table = cls(header, [])
        table._rows, table._columns = None, columns
        return table

    @classmethod
    def from_series(cls, header: list[str], series: list[pl.Series]) -> Table:
        """A table with one equally long polars column of text per header name."""
        table = cls(header, [])
        table._rows, table._series = None, series
        return table

    @property
    def rows(self) -> list[list[str | None]]:
        if self._rows is None:
            columns = self.columns
            assert columns is not None
            self._rows = list(map(list, zip(*columns)))
            # The rows may now be changed in place; the columns would not follow.
            self._columns = self._series = None
        return self._rows

    @property
    def columns(self) -> list[list[str | None]] | None:
        """The values column by column if the table came that way and its rows were never asked
        for, else None."""
        if self._columns is None and self._series is not None:
            self._columns = [series.to_list() for series in self._series]
        return self._columns

    @property
    def series(self) -> list[pl.Series] | None:
        """The polars columns if the table came that way and its rows were never asked for."""
        return self._series

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Table):
            return NotImplemented
        return self.header == other.header and self.rows == other.rows

    def __repr__(self) -> str:
        return f"Table(header={self.header!r}, rows={self.rows!r})"


@collection_paused()
def read_table(path: Path) -> Table:
    """The first table of ``path``; raises FileRejected when it cannot be read."""
    try:
        with path.open("rb") as stream:
            magic = stream.read(len(OLE2_MAGIC))
    except OSError as exc:
        raise FileRejected(f"cannot open the file: {exc.strerror or exc}") from None
    if magic.startswith(ZIP_MAGIC) or magic == OLE2_MAGIC:
        return _read_workbook(path)
    return _read_csv(path.read_bytes())


def _read_csv(data: bytes) -> Table:
    text = _decode(data)
    delimiter = _delimiter(text)
    return _read_csv_columns(text, delimiter) or _read_csv_records(text, delimiter)


def _read_csv_columns(text: str, delimiter: str) -> Table | None:
    """The table as polars reads it, or None where the csv module must decide (see the module
    docstring): any file polars refuses, and those where the two could read differently."""
    if "\x00" in text or text.count("\r") != text.count("\r\n"):
        return None
    if not _strictly_quoted(text, delimiter):
        return None
    try:
        frame = pl.read_csv(
            text.encode(), has_header=False, infer_schema=False, separator=delimiter,
            quote_char='"', raise_if_empty=True,
        )
    except pl.exceptions.PolarsError:
        return None
    header = _header(list(frame.row(0)))
    width = len(header)
    cleaned = frame.slice(1).select(_cleaned(pl.col(name)) for name in frame.columns)
    beyond = cleaned.get_columns()[width:]
    if not width or any(column.is_not_null().any() for column in beyond):
        # A nameless header or cells beyond it: the csv module's rows say what validation sees.
        return None
    return Table.from_series(header, cleaned.get_columns()[:width])


def _strictly_quoted(text: str, delimiter: str) -> bool:
    """Whether every quote opens a field, is doubled inside one, or closes one at its end.

    Where quotes are otherwise, the csv module refuses the file or keeps the quote as text, and
    polars may read something else. Line ends are LF or CRLF here.
    """
    find = text.find
    start = find('"')
    while start != -1:
        if start and text[start - 1] not in (delimiter, "\n"):
            return False
        end = find('"', start + 1)
        while end != -1 and text.startswith('"', end + 1):
            end = find('"', end + 2)
        if end == -1 or text[end + 1 : end + 2] not in (delimiter, "\r", "\n", ""):
            return False
        start = find('"', end + 1)
    return True


def _cleaned(column: pl.Expr) -> pl.Expr:
    """``_clean_texts`` as a polars expression."""
    text = column.str.strip_chars(WHITESPACE)
    return pl.when(text.is_in(list(MISSING))).then(None).otherwise(text).name.keep()


def _read_csv_records(text: str, delimiter: str) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        records = list(reader)
    except csv.Error as exc:
        raise FileRejected(f"line {reader.line_num}: the CSV is malformed: {exc}") from None
    if not records:
        return Table(header=[], rows=[])
    header = _header(records[0])
    del records[0]
    return _table(header, records, _clean_texts, _clean_record)


def _clean_record(record: list[str]) -> list[str | None]:
    return [None if (cell := value.strip()) in MISSING else cell for value in record]


def _clean_texts(cells: Sequence[str]) -> list[str | None]:
    texts: list[str | None] = list(map(str.strip, cells))
    if MISSING.isdisjoint(texts):
        return texts
    return [None if text in MISSING else text for text in texts]


def _table(
    header: list[str],
    records: list[list[Any]],
    clean_column: Callable[[Sequence[Any]], list[str | None]],
    clean_record: Callable[[list[Any]], list[str | None]],
) -> Table:
    """The records as a table of text, fitted to the header.

    Files are nearly always rectangular, and then their cells are cleaned a column at a time,
    where repeats and the common case (nothing to strip, nothing missing) cost least.
    """
    width = len(header)
    lengths = set(map(len, records))
    if lengths == {width} and width:
        return Table.from_columns(header, [clean_column(cells) for cells in zip(*records)])
    if len(lengths) == 1 and 0 not in lengths and width:
        columns = [clean_column(cells) for cells in zip(*records)]
        return Table(header, [_fit(row, width) for row in map(list, zip(*columns))])
    return Table(header, [_fit(clean_record(record), width) for record in records])


def _decode(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        encoding, body = "utf-8", data[len(codecs.BOM_UTF8) :]
    elif data.startswith(codecs.BOM_UTF16_LE):
        encoding, body = "utf-16-le", data[len(codecs.BOM_UTF16_LE) :]
    elif data.startswith(codecs.BOM_UTF16_BE):
        encoding, body = "utf-16-be", data[len(codecs.BOM_UTF16_BE) :]
    else:
        encoding, body = _sniff_utf16(data) or "utf-8", data
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        line = body[: exc.start].decode(encoding, errors="replace").count("\n") + 1
        raise FileRejected(
            f"line {line}: the file is not valid {encoding.upper()} text (byte"
            f' 0x{body[exc.start]:02x}); save it as "CSV UTF-8" or as "Unicode text"'
        ) from None


def _sniff_utf16(data: bytes) -> str | None:
    """UTF-16 without a BOM: ASCII text has a NUL byte in every other position."""
    sample = data[:UTF16_SNIFF_BYTES]
    if b"\x00" not in sample:
        return None
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    return "utf-16-be" if even > odd else "utf-16-le"


def _delimiter(text: str) -> str:
    """The delimiter used most often, outside quotes, on the header line; comma on a tie."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char in "\r\n":
            break
        elif char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=counts.__getitem__)
    return best if counts[best] else DELIMITERS[0]


def _header(cells: list[Any]) -> list[str]:
    names = ["" if cell is None else str(cell).strip().lstrip("\ufeff").strip() for cell in cells]
    while names and not names[-1]:
        names.pop()
    return names


def _fit(cells: list[str | None], width: int) -> list[str | None]:
    if len(cells) < width:
        cells.extend([None] * (width - len(cells)))
    else:
        while len(cells) > width and cells[-1] is None:
            cells.pop()
    return cells


def _read_workbook(path: Path) -> Table:
    try:
        with python_calamine.CalamineWorkbook.from_path(str(path)) as workbook:
            if not workbook.sheet_names:
                return Table(header=[], rows=[])
            sheet = workbook.get_sheet_by_index(0).to_python(skip_empty_area=False)
    except python_calamine.PasswordError:
        raise FileRejected(
            "the workbook is password-protected; save it without a password"
        ) from None
    except (python_calamine.CalamineError, ValueError, OSError) as exc:
        raise FileRejected(f"cannot read the workbook: {exc}") from None
    if not sheet:
        return Table(header=[], rows=[])
    header = _header([_cell_text(cell) for cell in sheet[0]])
    del sheet[0]
    if not sheet:
        return Table(header, [])
    width = len(header)
    cells = _sheet_columns(sheet)
    del sheet
    # Cells beyond the header are rendered one by one: usually there are none, or they are the
    # empty columns up to a stray cell far to the right, which polars would cost more per column.
    beyond = [_cell_texts(column) for column in cells[width:]]
    columns = _cell_columns(cells[:width])
    del cells
    if width and not any(map(any, beyond)):
        return Table.from_series(header, columns)
    # Cells beyond the header (or no header at all): the rows say what validation sees.
    texts = [column.to_list() for column in columns] + beyond
    return Table(header, [_fit(row, width) for row in map(list, zip(*texts))])


def _sheet_columns(rows: list[list[Any]]) -> list[list[Any]]:
    """The rows of a sheet as its columns.

    Calamine's rows are all as wide as the sheet: the cells laid end to end in one list are then
    sliced a column at a time, which costs less than ``zip(*rows)``'s tuple of every column.
    """
    widths = set(map(len, rows))
    if len(widths) != 1:
        return [list(column) for column in zip(*rows)]
    (width,) = widths
    cells = list(itertools.chain.from_iterable(rows))
    return [cells[number::width] for number in range(width)]


def _cell_columns(columns: Sequence[Sequence[Any]]) -> list[pl.Series]:
    """Columns of calamine cells as polars text.

    Each column's text cells are cleaned by polars, all columns in one go. Its numbers, date-times
    and dates are each gathered into a polars column of their own kind and rendered there, with no
    Python call per cell (a column of one such kind alone is rendered whole, with no gathering);
    the rare other kinds (booleans, times, durations) are rendered cell by cell; the kinds are then
    laid over each other. Calamine gives empty and error cells as ``""``.
    """
    texts: list[pl.Series] = []
    rendered: list[list[pl.Series]] = []
    raw: list[pl.Series] = []  # text as calamine gave it, to be cleaned
    blank = pl.Series("blank", [None] * len(columns[0]) if columns else [], dtype=pl.String)
    for number, cells in enumerate(columns):
        name = str(number)
        parts: list[pl.Series] = []
        if cells[0] == "" and cells.count("") == len(cells):
            text = blank.alias(name)
        elif (strict := _text_column(name, cells)) is not None:
            text = strict
            raw.append(text)
        elif (whole := _rendered_whole(cells, kinds := set(map(type, cells)))) is not None:
            text = whole.alias(name)
        else:
            text = pl.Series(name, [c if type(c) is str else None for c in cells], dtype=pl.String)
            if text.null_count() < text.len():
                raw.append(text)
            parts = _rendered(cells, kinds)
        texts.append(text)
        rendered.append(parts)
    done = dict(zip((column.name for column in raw),
                    pl.DataFrame(raw).select(_cleaned(pl.col(column.name)) for column in raw).get_columns()))
    cleaned = [done.get(column.name, column) for column in texts]
    return [
        pl.select(pl.coalesce(text, *(part.rename(f"part{n}") for n, part in enumerate(parts)))).to_series()
        if parts else text
        for text, parts in zip(cleaned, rendered)
    ]


def _text_column(name: str, cells: Sequence[Any]) -> pl.Series | None:
    """A column of text cells alone as polars text, or None where another kind of cell is in it.

    polars builds a text column strictly, refusing any cell that is not text, which costs less
    than first asking each cell its kind. A refusal costs more than asking, so a column in which
    one of a few cells spread over it is not text is not offered to polars at all.
    """
    if not all(type(cell) is str for cell in cells[:: len(cells) // TEXT_SAMPLE_CELLS + 1]):
        return None
    try:
        return pl.Series(name, cells, dtype=pl.String, strict=True)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        return None


def _rendered_whole(cells: Sequence[Any], kinds: set[type]) -> pl.Series | None:
    """A column of numbers alone, date-times alone or dates alone as text, or None for others."""
    if kinds == {float}:
        return number_texts(pl.Series(cells, dtype=pl.Float64))
    if kinds == {datetime}:
        return datetime_texts(pl.Series(cells, dtype=pl.Datetime("us")))
    if kinds == {date}:
        return datetime_texts(pl.Series(cells, dtype=pl.Date).cast(pl.Datetime("us")))
    return None


def _rendered(cells: Sequence[Any], kinds: set[type]) -> list[pl.Series]:
    """The cells that are not text as text, a column for each kind (missing elsewhere)."""
    parts = []
    if float in kinds:
        numbers = pl.Series([cell if type(cell) is float else None for cell in cells], dtype=pl.Float64)
        parts.append(number_texts(numbers))
    if datetime in kinds:
        moments = pl.Series([cell if type(cell) is datetime else None for cell in cells], dtype=pl.Datetime("us"))
        parts.append(datetime_texts(moments))
    if date in kinds:
        days = pl.Series([cell if type(cell) is date else None for cell in cells], dtype=pl.Date)
        parts.append(datetime_texts(days.cast(pl.Datetime("us"))))
    others = kinds - {str, float, datetime, date}
    if others:
        parts.append(pl.Series([value_text(cell) if type(cell) in others else None for cell in cells],
                               dtype=pl.String))
    return parts


def _cell_texts(cells: Sequence[Any]) -> list[str | None]:
    """A column of cells as text, one cell at a time (for the few cells beyond the header)."""
    if cells.count("") == len(cells):
        return [None] * len(cells)
    return list(map(_cell_text, cells))


def _cell_text(cell: Any) -> str | None:
    """A workbook cell as the text a person sees; see the module docstring."""
    if isinstance(cell, str):
        text = cell.strip()
        return None if text in MISSING else text
    return value_text(cell)
