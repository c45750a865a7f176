"""Workbooks read a column at a time read exactly as they did cell by cell.

The columnar reader (``readers._cell_column`` with ``ingest.rows.cell_text``'s polars forms) must
give every cell the text the cell-by-cell reader gave it. ``reference_table`` below is that earlier
reader, kept verbatim as the oracle: calamine's Python values, each rendered by its own call.
Random workbooks (every kind of cell openpyxl writes, stray cells beyond the header), hand-built
cells openpyxl cannot write (formulas' cached values, ISO date cells, shared strings, error codes)
and the two renderings of numbers and date-times are each compared with it.
"""

from __future__ import annotations

import math
import zipfile
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import polars as pl
import python_calamine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.rows import readers
from ingest.rows.cell_text import datetime_texts, excel_datetime, number_text, number_texts
from ingest.rows.feeds import default_feeds
from ingest.rows.readers import MISSING, Table, read_table
from ingest.rows.validate import validate
from tests.ingest import hostile

FIXTURES = Path(__file__).parents[1] / "fixtures"

# --- the cell-by-cell reader, as it was -----------------------------------------------------------


def _reference_number(value: float) -> str:
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    text = repr(value)
    return format(Decimal(text), "f") if "e" in text else text


def _reference_datetime(moment: datetime) -> str:
    hour = moment.hour
    millis = f".{moment.microsecond // 1000:03d}" if moment.microsecond else ""
    return (
        f"{moment.year:04d}/{moment.month:02d}/{moment.day:02d} {hour % 12 or 12:02d}:{moment.minute:02d}"
        f":{moment.second:02d}{millis} {'PM' if hour >= 12 else 'AM'}"
    )


def reference_cell(cell: Any) -> str | None:
    if isinstance(cell, str):
        text = cell.strip()
        return None if text in MISSING else text
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, float):
        return _reference_number(cell)
    if isinstance(cell, datetime):
        return _reference_datetime(cell)
    if isinstance(cell, date):
        return _reference_datetime(datetime.combine(cell, time()))
    if isinstance(cell, time):
        return cell.strftime("%H:%M:%S")
    if isinstance(cell, timedelta):
        minutes, seconds = divmod(int(cell.total_seconds()), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return None if cell is None else str(cell)


def reference_table(path: Path) -> Table:
    """The workbook as the cell-by-cell reader read it (rows fitted to the header as it did)."""
    with python_calamine.CalamineWorkbook.from_path(str(path)) as workbook:
        sheet = workbook.get_sheet_by_index(0).to_python(skip_empty_area=False)
    if not sheet:
        return Table([], [])
    header = readers._header([reference_cell(cell) for cell in sheet[0]])
    return Table(header, [readers._fit([reference_cell(cell) for cell in row], len(header)) for row in sheet[1:]])


def assert_reads_as_before(path: Path) -> Table:
    table = read_table(path)
    expected = reference_table(path)
    assert table.header == expected.header
    assert table.rows == expected.rows
    return table


# --- random workbooks -------------------------------------------------------------------------------

_TEXT = st.lists(
    st.sampled_from([*"aZ09 .,-+:/#=_", "\t", "\n", "\u00a0", "\u3000", "é", "NULL", "null", "Null", "NA", "1e5"]),
    max_size=8,
).map("".join)
_NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: round(x, 2)),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from([0.1, 1e-05, 0.30000000000000004, 2.0**53, 2.0**53 + 2, 1e16, 1e21, 5e-324, -0.0]),
)
_MOMENTS = st.datetimes(min_value=datetime(1900, 3, 1), max_value=datetime(9999, 12, 31))
_ERRORS = st.sampled_from(["#N/A", "#DIV/0!", "#NAME?", "#NULL!", "#NUM!", "#REF!", "#VALUE!"])
_CELLS = st.one_of(
    st.none(),
    _TEXT,
    _NUMBERS,
    st.booleans(),
    _MOMENTS,
    _MOMENTS.map(datetime.date),
    st.times(),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
    _ERRORS,
    st.sampled_from(["=1+1", '="a"&"b"', "=1/0", "=TRUE()"]),  # formulas openpyxl saves without a value
)


def _column_of(kind: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly one kind of cell with others mixed in, as real columns are."""
    return st.one_of(kind, kind, kind, _CELLS)


@st.composite
def _sheets(draw: st.DrawFn) -> list[list[Any]]:
    width = draw(st.integers(min_value=0, max_value=5))
    height = draw(st.integers(min_value=0, max_value=12))
    header = draw(st.lists(st.one_of(_TEXT, _TEXT, _CELLS), min_size=width, max_size=width))
    kinds = [draw(st.sampled_from([_TEXT, _NUMBERS, _MOMENTS, st.booleans(), _CELLS])) for _ in range(width)]
    rows = [[draw(_column_of(kind)) for kind in kinds] for _ in range(height)]
    if draw(st.booleans()) and rows:
        # A stray cell beyond the header, or a row of nothing but blanks far below.
        stray = draw(st.integers(min_value=0, max_value=len(rows) - 1))
        rows[stray] = rows[stray] + [None] * draw(st.integers(0, 3)) + [draw(_CELLS)]
    return [header, *rows]


def _write_xlsx(path: Path, sheet: list[list[Any]]) -> None:
    workbook = openpyxl.Workbook()
    worksheet = workbook.active
    assert worksheet is not None
    for row in sheet:
        worksheet.append(row)
    workbook.save(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sheet=_sheets())
def test_random_workbooks_read_as_before(tmp_path: Path, sheet: list[list[Any]]) -> None:
    path = tmp_path / "random.xlsx"
    _write_xlsx(path, sheet)
    assert_reads_as_before(path)


_NEAR_WHOLE = st.integers(min_value=-(2**54), max_value=2**54).flatmap(
    lambda n: st.sampled_from([math.nextafter(n, math.inf), math.nextafter(n, -math.inf), n + 1e-9, n - 0.5])
)
_NUMBER_LIKE = st.sampled_from(
    ["0042", "1.50", "1e5", " 12 ", "-0", "1,000", "3.0", "0x10", "inf", "NaN", "2024-05-01"]
)
_ONE_KIND = [
    st.one_of(_NUMBERS, _NEAR_WHOLE, st.floats(min_value=-1e-300, max_value=1e-300), st.sampled_from([1e300, -1e308])),
    _MOMENTS,
    _MOMENTS.map(datetime.date),
    st.one_of(_TEXT, _NUMBER_LIKE),
]


@st.composite
def _one_kind_sheets(draw: st.DrawFn) -> list[list[Any]]:
    """Columns of one kind of cell each (a column of numbers, date-times or dates is rendered
    whole), some with empty cells, one sometimes of empty cells alone."""
    width = draw(st.integers(min_value=1, max_value=4))
    height = draw(st.integers(min_value=1, max_value=15))
    kinds = [draw(st.sampled_from(_ONE_KIND)) for _ in range(width)]
    gaps = [draw(st.sampled_from([0.0, 0.0, 0.2, 1.0])) for _ in range(width)]
    rows = [
        [None if draw(st.floats(0, 1)) < gap else draw(kind) for kind, gap in zip(kinds, gaps)]
        for _ in range(height)
    ]
    return [[f"c{number}" for number in range(width)], *rows]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sheet=_one_kind_sheets())
def test_columns_of_one_kind_read_as_before(tmp_path: Path, sheet: list[list[Any]]) -> None:
    path = tmp_path / "one-kind.xlsx"
    _write_xlsx(path, sheet)
    assert_reads_as_before(path)


def test_a_few_other_cells_among_much_text_read_as_before(tmp_path: Path) -> None:
    """Cells of other kinds where the reader's sample of a column's kinds does not look."""
    height = 50 * readers.TEXT_SAMPLE_CELLS
    step = height // readers.TEXT_SAMPLE_CELLS + 1
    others: list[Any] = [1.5, 2.0**53 + 2, datetime(2024, 5, 1, 6, 15, 42), date(2024, 5, 1), True, time(6), None]
    rows: list[list[Any]] = [[f" text {row} ", "NULL"] for row in range(height)]
    for number, cell in enumerate(others):
        row = number * step + 1  # never a multiple of the step: not in the sample
        rows[row] = [cell, cell]
    path = tmp_path / "few.xlsx"
    _write_xlsx(path, [["a", "b"], *rows])
    table = assert_reads_as_before(path)
    assert table.rows[1] == ["1.5", "1.5"] and table.rows[step + 1] == ["9007199254740994.0"] * 2
    assert table.rows[0] == ["text 0", None]


# --- cells openpyxl cannot write, built as Excel stores them ----------------------------------------

STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<numFmts count="1"><numFmt numFmtId="164" formatCode="[h]:mm:ss"/></numFmts>'
    '<cellXfs count="5"><xf numFmtId="0"/><xf numFmtId="22"/><xf numFmtId="14"/><xf numFmtId="21"/>'
    '<xf numFmtId="164"/></cellXfs></styleSheet>'
)
SHARED = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    "<si><t>shared</t></si><si><t xml:space=\"preserve\">  NULL </t></si><si><t>0042</t></si></sst>"
)
STYLED_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId7" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId8" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/styles" Target="styles.xml"/>'
    '<Relationship Id="rId9" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>'
)


def _row(number: int, *cells: str) -> str:
    return f'<row r="{number}">{"".join(cells)}</row>'


def _built(tmp_path: Path, sheet_data: str) -> Path:
    """A workbook of ``hostile``'s minimal parts plus styles and shared strings."""
    path = tmp_path / "built.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", hostile.CONTENT_TYPES)
        archive.writestr("_rels/.rels", hostile.ROOT_RELS)
        archive.writestr("xl/workbook.xml", hostile.WORKBOOK)
        archive.writestr("xl/_rels/workbook.xml.rels", STYLED_RELS)
        sheet = f"{hostile.SHEET_START}<sheetData>{sheet_data}</sheetData></worksheet>"
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
        archive.writestr("xl/styles.xml", STYLES)
        archive.writestr("xl/sharedStrings.xml", SHARED)
    return path


def test_formula_cached_values_errors_and_stored_kinds(tmp_path: Path) -> None:
    header = _row(1, *(f'<c r="{c}1" t="inlineStr"><is><t>{c}</t></is></c>' for c in "ABCDEFGHIJ"))
    cells = _row(
        2,
        '<c r="A2"><f>1+1</f><v>2</v></c>',  # a number formula's cached value
        '<c r="B2" t="str"><f>"a"&amp;"b"</f><v>ab</v></c>',  # a text formula's cached value
        '<c r="C2" t="e"><f>1/0</f><v>#DIV/0!</v></c>',  # a formula's cached error
        '<c r="D2" t="b"><f>TRUE()</f><v>1</v></c>',  # a boolean formula
        '<c r="E2"><f>NOW()</f></c>',  # a formula saved without a value
        '<c r="F2" t="e"><v>#N/A</v></c>',
        '<c r="G2" t="s"><v>1</v></c>',  # shared "  NULL " is missing
        '<c r="H2" t="s"><v>2</v></c>',  # shared "0042" keeps its zeros
        '<c r="I2" t="d"><v>2024-05-01T06:15:42</v></c>',  # an ISO 8601 date cell
        '<c r="J2" t="n"><v>1.5E-7</v></c>',
    )
    table = assert_reads_as_before(_built(tmp_path, header + cells))
    assert table.rows == [["2", "ab", None, "true", None, None, None, "0042", "2024/05/01 06:15:42 AM", "0.00000015"]]


def test_styled_numbers_become_dates_times_and_durations(tmp_path: Path) -> None:
    header = _row(1, *(f'<c r="{c}1" t="inlineStr"><is><t>{c}</t></is></c>' for c in "ABCDE"))
    rows = [
        _row(2, '<c r="A2" s="1"><v>45413.26090277778</v></c>', '<c r="B2" s="2"><v>45413</v></c>',
             '<c r="C2" s="3"><v>0.75</v></c>', '<c r="D2" s="4"><v>1.5</v></c>', '<c r="E2" s="1"><v>45413</v></c>'),
        _row(3, '<c r="A3" s="1"><v>45413.5000011574</v></c>', '<c r="B3" t="s"><v>0</v></c>',
             '<c r="C3" s="3"><v>0.5</v></c>', '<c r="D3" s="4"><v>0.25</v></c>', '<c r="E3" s="1"><v>3000000</v></c>'),
    ]
    table = assert_reads_as_before(_built(tmp_path, header + "".join(rows)))
    assert table.rows[0][:4] == ["2024/05/01 06:15:42 AM", "2024/05/01 12:00:00 AM", "18:00:00", "36:00:00"]
    assert table.rows[1][:4] == ["2024/05/01 12:00:00.100 PM", "shared", "12:00:00", "6:00:00"]


def test_a_stray_cell_far_right_keeps_its_row_long(tmp_path: Path) -> None:
    header = _row(1, '<c r="A1" t="inlineStr"><is><t>id</t></is></c>')
    rows = _row(2, '<c r="A2"><v>1</v></c>') + _row(3, '<c r="A3"><v>2</v></c>', '<c r="Z3"><v>7</v></c>')
    table = assert_reads_as_before(_built(tmp_path, header + rows))
    assert table.rows == [["1"], ["2", *([None] * 24), "7"]]


def test_a_stray_blank_beyond_the_header_is_dropped(tmp_path: Path) -> None:
    header = _row(1, '<c r="A1" t="inlineStr"><is><t>id</t></is></c>')
    rows = _row(2, '<c r="A2"><v>1</v></c>', '<c r="D2" t="inlineStr"><is><t> null </t></is></c>')
    path = _built(tmp_path, header + rows)
    assert read_table(path).series is not None  # handed over a column at a time, not as rows
    assert assert_reads_as_before(path).rows == [["1"]]


def test_a_stray_cell_in_the_last_column_reads_as_before(tmp_path: Path) -> None:
    """16,384 columns, nearly all empty, in the header row or below it (within ``[parse]`` limits)."""
    below = _row(1, '<c r="A1" t="inlineStr"><is><t>id</t></is></c>') + "".join(
        _row(r, f'<c r="A{r}"><v>{r}.5</v></c>') for r in range(2, 6)
    ) + _row(6, '<c r="XFD6" t="inlineStr"><is><t>x</t></is></c>')
    table = assert_reads_as_before(_built(tmp_path, below))
    assert table.rows[-1] == [None] * 16383 + ["x"]
    beside = _row(1, '<c r="A1" t="inlineStr"><is><t>id</t></is></c>',
                  '<c r="XFD1" t="inlineStr"><is><t>x</t></is></c>')
    table = assert_reads_as_before(_built(tmp_path, beside + _row(2, '<c r="A2"><v>7</v></c>')))
    assert len(table.header) == 16384 and table.rows == [["7", *[None] * 16383]]


def test_leading_blank_rows_and_columns_keep_their_places(tmp_path: Path) -> None:
    rows = _row(1, '<c r="B1" t="inlineStr"><is><t>id</t></is></c>') + _row(3, '<c r="B3"><v>4</v></c>')
    assert assert_reads_as_before(_built(tmp_path, rows)) == Table(["", "id"], [[None, None], [None, "4"]])
    rows = _row(3, '<c r="B3" t="inlineStr"><is><t>id</t></is></c>') + _row(5, '<c r="C5"><v>4</v></c>')
    table = assert_reads_as_before(_built(tmp_path, rows))
    assert table == Table([], [[], [None, "id"], [], [None, None, "4"]])  # row 1, the header, is blank


def test_the_fixtures_read_as_before() -> None:
    for name in ("signals.xlsx", "calls.xlsx", "signals.xls"):
        assert_reads_as_before(FIXTURES / name)


def test_validation_sees_the_same_table(tmp_path: Path) -> None:
    """Same values, same row errors and row numbers, whichever way the table was handed over."""
    sheet: list[list[Any]] = [
        ["transaction_id", "name", "occurred_at_time", "sale_amount", "value"],
        ["T1", "Sale", datetime(2024, 5, 1, 6, 15, 42), 12.5, True],
        ["T2", "Sale", "not a date", "12,5", "maybe"],
        ["T3", "#N/A", date(2024, 5, 1), 1e-05, None],
        [None, None, None, None, None],
        ["T4", "Sale", time(6, 0), 0.30000000000000004, "=1/0"],
    ]
    path = tmp_path / "signals.xlsx"
    _write_xlsx(path, sheet)
    feed = default_feeds()["signals"]
    zone = ZoneInfo("America/Los_Angeles")
    columnar = validate(read_table(path), feed, [], zone, 1.0)
    expected = reference_table(path)
    by_rows = validate(Table(expected.header, expected.rows), feed, [], zone, 1.0)
    assert columnar == by_rows
    assert [(row.number, row.error is None) for row in columnar.rows] == [(2, True), (3, False), (4, False), (6, False)]
    assert columnar.rows[2].error == "name: missing value; sale_amount: '0.00001' has more than 2 decimal places"


# --- the two renderings of numbers and date-times -----------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.floats(), st.none(), st.sampled_from([-0.0, 2.0**53, 1e-4, 1e16, 9.999e15])), max_size=40))
def test_number_texts_are_number_text(values: list[float | None]) -> None:
    texts = number_texts(pl.Series(values, dtype=pl.Float64)).to_list()
    assert texts == [None if value is None else number_text(value) for value in values]
    assert texts == [None if value is None else _reference_number(value) for value in values]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.datetimes(), st.none()), max_size=40))
def test_datetime_texts_are_excel_datetime(moments: list[datetime | None]) -> None:
    texts = datetime_texts(pl.Series(moments, dtype=pl.Datetime("us"))).to_list()
    assert texts == [None if moment is None else excel_datetime(moment) for moment in moments]
    assert texts == [None if moment is None else _reference_datetime(moment) for moment in moments]
