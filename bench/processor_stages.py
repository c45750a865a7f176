"""The processor's read, validate and map of a signal file, stage by stage; its peer's plain read.

Shared by case 6 of ``bench.compare`` and the standalone ``python -m bench.processor_speed``.
The processor's part runs in the bench process with the same functions and steps as
``ingest.processor.Processor._prepare``: ``check_file`` and ``read_table`` (the *read* stage),
``validate`` against the shipped ``signals`` feed, then ``map_rows``. Its peer is a plain read of
the same file with the library a hand-written script would use (pandas, openpyxl, xlrd), timed in
a fresh interpreter with imports excluded, so a slow one can be cut off: no validation, no
mapping, so the peer is the floor, not a competitor.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from bench.signal_files import (
    CUSTOM_COLUMNS,
    ZONE,
    Written,
    csv_file,
    xls_file,
    xlsx_file,
    xlsx_inline_file,
)


@dataclass(frozen=True)
class StageTimes:
    """One run, in seconds; ``cpu`` is the process's CPU time for the run, less disturbed by
    other work on a shared machine than the wall clock."""

    read: float
    validate: float
    map: float
    total: float
    cpu: float
    rows: int
    good: int
    bad: int

    def best(self, other: StageTimes) -> StageTimes:
        """Each figure's minimum: the best of several runs."""
        return StageTimes(*(min(getattr(self, item.name), getattr(other, item.name))
                            for item in fields(self)))


def processor() -> Callable[[Path], StageTimes]:
    """The processor's steps for one file, bound to the shipped settings and ``signals`` feed.

    Raises ImportError where this checkout has no ingest package.
    """
    from core.config import Settings
    from ingest.rows import (
        DEFAULT_FEED,
        FileRejected,
        check_file,
        default_feeds,
        map_rows,
        read_table,
    )

    # Not from the package: once ingest.rows.validate is loaded, the package's name is the module.
    from ingest.rows.validate import validate

    settings = Settings()
    feed = default_feeds()[DEFAULT_FEED]

    def run(path: Path) -> StageTimes:
        gc.collect()
        cpu = time.process_time()
        started = time.perf_counter()
        problem = check_file(path, settings.server.max_upload_bytes, settings.server.allowed_extensions)
        if problem:
            raise FileRejected(problem)
        table = read_table(path)
        read = time.perf_counter()
        checked = validate(table, feed, CUSTOM_COLUMNS, ZONE, settings.post.max_bad_row_share)
        validated = time.perf_counter()
        if checked.file_error:
            raise FileRejected(checked.file_error)
        mapped = map_rows(feed, checked, ZONE)
        done = time.perf_counter()
        good = len(mapped)
        return StageTimes(read=read - started, validate=validated - read, map=done - validated,
                          total=done - started, cpu=time.process_time() - cpu,
                          rows=checked.row_count, good=good, bad=checked.row_count - good)

    return run


def best_of(run: Callable[[Path], StageTimes], path: Path, repeats: int) -> StageTimes:
    """Best of ``repeats`` for each stage; ``total`` is the best whole run, not the sum of bests."""
    best = run(path)
    for _ in range(repeats - 1):
        best = best.best(run(path))
    return best


@dataclass(frozen=True)
class Peer:
    """A plain read of a file by a well-known library: ``read`` leaves the row count in ``n``."""

    name: str
    setup: str
    read: str


PEERS = {
    "csv": Peer("pandas.read_csv (plain read)", "import pandas",
                "n = len(pandas.read_csv(path, dtype=str, keep_default_na=False))"),
    "xlsx": Peer("openpyxl read-only (plain read)", "import openpyxl",
                 "book = openpyxl.load_workbook(path, read_only=True, data_only=True)\n"
                 "n = sum(1 for _ in book.worksheets[0].iter_rows(values_only=True)) - 1"),
    "xls": Peer("xlrd (plain read)", "import xlrd",
                "sheet = xlrd.open_workbook(path).sheet_by_index(0)\n"
                "n = len([sheet.row_values(number) for number in range(1, sheet.nrows)])"),
}

PEER_SCRIPT = """
import sys, time
path = sys.argv[1]
{setup}
started, cpu = time.perf_counter(), time.process_time()
{read}
print(time.perf_counter() - started, time.process_time() - cpu, n)
"""


@dataclass(frozen=True)
class PeerRead:
    seconds: float
    cpu: float
    rows: int


def peer_read(peer: Peer, path: Path, timeout: float | None = None) -> PeerRead:
    """One timed read; raises ``subprocess.TimeoutExpired`` past ``timeout`` seconds."""
    script = PEER_SCRIPT.format(setup=peer.setup, read=peer.read)
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                            timeout=timeout, check=True)
    seconds, cpu, rows = result.stdout.split()
    return PeerRead(float(seconds), float(cpu), int(rows))


@dataclass(frozen=True)
class SignalFormat:
    file_name: str
    write: Callable[[Path, int], Written]
    peer: Peer


FORMATS = {
    "csv": SignalFormat("signals.csv", csv_file, PEERS["csv"]),
    "xlsx": SignalFormat("signals.xlsx", xlsx_file, PEERS["xlsx"]),
    "xlsx-inline": SignalFormat("signals-inline.xlsx", xlsx_inline_file, PEERS["xlsx"]),
    "xls": SignalFormat("signals.xls", xls_file, PEERS["xls"]),
}
