"""Cheap checks of a workbook's structure before any reader opens it.

An XLSX is a zip of XML parts, and its size says little about what reading it costs: a 4.45 MB zip
bomb unpacks to gigabytes, and one cell at ``XFD1048576`` makes the reader lay out a sheet of 17
billion cells. The zip's central directory (entry count, declared sizes, compression ratios) and the
first sheet's declared ``<dimension>`` tell most of that from a few kilobytes, so such a file is
refused with a reason naming what is wrong, before the reader spends memory on it. What these
checks cannot see (sizes that lie, a sheet without a ``<dimension>``, XLS files) is caught by the
limits of the child process that reads the file (``ingest.sandbox``).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path, PurePosixPath

from core.config import MiB, ParseSettings
from ingest.rows.errors import FileRejected

__all__ = ["check_workbook"]

ZIP_MAGIC = b"PK\x03\x04"
# Entries smaller than this unpacked are not held to the compression ratio: tiny XML parts compress
# far better than data does, and cannot hurt.
RATIO_FLOOR_BYTES = 1 * MiB
# How much of the workbook part, its relationships and the start of the first sheet is read.
HEAD_BYTES = 64 * 1024

_SHEET = re.compile(rb"<(?:\w+:)?sheet\b[^>]*?\s(?:\w+:)?id=\"([^\"]+)\"")
_RELATIONSHIP = re.compile(rb"<(?:\w+:)?Relationship\b[^>]*>")
_ATTRIBUTE = re.compile(rb"\b(Id|Target)=\"([^\"]*)\"")
_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\s+ref=\"([A-Za-z]{1,3})(\d{1,7})(?::([A-Za-z]{1,3})(\d{1,7}))?\"")


def check_workbook(path: Path, limits: ParseSettings) -> None:
    """Raise :class:`FileRejected` if ``path``, when it is an XLSX, would unpack beyond ``limits``.

    Anything else (a CSV, an XLS, a zip that Python cannot read) passes: the reader decides.
    """
    with path.open("rb") as stream:
        if stream.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            return
    try:
        with zipfile.ZipFile(path) as archive:
            _check_directory(archive.infolist(), limits)
            sheet = _first_sheet(archive)
            if sheet is not None:
                _check_dimension(archive, sheet, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, KeyError, OSError, EOFError):
        return


def _check_directory(entries: list[zipfile.ZipInfo], limits: ParseSettings) -> None:
    if len(entries) > limits.max_workbook_entries:
        raise FileRejected(
            f"the workbook holds {len(entries)} parts, more than the {limits.max_workbook_entries} a"
            " spreadsheet can reasonably need; save the sheet as CSV or as a new workbook"
        )
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > limits.max_unpacked_mib * MiB:
        raise FileRejected(
            f"the workbook unpacks to {unpacked // MiB} MiB, more than the {limits.max_unpacked_mib} MiB"
            " allowed; save the sheet as CSV"
        )
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size >= RATIO_FLOOR_BYTES and ratio > limits.max_compression_ratio:
            raise FileRejected(
                f"the workbook part {entry.filename!r} unpacks to {ratio:.0f} times its stored size"
                f" (at most {limits.max_compression_ratio:g} is allowed), which is what a zip bomb"
                " does; save the sheet as CSV or as a new workbook"
            )


def _first_sheet(archive: zipfile.ZipFile) -> str | None:
    """The zip name of the workbook's first sheet (the one the reader reads), if it can be told."""
    workbook = _head(archive, "xl/workbook.xml")
    first = _SHEET.search(workbook)
    if first is None:
        return None
    wanted = first.group(1)
    for relationship in _RELATIONSHIP.finditer(_head(archive, "xl/_rels/workbook.xml.rels")):
        attributes = dict(_ATTRIBUTE.findall(relationship.group(0)))
        if attributes.get(b"Id") == wanted and b"Target" in attributes:
            target = attributes[b"Target"].decode("utf-8", "replace")
            joined = PurePosixPath(target.lstrip("/")) if target.startswith("/") else PurePosixPath("xl", target)
            return str(joined)
    return None


def _check_dimension(archive: zipfile.ZipFile, sheet: str, limits: ParseSettings) -> None:
    found = _DIMENSION.search(_head(archive, sheet))
    if found is None:
        return
    first_column, first_row, last_column, last_row = found.groups()
    if last_column is None:
        return
    rows = abs(int(last_row) - int(first_row)) + 1
    columns = abs(_column_number(last_column) - _column_number(first_column)) + 1
    if rows * columns > limits.max_sheet_cells:
        used = f"{first_column.decode()}{first_row.decode()}:{last_column.decode()}{last_row.decode()}"
        raise FileRejected(
            f"the first sheet's used range is {used} ({rows:,} rows by {columns:,} columns), more than"
            f" the {limits.max_sheet_cells:,} cells allowed; a stray cell far below or to the right of"
            " the data causes this: delete the empty rows and columns after the data, or save the"
            " sheet as CSV"
        )


def _head(archive: zipfile.ZipFile, name: str) -> bytes:
    """The first :data:`HEAD_BYTES` of an entry, unpacking no more than that."""
    with archive.open(name) as member:
        return member.read(HEAD_BYTES)


def _column_number(letters: bytes) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + letter - ord("A") + 1
    return number
