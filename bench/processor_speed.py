"""Read, validate and map speed of 5 MB signal files, stage by stage, against a plain read.

A standalone script (``python -m bench.processor_speed``): it writes a CSV, two XLSX (one as
Excel saves it, one as openpyxl does) and an XLS signal file of about 5 MB each, shaped like a
customer's real export, then times the processor's three steps on each (``read_table``,
``validate`` against the shipped ``signals`` feed, ``map_rows``), best of N, next to a plain read
by the library a hand-written script would use.

The files are deterministic (fixed seed) and look like files customers send: one timestamp format
per column with a few stragglers in another, phone numbers with and without spaces, money, a few
signal names, repeated agents and plans in custom data columns, unique ids, and a few bad values
(about 0.3 % of rows) so the error paths run too. In the XLSX, numbers are number cells and the call
start is a date cell, as Excel saves them.

The machine may be shared: each figure is the best of its runs, the load average is printed, and
``cpu`` (the process's CPU seconds for a whole run) is less disturbed by other work than the wall
clock. The XLSX written like Excel needs ``xlsxwriter``; without it that row is skipped.
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ingest.feeds import DEFAULT_FEED, default_feeds
from ingest.mapping import map_rows
from ingest.readers import read_table
from ingest.validate import validate

TARGET_BYTES = 5 * 1024 * 1024
SEED = 20240501
ZONE = ZoneInfo("America/Los_Angeles")
MAX_BAD_ROW_SHARE = 0.5
# The peer figure of a library slower than this is skipped, as it says nothing a note cannot.
PEER_TIMEOUT_SECONDS = 30.0
# Rows written to learn a workbook's bytes per row before writing the real one.
SAMPLE_ROWS = 4000
XLS_MAX_ROWS = 65535
BAD_ROW_SHARE = 0.003
STRAGGLER_SHARE = 0.02

CUSTOM_COLUMNS = ("plan_type", "agent_name", "region", "customer_segment")
HEADER = (
    "transaction_id", "call_start_time", "calling_phone_number", "duration_in_seconds", "name",
    "partner_unique_id", "description", "occurred_at_time", "sale_amount", "value",
    "custom_parameter_1", *CUSTOM_COLUMNS,
)
SIGNAL_NAMES = ("Sale", "Lead", "Qualified Lead", "Cancellation")
PLANS = ("bronze", "silver", "gold", "platinum", "family")
REGIONS = ("north", "south", "east", "west", "central")
SEGMENTS = ("new", "returning", "vip")
FIRST_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kai")
LAST_NAMES = ("Lopez", "Smith", "Nguyen", "Okafor", "Rossi", "Kim", "Singh", "Meyer", "Haddad")
DAY_START = datetime(2024, 5, 1, 7, 0, tzinfo=UTC)
DAY_SECONDS = 86400
CALLERS = 15000


@dataclass(frozen=True)
class Timings:
    read: float
    validate: float
    map: float
    total: float
    cpu: float
    rows: int
    good: int


def signal_rows(rng: random.Random, workbook: bool) -> Iterator[list[object]]:
    """Endless rows; ``workbook`` gives number and date cells where Excel would store them."""
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
        row: list[object] = [
            f"{rng.getrandbits(32):08X}-{index:08X}",
            local_start.replace(tzinfo=None) if workbook else _excel_text(local_start),
            caller if rng.random() < 0.7 else caller.replace(" ", ""),
            rng.randint(20, 3600) if workbook else str(rng.randint(20, 3600)),
            rng.choice(SIGNAL_NAMES),
            f"ORD-{index:09d}",
            f"Order of plan {rng.choice(PLANS)}, {rng.randint(1, 24)} months",
            _iso_text(occurred.astimezone(ZONE)),
            amount if workbook else f"{amount:.2f}",
            rng.choice(("true", "true", "true", "false", "1", "yes")),
            f"store-{rng.randrange(97):02d}",
            rng.choice(PLANS),
            rng.choice(agents),
            rng.choice(REGIONS),
            rng.choice(SEGMENTS),
        ]
        if rng.random() < STRAGGLER_SHARE:
            row[7] = str(int(occurred.timestamp()))
        if rng.random() < STRAGGLER_SHARE:
            row[1] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        if rng.random() < BAD_ROW_SHARE:
            column, value = rng.choice(((2, "555-1212"), (8, "$12.00"), (7, "2024-13-01T10:00:00Z"),
                                        (8, "12.345"), (9, "maybe")))
            row[column] = value
        yield row
        index += 1


def _excel_text(moment: datetime) -> str:
    return moment.strftime("%Y/%m/%d %I:%M:%S %p")


def _iso_text(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def write_csv(path: Path) -> None:
    rows = signal_rows(random.Random(SEED), workbook=False)
    written = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(HEADER)
        while written < TARGET_BYTES:
            row = next(rows)
            writer.writerow(row)
            written += sum(len(str(value)) for value in row) + len(row) + 1


def write_xlsx(path: Path) -> None:
    _sized(path, _xlsx_shared_strings, max_rows=None)


def write_xlsx_inline(path: Path) -> None:
    _sized(path, _xlsx_inline_strings, max_rows=None)


def write_xls(path: Path) -> None:
    _sized(path, _xls, max_rows=XLS_MAX_ROWS)


def _sized(path: Path, write: Callable[[Path, int], None], max_rows: int | None) -> None:
    """Workbooks compress, so the row count for the size is learned from a sample first."""
    write(path, SAMPLE_ROWS)
    count = int(SAMPLE_ROWS * TARGET_BYTES / path.stat().st_size)
    write(path, min(count, max_rows) if max_rows else count)


def _xlsx_shared_strings(path: Path, count: int) -> None:
    """As Excel saves a workbook: repeated texts stored once, in the shared string table."""
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("signals")
    dates = book.add_format({"num_format": "yyyy/mm/dd hh:mm:ss AM/PM"})
    sheet.write_row(0, 0, HEADER)
    rows = signal_rows(random.Random(SEED), workbook=True)
    for number in range(1, count + 1):
        for column, value in enumerate(next(rows)):
            if isinstance(value, datetime):
                sheet.write_datetime(number, column, value, dates)
            elif isinstance(value, str):
                sheet.write_string(number, column, value)
            else:
                sheet.write_number(number, column, value)
    book.close()


def _xlsx_inline_strings(path: Path, count: int) -> None:
    """As openpyxl, which many exporting tools use, writes one: every text inline in its cell."""
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("signals")
    sheet.append(list(HEADER))
    rows = signal_rows(random.Random(SEED), workbook=True)
    for _ in range(count):
        sheet.append(next(rows))
    book.save(path)


def _xls(path: Path, count: int) -> None:
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("signals")
    dates = xlwt.easyxf(num_format_str="yyyy/mm/dd hh:mm:ss AM/PM")
    for column, name in enumerate(HEADER):
        sheet.write(0, column, name)
    rows = signal_rows(random.Random(SEED), workbook=True)
    for number in range(1, count + 1):
        for column, value in enumerate(next(rows)):
            if isinstance(value, datetime):
                sheet.write(number, column, value, dates)
            else:
                sheet.write(number, column, value)
    book.save(str(path))


def measure(path: Path, repeats: int) -> Timings:
    """Best of ``repeats`` for each step; total is the best whole run, not the sum of bests."""
    feed = default_feeds()[DEFAULT_FEED]
    best: dict[str, float] = {}
    rows = good = 0
    for _ in range(repeats):
        gc.collect()
        cpu = time.process_time()
        started = time.perf_counter()
        table = read_table(path)
        read = time.perf_counter()
        checked = validate(table, feed, CUSTOM_COLUMNS, ZONE, MAX_BAD_ROW_SHARE)
        validated = time.perf_counter()
        mapped = map_rows(feed, checked, ZONE)
        done = time.perf_counter()
        cpu = time.process_time() - cpu
        assert checked.file_error is None, checked.file_error
        rows, good = len(checked.rows), len(mapped.requests)
        for name, seconds in (("read", read - started), ("validate", validated - read),
                              ("map", done - validated), ("total", done - started), ("cpu", cpu)):
            best[name] = min(best.get(name, seconds), seconds)
        del table, checked, mapped
    return Timings(**best, rows=rows, good=good)


@dataclass(frozen=True)
class Peer:
    """A plain read of a file by a well-known library: ``read`` leaves the row count in ``n``."""

    name: str
    setup: str
    read: str


PEERS = {
    "csv": Peer(
        "pandas.read_csv(dtype=str)",
        "import pandas",
        "n = len(pandas.read_csv(path, dtype=str, keep_default_na=False))",
    ),
    "xlsx": Peer(
        "openpyxl read-only",
        "import openpyxl",
        "book = openpyxl.load_workbook(path, read_only=True, data_only=True)\n"
        "n = sum(1 for _ in book.worksheets[0].iter_rows(values_only=True)) - 1",
    ),
    "xls": Peer(
        "xlrd",
        "import xlrd",
        "sheet = xlrd.open_workbook(path).sheet_by_index(0)\n"
        "n = len([sheet.row_values(number) for number in range(1, sheet.nrows)])",
    ),
}

# Times a peer's read in a fresh interpreter, imports excluded, so a slow one can be cut off.
PEER_SCRIPT = """
import sys, time
path = sys.argv[1]
{setup}
started = time.perf_counter()
{read}
print(time.perf_counter() - started, n)
"""


def measure_peer(extension: str, path: Path, repeats: int) -> tuple[str, float | None, str]:
    """(peer name, best seconds or None, note)."""
    peer = PEERS[extension]
    name = peer.name
    script = PEER_SCRIPT.format(setup=peer.setup, read=peer.read)
    best: float | None = None
    for _ in range(repeats):
        try:
            result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                                    text=True, timeout=PEER_TIMEOUT_SECONDS, check=True)
        except subprocess.TimeoutExpired:
            return name, None, f"skipped: over {PEER_TIMEOUT_SECONDS:.0f} s"
        seconds = float(result.stdout.split()[0])
        best = seconds if best is None else min(best, seconds)
        if seconds > PEER_TIMEOUT_SECONDS / 3:
            return name, best, "1 run (slow)"
    return name, best, ""


@dataclass(frozen=True)
class Format:
    file_name: str
    write: Callable[[Path], None]
    peer: str


FORMATS = {
    "csv": Format("signals.csv", write_csv, "csv"),
    "xlsx": Format("signals.xlsx", write_xlsx, "xlsx"),
    "xlsx-inline": Format("signals-inline.xlsx", write_xlsx_inline, "xlsx"),
    "xls": Format("signals.xls", write_xls, "xls"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (best is shown)")
    parser.add_argument("--dir", type=Path, help="keep the files here and reuse them if present")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset")
    parser.add_argument("--no-peers", action="store_true", help="time only the processor")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"load average before: {_load()} on {os.cpu_count()} CPUs; best of {args.repeats}")
        print(f"{'file':<20}{'rows':>7}{'read':>8}{'valid.':>8}{'map':>8}{'total':>8}{'cpu':>8}"
              f"{'rows/s':>9}   peer (plain read)")
        for name in args.formats.split(","):
            spec = FORMATS[name]
            path = folder / spec.file_name
            if not path.exists():
                try:
                    spec.write(path)
                except ImportError as exc:
                    print(f"{name:<20}skipped: {exc.name} is not installed", flush=True)
                    continue
            timings = measure(path, args.repeats)
            peer = ""
            if not args.no_peers:
                peer_name, seconds, note = measure_peer(spec.peer, path, args.repeats)
                figure = f"{seconds:.2f} s, {timings.rows / seconds:,.0f} rows/s" if seconds else ""
                peer = f"{peer_name}: {figure}{' ' if figure and note else ''}{note}"
            label = f"{name} {path.stat().st_size / 1024 / 1024:.1f} MB"
            print(f"{label:<20}{timings.rows:>7}{timings.read:>8.3f}{timings.validate:>8.3f}"
                  f"{timings.map:>8.3f}{timings.total:>8.3f}{timings.cpu:>8.3f}"
                  f"{timings.rows / timings.total:>9,.0f}"
                  f"   {peer}", flush=True)
        print(f"load average after: {_load()}")


def _load() -> str:
    return ", ".join(f"{figure:.2f}" for figure in os.getloadavg())


if __name__ == "__main__":
    main()
