"""Signal files of a given size in CSV, XLSX and XLS, shaped like a customer's real export.

One generator for every benchmark that reads a signal file (case 6, case 7 and
``python -m bench.processor_speed``), so their figures are about the same kind of file.

The files are deterministic (fixed seed) and look like files customers send: one timestamp format
per column with a few stragglers in another, phone numbers with and without spaces, money, a few
signal names, repeated agents and plans in custom data columns, and a few bad values (about 0.3 %
of rows) so the error paths run too; the writers say how many rows they spoiled, so a benchmark
can tell the planted errors from real ones. In the workbooks, numbers are number cells and the
call start is a date cell, as Excel saves them.

Every row finds its call by ``transaction_id`` among ``calls`` calls that a benchmark posting the
rows creates in the ledger first (``START`` is their start time), so every good row lands.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

SEED = 20240501
ZONE = ZoneInfo("America/Los_Angeles")
# Signals of the benchmark files spread over this many calls.
CALLS = 100
# The calls' start; every signal of a file occurs later that day.
START = datetime(2024, 5, 1, tzinfo=UTC)
DAY_START = START + timedelta(hours=7)
DAY_SECONDS = 86400
CALLERS = 15000
BAD_ROW_SHARE = 0.003
STRAGGLER_SHARE = 0.02
# Rows written to learn a workbook's bytes per row before writing the real one.
SAMPLE_ROWS = 4000
XLS_MAX_ROWS = 65535
EXCEL_DATE_FORMAT = "yyyy/mm/dd hh:mm:ss AM/PM"

# Not standard signal fields: the tenant's data dictionary must list them.
CUSTOM_COLUMNS = ("plan_type", "agent_name", "region", "customer_segment")
HEADER = (
    "transaction_id", "call_start_time", "calling_phone_number", "duration_in_seconds", "name",
    "partner_unique_id", "description", "occurred_at_time", "sale_amount", "value",
    "custom_parameter_1", *CUSTOM_COLUMNS,
)
CALL_START, PHONE, OCCURRED, AMOUNT, VALUE = 1, 2, 7, 8, 9
SPOILERS = ((PHONE, "555-1212"), (AMOUNT, "$12.00"), (OCCURRED, "2024-13-01T10:00:00Z"),
            (AMOUNT, "12.345"), (VALUE, "maybe"))
SIGNAL_NAMES = ("Sale", "Lead", "Qualified Lead", "Cancellation")
PLANS = ("bronze", "silver", "gold", "platinum", "family")
REGIONS = ("north", "south", "east", "west", "central")
SEGMENTS = ("new", "returning", "vip")
FIRST_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kai")
LAST_NAMES = ("Lopez", "Smith", "Nguyen", "Okafor", "Rossi", "Kim", "Singh", "Meyer", "Haddad")

Cells = list[object]
Rows = Iterator[tuple[Cells, bool]]


@dataclass(frozen=True)
class Written:
    """What a writer put in the file: data rows, and how many of them it spoiled on purpose."""

    rows: int
    bad: int


def call_transaction_id(index: int) -> str:
    return f"BENCH-{index:06d}"


def signal_rows(workbook: bool, calls: int = CALLS, prefix: str = "ORD-") -> Rows:
    """Endless (cells, spoiled) pairs; ``workbook`` gives number and date cells where Excel would.

    ``prefix`` makes the partner ids, and so the signals, new for each upload.
    """
    rng = random.Random(SEED)
    callers = [f"+1 {rng.randint(200, 999)} {rng.randint(200, 999)} {rng.randint(0, 9999):04d}"
               for _ in range(CALLERS)]
    agents = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    index = 0
    while True:
        start = DAY_START + timedelta(seconds=rng.randrange(DAY_SECONDS))
        occurred = start + timedelta(seconds=rng.randint(30, 3600))
        local_start = start.astimezone(ZONE)
        caller = rng.choice(callers)
        amount = rng.randint(0, 50000) / 100
        duration = rng.randint(20, 3600)
        row: Cells = [
            call_transaction_id(index % calls),
            local_start.replace(tzinfo=None) if workbook else local_start.strftime("%Y/%m/%d %I:%M:%S %p"),
            caller if rng.random() < 0.7 else caller.replace(" ", ""),
            duration if workbook else str(duration),
            rng.choice(SIGNAL_NAMES),
            f"{prefix}{index:09d}",
            f"Order of plan {rng.choice(PLANS)}, {rng.randint(1, 24)} months",
            occurred.astimezone(ZONE).isoformat(timespec="seconds"),
            amount if workbook else f"{amount:.2f}",
            rng.choice(("true", "true", "true", "false", "1", "yes")),
            f"store-{rng.randrange(97):02d}",
            rng.choice(PLANS),
            rng.choice(agents),
            rng.choice(REGIONS),
            rng.choice(SEGMENTS),
        ]
        if rng.random() < STRAGGLER_SHARE:
            row[OCCURRED] = str(int(occurred.timestamp()))
        if rng.random() < STRAGGLER_SHARE:
            row[CALL_START] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        spoiled = rng.random() < BAD_ROW_SHARE
        if spoiled:
            column, value = rng.choice(SPOILERS)
            row[column] = value
        yield row, spoiled
        index += 1


def csv_file(path: Path, size: int, calls: int = CALLS, prefix: str = "ORD-") -> Written:
    """Write rows until the file reaches ``size`` bytes."""
    rows = bad = written = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(HEADER)
        for row, spoiled in signal_rows(workbook=False, calls=calls, prefix=prefix):
            if written >= size:
                break
            writer.writerow(row)
            written += sum(len(str(value)) for value in row) + len(row) + 1
            rows += 1
            bad += spoiled
    return Written(rows, bad)


def xlsx_file(path: Path, size: int, calls: int = CALLS) -> Written:
    """As Excel saves a workbook: repeated texts stored once, in the shared string table."""
    return _sized(path, size, calls, _xlsx_shared_strings, max_rows=None)


def xlsx_inline_file(path: Path, size: int, calls: int = CALLS) -> Written:
    """As openpyxl, which many exporting tools use, writes one: every text inline in its cell."""
    return _sized(path, size, calls, _xlsx_inline_strings, max_rows=None)


def xls_file(path: Path, size: int, calls: int = CALLS) -> Written:
    return _sized(path, size, calls, _xls, max_rows=XLS_MAX_ROWS)


RowWriter = Callable[[Path, Rows], None]


def _sized(path: Path, size: int, calls: int, write: RowWriter, max_rows: int | None) -> Written:
    """Workbooks compress, so the row count for ``size`` is learned from a sample first."""
    write(path, _take(signal_rows(workbook=True, calls=calls), SAMPLE_ROWS))
    count = int(SAMPLE_ROWS * size / path.stat().st_size)
    if max_rows:
        count = min(count, max_rows)
    bad = sum(spoiled for _, spoiled in _take(signal_rows(workbook=True, calls=calls), count))
    write(path, _take(signal_rows(workbook=True, calls=calls), count))
    return Written(count, bad)


def _take(source: Rows, count: int) -> Rows:
    for _, row in zip(range(count), source):
        yield row


def _xlsx_shared_strings(path: Path, rows: Rows) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("signals")
    dates = book.add_format({"num_format": EXCEL_DATE_FORMAT})
    sheet.write_row(0, 0, HEADER)
    for number, (row, _) in enumerate(rows, start=1):
        for column, value in enumerate(row):
            if isinstance(value, datetime):
                sheet.write_datetime(number, column, value, dates)
            elif isinstance(value, str):
                sheet.write_string(number, column, value)
            else:
                sheet.write_number(number, column, value)
    book.close()


def _xlsx_inline_strings(path: Path, rows: Rows) -> None:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("signals")
    sheet.append(list(HEADER))
    for row, _ in rows:
        sheet.append(row)
    book.save(path)


def _xls(path: Path, rows: Rows) -> None:
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("signals")
    dates = xlwt.easyxf(num_format_str=EXCEL_DATE_FORMAT)
    for column, name in enumerate(HEADER):
        sheet.write(0, column, name)
    for number, (row, _) in enumerate(rows, start=1):
        for column, value in enumerate(row):
            if isinstance(value, datetime):
                sheet.write(number, column, value, dates)
            else:
                sheet.write(number, column, value)
    book.save(str(path))
