"""Reading CSV (encodings, delimiters, quoting), XLSX and XLS into a table of text."""

from __future__ import annotations

import codecs
import random
import shutil
import sys
from pathlib import Path

import pytest

from ingest.rows import readers
from ingest.rows.errors import FileRejected
from ingest.rows.readers import Table, read_table
from tests.ingest.fixtures.make_fixtures import HEADER

FIXTURES = Path(__file__).parents[1] / "fixtures"

SAMPLE = "transaction_id,name,phone\r\n00012345,Sälé,+1 8885551212\r\n00000001,Quote,NULL\r\n"
SAMPLE_TABLE = Table(
    header=["transaction_id", "name", "phone"],
    rows=[["00012345", "Sälé", "+1 8885551212"], ["00000001", "Quote", None]],
)

# What both workbook fixtures hold (see fixtures/make_fixtures.py), read as text.
WORKBOOK_TABLE = Table(
    header=HEADER,
    rows=[
        [
            "00012345",
            "Sale",
            "1",
            "2016/04/11 01:00:00 PM",
            "129.45",
            "true",
            "+1 8885551212",
            "000777",
            "0.1",
        ],
        [
            "00000001",
            "Quote",
            "42",
            "2016/04/11 12:00:00 AM",
            "100",
            "false",
            None,
            None,
            "0.00001",
        ],
        [None] * 9,
        [
            "00000002",
            "Sale",
            "007",
            "2026/03/08 12:00:00 AM",
            "12345678901",
            "yes",
            "+44 2071234567",
            None,
            "2.5",
        ],
    ],
)


def write(tmp_path: Path, data: bytes, name: str = "upload.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_text(tmp_path: Path, text: str) -> Table:
    return read_table(write(tmp_path, text.encode("utf-8")))


@pytest.mark.parametrize(
    "data",
    [
        SAMPLE.encode("utf-8"),
        codecs.BOM_UTF8 + SAMPLE.encode("utf-8"),
        codecs.BOM_UTF16_LE + SAMPLE.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + SAMPLE.encode("utf-16-be"),
        SAMPLE.encode("utf-16-le"),
        SAMPLE.encode("utf-16-be"),
        SAMPLE.replace("\r\n", "\n").encode("utf-8"),
    ],
    ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom", "utf16le", "utf16be", "lf"],
)
def test_encodings(tmp_path: Path, data: bytes) -> None:
    assert read_table(write(tmp_path, data)) == SAMPLE_TABLE


def test_excel_unicode_text_export(tmp_path: Path) -> None:
    """Excel's "Unicode text": UTF-16 LE with a BOM, tab-separated, CRLF."""
    data = codecs.BOM_UTF16_LE + SAMPLE.replace(",", "\t").encode("utf-16-le")
    assert read_table(write(tmp_path, data, "export.xls")) == SAMPLE_TABLE


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiters(tmp_path: Path, delimiter: str) -> None:
    assert read_text(tmp_path, SAMPLE.replace(",", delimiter)) == SAMPLE_TABLE


def test_delimiter_inside_quoted_header_is_not_counted(tmp_path: Path) -> None:
    table = read_text(tmp_path, '"a;b";"c;d";e,f\n1;2;3,4\n')
    assert table.header == ["a;b", "c;d", "e,f"]
    assert table.rows == [["1", "2", "3,4"]]


def test_single_column_file(tmp_path: Path) -> None:
    assert read_text(tmp_path, "primary_key\nA1\n") == Table(["primary_key"], [["A1"]])


def test_quoted_fields_with_delimiters_quotes_and_newlines(tmp_path: Path) -> None:
    text = 'id,description\n1,"Honda, Accord ""2015"""\n2,"line one\nline two"\n3,plain\n'
    table = read_text(tmp_path, text)
    assert table.rows == [
        ["1", 'Honda, Accord "2015"'],
        ["2", "line one\nline two"],
        ["3", "plain"],
    ]


def test_a_quote_inside_an_unquoted_field_is_literal(tmp_path: Path) -> None:
    assert read_text(tmp_path, 'id,size\n1,5" screen\n').rows == [["1", '5" screen']]


def test_leading_zeros_and_plus_signs_stay(tmp_path: Path) -> None:
    table = read_text(tmp_path, "id,zip,phone,amount\n000123,02134,+18885551212,0010.50\n")
    assert table.rows == [["000123", "02134", "+18885551212", "0010.50"]]


@pytest.mark.parametrize("missing", ["", " ", "\t", "NULL", "null", "Null", " nUlL "])
def test_missing_values(tmp_path: Path, missing: str) -> None:
    table = read_text(tmp_path, f'a,b\n"{missing}",x\n')
    assert table.rows == [[None, "x"]]


def test_null_inside_a_value_is_a_value(tmp_path: Path) -> None:
    assert read_text(tmp_path, "a,b\nNULLABLE,NULL NULL\n").rows == [["NULLABLE", "NULL NULL"]]


def test_values_and_header_are_stripped(tmp_path: Path) -> None:
    table = read_text(tmp_path, " id , name \n  7 , Sale  \n")
    assert table == Table(["id", "name"], [["7", "Sale"]])


def test_ragged_rows(tmp_path: Path) -> None:
    table = read_text(tmp_path, "a,b,c\n1\n1,2,3,,\n1,2,3,4\n")
    assert table.rows == [["1", None, None], ["1", "2", "3"], ["1", "2", "3", "4"]]


def test_trailing_empty_header_cells_are_dropped(tmp_path: Path) -> None:
    assert read_text(tmp_path, "a,b,,\n1,2,,\n") == Table(["a", "b"], [["1", "2"]])


def test_blank_lines_keep_row_numbers(tmp_path: Path) -> None:
    table = read_text(tmp_path, "a,b\n1,2\n\n,\n3,4\n")
    assert table.rows == [["1", "2"], [None, None], [None, None], ["3", "4"]]


def test_empty_file(tmp_path: Path) -> None:
    assert read_table(write(tmp_path, b"")) == Table([], [])


def test_header_only(tmp_path: Path) -> None:
    assert read_text(tmp_path, "a,b\n") == Table(["a", "b"], [])


def test_windows_1252_is_refused_with_the_line(tmp_path: Path) -> None:
    data = "name,city\nSale,Köln\n".encode("cp1252")
    with pytest.raises(FileRejected, match=r'line 2: .*not valid UTF-8.*"CSV UTF-8"'):
        read_table(write(tmp_path, data))


def test_broken_utf16_is_refused_with_the_line(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + "a,b\n1,2\n".encode("utf-16-le") + b"\x00\xdc"  # lone surrogate
    with pytest.raises(FileRejected, match="line 3: the file is not valid UTF-16-LE text"):
        read_table(write(tmp_path, data))


def test_unterminated_quote_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileRejected, match="malformed"):
        read_text(tmp_path, 'a,b\n1,"open\n2,3\n')


def test_text_after_a_closing_quote_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileRejected, match="line 2: the CSV is malformed"):
        read_text(tmp_path, 'a,b\n1,"x"y\n')


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileRejected, match="cannot open the file"):
        read_table(tmp_path / "gone.csv")


@pytest.mark.parametrize("name", ["signals.xlsx", "signals.xls"])
def test_workbooks(name: str) -> None:
    assert read_table(FIXTURES / name) == WORKBOOK_TABLE


@pytest.mark.parametrize("name", ["signals.xlsx", "signals.xls"])
def test_workbook_read_by_content_not_name(tmp_path: Path, name: str) -> None:
    renamed = tmp_path / "misnamed.csv"
    shutil.copy(FIXTURES / name, renamed)
    assert read_table(renamed) == WORKBOOK_TABLE


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"PK\x03\x04 truncated zip", "cannot read the workbook"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "cannot read the workbook"),
    ],
)
def test_corrupt_workbooks(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(FileRejected, match=reason):
        read_table(write(tmp_path, data, "broken.xlsx"))


# --- the columnar CSV path ----------------------------------------------------------------------


def test_whitespace_is_what_str_strip_removes() -> None:
    assert set(readers.WHITESPACE) == {char for char in map(chr, range(sys.maxunicode + 1)) if char.isspace()}


def test_well_formed_quoted_files_take_the_columnar_path() -> None:
    text = 'id,note\r\n1,"a, ""b""\r\nc"\r\n2, NULL \r\n'
    table = readers._read_csv_columns(text, ",")
    assert table == Table(["id", "note"], [["1", 'a, "b"\r\nc'], ["2", None]])


@pytest.mark.parametrize(
    "text",
    [
        'id,note\n1,a"b\n',  # a quote inside an unquoted field: the csv module keeps it
        'id,note\n1,"a"b\n',  # text after a closing quote: the csv module refuses it
        'id,note\n1,"a\n',  # an unterminated quote
        "id,note\r1,a\r",  # bare CR line ends
        "id,note\n1,a\x00\n",  # a NUL byte
        "id,note\n1,a,b\n",  # a row longer than the header
        "id,,\n1,a,b\n",  # a nameless header cell with a value under it
    ],
)
def test_the_csv_module_decides_where_the_readers_could_part(text: str) -> None:
    assert readers._read_csv_columns(text, ",") is None


def _either(text: str, columnar: bool) -> Table | str | None:
    delimiter = readers._delimiter(text)
    if columnar:
        return readers._read_csv_columns(text, delimiter)
    try:
        return readers._read_csv_records(text, delimiter)
    except FileRejected as exc:
        return exc.reason


def test_the_columnar_path_reads_as_the_csv_module_does() -> None:
    """Random texts built from the characters where CSV readers differ: wherever the columnar path
    gives a table, the csv module gives the same one."""
    pieces = ['"', '""', ",", ";", "\t", "\n", "\r\n", "\r", " ", "a", "b c", "null", "NULL", "é",
              "\u3000", "\x1c", '"a,b"', '"\n"', "h1;h2\n"]
    rng = random.Random(20261122)
    taken = 0
    for _ in range(3000):
        body = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        text = body if rng.random() < 0.5 else "h1,h2,h3\n" + body
        fast = _either(text, columnar=True)
        if fast is None:
            continue
        taken += 1
        assert fast == _either(text, columnar=False), repr(text)
    assert taken > 300
