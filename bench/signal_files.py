"""Signal files of a given size in CSV, XLSX and XLS, shaped like a customer's daily export.

Every row is valid for the shipped ``signals`` feed and finds its call by ``transaction_id``
among ``calls`` calls that the benchmark creates in the ledger first, so the processor does all of
its work (no row is cut short by an error) and every post lands on a real call.
"""

from __future__ import annotations

import csv
import datetime
from collections.abc import Callable, Iterator
from pathlib import Path

HEADER = ("transaction_id", "name", "partner_unique_id", "occurred_at_time", "sale_amount", "value",
          "description", "custom_parameter_1")
SIGNAL_NAMES = ("Sale", "Lead", "Qualified Lead")
PLANS = ("basic", "plus", "premium", "family")
STORES = 97
START = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
# Rows written to learn a workbook's bytes per row before writing the real one.
SAMPLE_ROWS = 10000
SIZE_CORRECTIONS = 2
# Close enough: within 1/SIZE_TOLERANCE of the wanted row count.
SIZE_TOLERANCE = 40
XLS_MAX_ROWS = 65535

RowWriter = Callable[[Path, Iterator[list[object]]], None]


def call_transaction_id(index: int) -> str:
    return f"BENCH-{index:06d}"


def rows(calls: int, prefix: str = "P") -> Iterator[list[object]]:
    """Endless rows; ``prefix`` makes partner ids (and so signals) new for each upload."""
    index = 0
    while True:
        occurred = START + datetime.timedelta(seconds=index)
        yield [
            call_transaction_id(index % calls),
            SIGNAL_NAMES[index % len(SIGNAL_NAMES)],
            f"{prefix}{index:08d}",
            occurred.strftime("%Y-%m-%dT%H:%M:%SZ"),
            round((index * 37) % 100000 / 100, 2),
            "false" if index % 5 == 0 else "true",
            f"Order {index} of plan {PLANS[index % len(PLANS)]}",
            f"store-{index % STORES:02d}",
        ]
        index += 1


def csv_file(path: Path, size: int, calls: int, prefix: str = "P") -> int:
    """Write rows until the file reaches ``size`` bytes; returns the number of data rows."""
    count = 0
    written = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for row in rows(calls, prefix):
            if written >= size:
                break
            cells = [f"{value:.2f}" if isinstance(value, float) else str(value) for value in row]
            writer.writerow(cells)
            written += sum(map(len, cells)) + len(cells)  # the commas and the newline
            count += 1
    return count


def xlsx_file(path: Path, size: int, calls: int) -> int:
    return _sized_workbook(path, size, calls, _write_xlsx, max_rows=None)


def xls_file(path: Path, size: int, calls: int) -> int:
    return _sized_workbook(path, size, calls, _write_xls, max_rows=XLS_MAX_ROWS)


def _sized_workbook(path: Path, size: int, calls: int, write: RowWriter, max_rows: int | None) -> int:
    """Workbooks compress, so the row count for ``size`` bytes is found by measuring, then corrected."""
    count = SAMPLE_ROWS
    for _ in range(SIZE_CORRECTIONS + 1):
        if max_rows:
            count = min(count, max_rows)
        write(path, _take(rows(calls), count))
        actual = path.stat().st_size
        wanted = int(count * size / actual)
        capped = max_rows is not None and count == max_rows and wanted > count
        if capped or abs(wanted - count) <= count // SIZE_TOLERANCE:
            break
        count = wanted
    return count


def _take(source: Iterator[list[object]], count: int) -> Iterator[list[object]]:
    for _, row in zip(range(count), source):
        yield row


def _write_xlsx(path: Path, source: Iterator[list[object]]) -> None:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("signals")
    sheet.append(list(HEADER))
    for row in source:
        sheet.append(row)
    book.save(path)


def _write_xls(path: Path, source: Iterator[list[object]]) -> None:
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("signals")
    for column, name in enumerate(HEADER):
        sheet.write(0, column, name)
    for number, row in enumerate(source, start=1):
        for column, value in enumerate(row):
            sheet.write(number, column, value)
    book.save(str(path))
