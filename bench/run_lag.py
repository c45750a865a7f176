"""The event loop of a process while its run delivers a 5 MB signal file (issue 15's growth goal:
no run stalls SFTP logins or the API by more than 100 ms).

A data dir is made as case 7 makes it (a tenant with the custom data fields, the file's calls in
the ledger, a 5 MB CSV of signals in ``in/``); then ``Ingest.run`` runs in this process's event
loop, as the daemon's scheduled run does, beside a task that sleeps 10 ms at a time. Each wake-up
later than asked is the loop's lag: how long a login or an API request would have waited to be
looked at. Figures are the median of ``--repeats`` runs of the worst, 99th percentile and median
lag, each on a fresh copy of the data dir.

Usage: ``python -m bench.run_lag [--size BYTES] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.signal_files import CALLS, CUSTOM_COLUMNS, START, call_transaction_id, csv_file

TENANT = "lag"
TICK_SECONDS = 0.01
REPOSITORY = Path(__file__).resolve().parent.parent


def make_data_dir(data: Path, size: int) -> int:
    """A data dir holding ``size`` bytes of signals waiting in the tenant's ``in/``; its rows."""
    from core.config import Settings
    from ledger.requests import LedgerRequests
    from ledger.store import LedgerStore
    from service.context import Context

    def sftpctl(*args: str, stdin: str | None = None) -> None:
        subprocess.run([sys.executable, "-m", "service.sftpctl", "--data-dir", str(data), *args], input=stdin,
                       text=True, capture_output=True, check=True, cwd=REPOSITORY)

    sftpctl("tenant", "add", TENANT, "--email", "ops@example.com", "--password-stdin",
            stdin="a-long-password-for-the-lag-bench\n")
    sftpctl("fields", "add", TENANT, *CUSTOM_COLUMNS)
    settings = Settings().replace(data_dir=data)
    context = Context(settings)
    store = LedgerStore.open(settings.ledger_location)
    try:
        requests = LedgerRequests(settings.api, context.tenants, store)
        tenant = context.tenants.get(TENANT)
        for index in range(CALLS):
            requests.call(tenant, {"call": {"external_id": call_transaction_id(index),
                                            "transaction_id": call_transaction_id(index),
                                            "start_time": START.isoformat()}})
    finally:
        store.close()
        context.close()
    inbox = data / "tenants" / TENANT / "in"
    written = csv_file(inbox / "signals.csv", size)
    settled = time.time() - 120
    os.utime(inbox / "signals.csv", (settled, settled))
    return written.rows


async def measure(data: Path) -> tuple[float, list[float]]:
    """The run's seconds, and every tick's lag meanwhile."""
    from core.config import Settings
    from service.context import Context

    context = Context(Settings().replace(data_dir=data))
    lags: list[float] = []
    running = True

    async def tick() -> None:
        while running:
            asked = time.perf_counter()
            await asyncio.sleep(TICK_SECONDS)
            lags.append(time.perf_counter() - asked - TICK_SECONDS)

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await context.ingest.run(tenant=TENANT)
    took = time.perf_counter() - started
    running = False
    await ticker
    await context.ingest.aclose()
    context.close()
    return took, lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="run-lag-") as folder:
        original = Path(folder) / "original"
        rows = make_data_dir(original, options.size)
        results = []
        for repeat in range(options.repeats):
            copy = Path(folder) / f"run-{repeat}"
            shutil.copytree(original, copy)
            took, lags = asyncio.run(measure(copy))
            lags.sort()
            results.append((took, lags[-1], lags[int(len(lags) * 0.99)], statistics.median(lags)))
            shutil.rmtree(copy)
    took, worst, p99, median = (statistics.median(column) for column in zip(*results))
    print(f"{rows:,} rows, {options.repeats} runs (medians): run {took:.2f} s; loop lag worst {worst * 1000:.0f} ms,"
          f" p99 {p99 * 1000:.0f} ms, median {median * 1000:.1f} ms")


if __name__ == "__main__":
    main()
