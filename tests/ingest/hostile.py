"""Hostile workbooks, built byte by byte as an attacker would, for the bulkhead tests.

Each is a minimal valid XLSX (the parts calamine needs and nothing else), so the reader really
opens it: what it does to memory is the reader's, not a stand-in's.
"""

from __future__ import annotations

import io
import zipfile

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml"'
    ' ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml"'
    ' ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    "</Types>"
)
ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    ' xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId7"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId7" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
)
SHEET_START = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
)


def _cell(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'


def workbook(sheet_data: str, dimension: str | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    """An XLSX whose first sheet holds ``sheet_data`` (the inside of ``<sheetData>``)."""
    declared = f'<dimension ref="{dimension}"/>' if dimension else ""
    sheet = f"{SHEET_START}{declared}<sheetData>{sheet_data}</sheetData></worksheet>"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("_rels/.rels", ROOT_RELS)
        archive.writestr("xl/workbook.xml", WORKBOOK)
        archive.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS)
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def far_cell(declare: bool) -> bytes:
    """Cells at A1 and XFD1048576: 1.6 KB that a reader lays out as 17 billion cells."""
    rows = f'<row r="1">{_cell("A1", "transaction_id")}</row><row r="1048576">{_cell("XFD1048576", "x")}</row>'
    return workbook(rows, "A1:XFD1048576" if declare else None)


def zip_bomb(unpacked_mib: int = 64) -> bytes:
    """A small sheet beside a part of zeros that deflates about 1000:1."""
    rows = f'<row r="1">{_cell("A1", "transaction_id")}</row>'
    return workbook(rows, "A1", extra={"xl/media/padding.bin": bytes(unpacked_mib * 1024 * 1024)})


def shared_strings_bomb(unpacked_mib: int = 32) -> bytes:
    """One cell whose shared-strings table holds megabytes of one repeated string."""
    rows = '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
    item = "<si><t>" + "A" * 1000 + "</t></si>"
    table = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
             '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             + item * (unpacked_mib * 1024 * 1024 // len(item)) + "</sst>")
    return workbook(rows, "A1", extra={"xl/sharedStrings.xml": table.encode()})


def far_cell_xls() -> bytes:
    """The old format's far cell: A1 and IV65536, a 5.6 KB file read as 16.7 million cells."""
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Sheet1")
    sheet.write(0, 0, "transaction_id")
    sheet.write(65535, 255, "x")
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def many_parts(count: int) -> bytes:
    rows = f'<row r="1">{_cell("A1", "transaction_id")}</row>'
    return workbook(rows, "A1", extra={f"xl/parts/{n}.xml": b"<a/>" for n in range(count)})


def small_table(header: list[str], rows: list[list[str]]) -> bytes:
    """A plain, well-formed sheet (with a correct ``<dimension>``)."""
    from openpyxl.utils import get_column_letter

    lines = [header, *rows]
    data = "".join(
        f'<row r="{r}">' + "".join(_cell(f"{get_column_letter(c)}{r}", value) for c, value in enumerate(line, 1))
        + "</row>"
        for r, line in enumerate(lines, 1)
    )
    last = f"{get_column_letter(len(header))}{len(lines)}"
    return workbook(data, f"A1:{last}")
