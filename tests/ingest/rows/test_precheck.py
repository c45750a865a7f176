"""The workbook pre-check: bombs are refused with a reason before any reader opens them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.config import ParseSettings
from ingest.rows.errors import FileRejected
from ingest.rows.precheck import check_workbook
from ingest.rows.readers import read_table
from tests.ingest import hostile
from tests.ingest.fixtures.make_fixtures import HERE as FIXTURES

LIMITS = ParseSettings()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_declared_range_of_17_billion_cells_is_refused_naming_the_range(tmp_path: Path) -> None:
    path = write(tmp_path, "far.xlsx", hostile.far_cell(declare=True))
    assert path.stat().st_size < 2000
    with pytest.raises(FileRejected) as refused:
        check_workbook(path, LIMITS)
    assert "A1:XFD1048576" in refused.value.reason and "1,048,576 rows by 16,384 columns" in refused.value.reason


def test_a_zip_bomb_is_refused_by_its_ratio_in_milliseconds(tmp_path: Path) -> None:
    path = write(tmp_path, "bomb.xlsx", hostile.zip_bomb(64))
    started = time.monotonic()
    with pytest.raises(FileRejected) as refused:
        check_workbook(path, LIMITS)
    assert time.monotonic() - started < 1.0  # the directory alone decides; nothing is unpacked
    assert "xl/media/padding.bin" in refused.value.reason and "zip bomb" in refused.value.reason


def test_a_shared_strings_bomb_is_refused_by_its_ratio(tmp_path: Path) -> None:
    path = write(tmp_path, "strings.xlsx", hostile.shared_strings_bomb(32))
    with pytest.raises(FileRejected) as refused:
        check_workbook(path, LIMITS)
    assert "xl/sharedStrings.xml" in refused.value.reason


def test_the_total_unpacked_size_is_bounded(tmp_path: Path) -> None:
    path = write(tmp_path, "big.xlsx", hostile.zip_bomb(3))
    with pytest.raises(FileRejected, match="unpacks to 3 MiB, more than the 2 MiB"):
        check_workbook(path, ParseSettings(max_unpacked_mib=2, max_compression_ratio=10_000))


def test_a_workbook_of_thousands_of_parts_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "parts.xlsx", hostile.many_parts(1200))
    with pytest.raises(FileRejected, match="holds 1205 parts"):
        check_workbook(path, LIMITS)


@pytest.mark.parametrize("name", ["signals.xlsx", "calls.xlsx", "signals.xls"])
def test_real_workbooks_pass(name: str) -> None:
    check_workbook(FIXTURES / name, LIMITS)


def test_a_sheet_within_its_declared_range_passes_and_reads(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.xlsx", hostile.small_table(["transaction_id", "name"], [["T1", "Sale"]]))
    check_workbook(path, LIMITS)
    assert read_table(path).rows == [["T1", "Sale"]]


def test_the_cell_budget_is_a_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.xlsx", hostile.small_table(["a", "b", "c"], [["1", "2", "3"]] * 3))
    with pytest.raises(FileRejected, match="4 rows by 3 columns"):
        check_workbook(path, ParseSettings(max_sheet_cells=11))


@pytest.mark.parametrize("data", [b"a,b\n1,2\n", b"PK\x03\x04 not really a zip", b""])
def test_what_is_not_a_readable_zip_is_left_to_the_reader(tmp_path: Path, data: bytes) -> None:
    check_workbook(write(tmp_path, "x.xlsx", data), LIMITS)
