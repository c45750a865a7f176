"""What grows with history (issue 15): staging one upload, listing uploads, picking the next
outbox batch and one scan of ``in/``, each timed against a data dir holding N of what grows.

``python -m bench.growth --sizes 1000,10000,100000`` fills a fresh data dir per size directly
through the stores (cheap argon2: only the fill logs no one in), then prints one table, each
figure the median of ``--repeats`` (3). Figures, not pass/fail; a shared machine moves them.

- *stage one*: a scan that finds one new file, with N past uploads of that tenant (finished,
  their paths cycling over :data:`PATHS` names, so a path has N / 10 past uploads); the new
  file has one of those names and supersedes the previous repeat's, still waiting.
- *uploads 50*: ``Ingest.upload_states(tenant, limit=50)``, what ``sftpctl uploads --limit 50``
  prints, on the same data dir.
- *first batch*: picking the first outbox batch of a tenant with N pending rows (a body of about
  300 bytes each): ``Outbox.due`` and ``Outbox.page`` where they exist, else
  :meth:`Outbox.pending` (the code before paging); its peak of Python memory by ``tracemalloc``, in a repeat of its own.
- *scan*: N files (never empty) over :data:`SCAN_TENANTS` tenants' ``in/``, each the content of
  its finished upload: a scanner's first pass (as after a restart: every file looked up) and a
  repeat pass (the daemon's every ``scan_interval_seconds``), with the longest the event loop
  waited for a 10 ms tick while the pass ran in a thread (``asyncio.to_thread``, as the daemon
  does).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.clock import now_iso
from core.config import Settings
from core.db import Database
from core.passwords import PasswordHasher
from core.tenants import TenantStore, open_state
from core.uploads import UploadState, UploadStore
from ingest.delivery.outbox import Outbox, OutboxItem, QueuedRows
from ingest.pipeline import Ingest, UploadStatus
from ingest.staging import Scanner
from ingest.store import StagedUpload, Trigger

TENANT = "acme"
PASSWORD = "growth-bench-password-1"
PATHS = 10
SCAN_TENANTS = 10
TICK_SECONDS = 0.01
AN_HOUR = 3600.0
BODY = ('{"signal_name":"purchase","signal_timestamp":"2026-11-30T12:00:00Z","customer_id":"%08d",'
        '"source":"growth bench","value":"1234.56","custom_data":{"channel":"web","campaign":"winter",'
        '"store":"0042","note":"a body of about the size a mapped signal row has, padded to it"}}')


@dataclass
class Bench:
    """One data dir and its stores."""

    settings: Settings
    db: Database
    tenants: TenantStore
    uploads: UploadStore
    ingest: Ingest

    @classmethod
    def open(cls, root: Path) -> Bench:
        settings = Settings(data_dir=root / "var").replace(
            server__keys_dir=root / "keys", passwords__argon2_memory_kib=1024, passwords__argon2_time_cost=1,
        )
        db = open_state(settings.state_db)
        tenants = TenantStore(db, settings.tenants_dir, PasswordHasher(settings.passwords))
        uploads = UploadStore(db)
        return cls(settings, db, tenants, uploads, Ingest(settings, db, tenants, uploads))

    def close(self) -> None:
        self.db.close()


def fill_history(bench: Bench, count: int) -> None:
    """``count`` finished uploads of :data:`TENANT`, each staged and posted, in one transaction."""
    bench.tenants.add(TENANT, "ops@acme.example", PASSWORD)
    staged = bench.ingest.staged
    with bench.db.transaction():
        for number in range(count):
            upload = bench.uploads.record(TENANT, f"in/daily-{number % PATHS}.csv", 100, f"{number:064x}")
            staged.add(StagedUpload(
                upload_id=upload.id, tenant=TENANT, path=upload.path, feed="signals", snapshot="/nonexistent",
                sha256=upload.sha256, staged_at=now_iso(), state=UploadState.STAGED.value, error="",
                run_id=None, rows_total=1, report=None, finished_at=None,
            ))
            staged.finish(upload.id, UploadState.POSTED, None, "1 posted", (1, 0, 0))


def stage_one(bench: Bench, repeat: int) -> Callable[[], object]:
    """A new version of ``in/daily-3.csv`` (a size of its own, an hour old) and the scan to find it."""
    inbox = bench.tenants.folders(TENANT).inbox
    path = inbox / "daily-3.csv"
    path.write_text("signal_name,signal_timestamp,customer_id\n" + "purchase,2026-11-30T12:00:00Z,1\n" * (repeat + 1))
    old = time.time() - AN_HOUR
    os.utime(path, (old, old))
    scanner = Scanner(bench.settings, bench.tenants, bench.uploads, bench.ingest.stager)

    def scan() -> object:
        found = scanner.scan()
        assert len(found) == 1, found
        return found

    return scan


def fill_outbox(bench: Bench, count: int) -> None:
    """``count`` pending rows of one processing file of :data:`TENANT`."""
    bench.tenants.add(TENANT, "ops@acme.example", PASSWORD)
    upload = bench.uploads.record(TENANT, "in/big.csv", 100, "0" * 64)
    staged = bench.ingest.staged
    run = bench.ingest.run_store.start(Trigger.MANUAL, None, TENANT, os.getpid())
    rows = QueuedRows()
    url = bench.settings.embedded_api_base + "/signals"
    for number in range(count):
        rows.append(number + 2, "signal", "POST", url, None, f"key-{number}", BODY % number)
    with bench.db.transaction():
        staged.add(StagedUpload(
            upload_id=upload.id, tenant=TENANT, path=upload.path, feed="signals", snapshot="/nonexistent",
            sha256=upload.sha256, staged_at=now_iso(), state=UploadState.STAGED.value, error="", run_id=None,
            rows_total=count, report=None, finished_at=None,
        ))
        staged.claim(upload.id, run.id, count, f"{count} rows queued")
        bench.ingest.outbox.enqueue(upload.id, run.id, TENANT, rows, [])


def first_batch(outbox: Outbox) -> list[OutboxItem]:
    """What a delivery pass reads before its first row: where paging exists, the count of the
    rows due (``Outbox.due``) and the first page; before it, every pending row."""
    page: Callable[..., list[OutboxItem]] | None = getattr(outbox, "page", None)
    if page is not None:
        outbox.due([TENANT])
        return page([TENANT])
    return outbox.pending([TENANT])


def fill_files(bench: Bench, count: int) -> None:
    """``count`` files over :data:`SCAN_TENANTS` tenants' ``in/``, an hour old, each recorded as
    a posted upload of its content (so a scan has nothing to stage)."""
    old = time.time() - AN_HOUR
    with bench.db.transaction():
        for index in range(SCAN_TENANTS):
            name = f"tenant{index:02d}"
            bench.tenants.add(name, f"ops@{name}.example", PASSWORD)
            inbox = bench.tenants.folders(name).inbox
            for number in range(index, count, SCAN_TENANTS):
                path = inbox / f"file-{number:07d}.csv"
                path.write_bytes(b"signal_name\npurchase\n")
                os.utime(path, (old, old))
                upload = bench.uploads.record(name, f"in/{path.name}", 21, f"{number:064x}")
                bench.uploads.set_state(upload.id, UploadState.POSTED, "1 posted")


def loop_lag(work: Callable[[], object]) -> tuple[float, float]:
    """``work`` in a thread as the daemon runs a scan; its seconds and the event loop's longest
    wait past a 10 ms tick meanwhile."""
    async def main() -> tuple[float, float]:
        worst = 0.0
        started = time.perf_counter()
        task = asyncio.create_task(asyncio.to_thread(work))
        while not task.done():
            before = time.perf_counter()
            await asyncio.sleep(TICK_SECONDS)
            worst = max(worst, time.perf_counter() - before - TICK_SECONDS)
        await task
        return time.perf_counter() - started, worst

    return asyncio.run(main())


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(size: int, repeats: int) -> dict[str, Any]:
    row: dict[str, Any] = {"size": size}
    with tempfile.TemporaryDirectory(prefix="growth-") as root:
        bench = Bench.open(Path(root))
        try:
            fill_history(bench, size)
            row["stage one"] = statistics.median(timed(stage_one(bench, repeat)) for repeat in range(repeats))
            def listing() -> list[UploadStatus]:
                return bench.ingest.upload_states(TENANT, limit=50)

            assert len(listing()) == 50
            row["uploads 50"] = statistics.median(timed(listing) for _ in range(repeats))
        finally:
            bench.close()
    with tempfile.TemporaryDirectory(prefix="growth-") as root:
        bench = Bench.open(Path(root))
        try:
            fill_outbox(bench, size)
            outbox = bench.ingest.outbox
            row["first batch"] = statistics.median(timed(lambda: first_batch(outbox)) for _ in range(repeats))
            row["batch rows"] = len(first_batch(outbox))
            row["batch MiB"] = peak_bytes(lambda: first_batch(outbox)) / 2**20
        finally:
            bench.close()
    with tempfile.TemporaryDirectory(prefix="growth-") as root:
        bench = Bench.open(Path(root))
        try:
            fill_files(bench, size)
            fresh = [loop_lag(Scanner(bench.settings, bench.tenants, bench.uploads, bench.ingest.stager).scan)
                     for _ in range(repeats)]
            scanner = Scanner(bench.settings, bench.tenants, bench.uploads, bench.ingest.stager)
            scanner.scan()
            again = [loop_lag(scanner.scan) for _ in range(repeats)]
            row["scan first"] = statistics.median(seconds for seconds, _ in fresh)
            row["scan again"] = statistics.median(seconds for seconds, _ in again)
            row["loop lag"] = max(lag for _, lag in fresh + again)
        finally:
            bench.close()
    return row


COLUMNS = [
    ("size", "N", "{:,}"),
    ("stage one", "stage one upload (s)", "{:.4f}"),
    ("uploads 50", "uploads --limit 50 (s)", "{:.4f}"),
    ("first batch", "first outbox batch (s)", "{:.4f}"),
    ("batch rows", "its rows", "{:,}"),
    ("batch MiB", "its peak (MiB)", "{:.1f}"),
    ("scan first", "scan, first pass (s)", "{:.3f}"),
    ("scan again", "scan, repeat pass (s)", "{:.3f}"),
    ("loop lag", "worst loop lag in a scan (ms)", "{:.0f}"),
]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [fmt.format(row[key] * (1000 if key == "loop lag" else 1)) for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated N (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is shown")
    args = parser.parse_args()
    rows = []
    for size in (int(text) for text in args.sizes.split(",")):
        started = time.perf_counter()
        rows.append(measure(size, args.repeats))
        print(f"N={size:,}: measured in {time.perf_counter() - started:.0f} s (fill included)", flush=True)
    print(f"load average before the last size: {os.getloadavg()[0]:.2f}")
    print(table(rows))


if __name__ == "__main__":
    main()
