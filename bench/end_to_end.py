"""Case 7: what a customer waits for. Upload a file, ``sftpctl run``, report in ``out/``.

Two rows: a 5 MB signal file dropped in ``in/``, and a calls file of 20,000 rows in ``in/calls/``
(the tenant's default ``calls`` feed, one new call a row). Each row's peer is ``sftpctl check`` of
a file of the same size and shape against the same feed, in the same run: reading, validating and
mapping it in the limited child with nothing delivered, so the ratio says what delivery and
reporting cost on top of reading (issue 12: at most 3x for both, and under 5 s for the signals).

It runs against a tenant of its own, so the junk files of the upload cases (random bytes) never
reach its processing run. Each run uploads a fresh file whose partner ids (signals) or customer
ids (calls) are new, so every row creates a signal or a call rather than finding one already
there. The clock runs from the start of the upload to the end of ``sftpctl run``, which returns
once the report is written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import resource
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.call_files import calls_csv_file
from bench.clients import PINNED, AsyncsshClient
from bench.context import BenchContext
from bench.endpoint import Endpoint
from bench.errors import NotAvailable
from bench.ledger_client import create_calls, tenant_token
from bench.our_server import REPOSITORY, TENANT_EMAIL, OurServer
from bench.plan import MB
from bench.runner import Measure, Outcome, Side
from bench.signal_files import CALLS, CUSTOM_COLUMNS, Written, csv_file
from bench.stats import Row

E2E_TENANT = "benche2e"
CALLS_FEED = "calls"
# Issue 12: "20,000 calls from a calls file"; --quick writes a tenth.
CALL_ROWS = 20_000
QUICK_CALL_ROWS = 2_000
STAGE_POLL_SECONDS = 0.05
STAGE_TIMEOUT_SECONDS = 120.0
RUN_TIMEOUT_SECONDS = 3600.0
RECEIVED = "received"
ERROR_TEXT_CHARS = 200

# Writes a file of the row's kind to the path; the prefix makes its signals or calls new.
FileWriter = Callable[[Path, str], Written]


@dataclass(frozen=True)
class RowFile:
    """What the two rows differ in: the feed folder under ``in/``, the feed ``check`` uses, the files."""

    label: str
    folder: str
    check_feed: str | None
    write: FileWriter

    def remote(self, name: str) -> str:
        return f"{self.folder}/{name}" if self.folder else name


def case_7(context: BenchContext) -> list[Measure]:
    size = context.plan.signal_file_bytes
    calls = QUICK_CALL_ROWS if context.plan.quick else CALL_ROWS
    signals_row = Row(key="7.e2e", case=7,
                      title=f"end to end: upload a {size / MB:g} MB CSV signal file, `sftpctl run`, report in out/",
                      variant=f"asyncssh upload, {PINNED.label}", unit="s", higher_is_better=False,
                      peer_name="sftpctl check")
    calls_row = Row(key="7.calls", case=7,
                    title=(f"end to end: upload a CSV calls file of {calls:,} calls to in/calls/, `sftpctl run`,"
                           " report in out/"),
                    variant=f"asyncssh upload, {PINNED.label}", unit="s", higher_is_better=False,
                    peer_name="sftpctl check --feed calls")
    rows = (signals_row, calls_row)
    server = context.ours
    if server is None:
        return [_unavailable(row, context.ours_missing) for row in rows]
    try:
        endpoint = _e2e_tenant(server)
        create_calls(server, tenant_token(server, E2E_TENANT), CALLS)
    except NotAvailable as exc:
        return [_unavailable(row, str(exc)) for row in rows]
    folder = context.scratch / "e2e"
    folder.mkdir(parents=True, exist_ok=True)
    runs = min(context.plan.runs, context.plan.e2e_runs)
    signals = RowFile("e2e", "", None, lambda path, prefix: csv_file(path, size, CALLS, prefix=prefix))
    call_file = RowFile("calls", CALLS_FEED, CALLS_FEED, lambda path, prefix: calls_csv_file(path, calls, prefix))
    return [_measure(row, feed, server, endpoint, folder, runs)
            for row, feed in ((signals_row, signals), (calls_row, call_file))]


def _unavailable(row: Row, reason: str | None) -> Measure:
    row.unavailable = reason
    return Measure(row, None, None)


def _measure(row: Row, feed: RowFile, server: OurServer, endpoint: Endpoint, folder: Path, runs: int) -> Measure:
    """Ours (upload, wait until staged, ``sftpctl run``, report in out/) and its ``sftpctl check`` peer."""
    outbox = server.data_dir / "tenants" / E2E_TENANT / "out"
    numbers = itertools.count(1)
    client = AsyncsshClient()

    async def run() -> Outcome:
        number = next(numbers)
        name = f"{feed.label}{number:03d}.csv"
        local = folder / name
        written = feed.write(local, f"E{number}-")
        if feed.folder:
            await _make_feed_folder(client, endpoint, feed.folder)
        rows = written.rows - written.bad
        start = time.perf_counter()
        await client.upload(endpoint, PINNED, [(local, feed.remote(name))])
        await _wait_until_staged(server, feed.remote(name))
        finished, summary = await _sftpctl_run(server)
        elapsed = time.perf_counter() - start
        reports = sorted(outbox.rglob(f"{local.stem}-*-report.csv"))
        run_summary = summary.get("run")
        posted = run_summary.get("posted") if isinstance(run_summary, dict) else None
        errors = int(not finished) + int(not reports) + (rows - posted if isinstance(posted, int) else 0)
        note = (f"{written.rows:,} rows ({written.bad} spoiled on purpose), "
                f"{written.rows / elapsed:,.0f} rows/s; posted {posted}")
        if not reports:
            note += "; no report in out/"
        if not finished:
            note += f"; sftpctl run failed: {summary.get('error', '')}"[:ERROR_TEXT_CHARS]
        return Outcome(elapsed, errors=errors, note=note)

    def cpu_seconds() -> float:
        """The daemon (upload, staging, API) plus ``sftpctl run`` (a reaped child of this process)."""
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return server.endpoint.cpu_seconds() + children.ru_utime + children.ru_stime

    sample = folder / f"check-{feed.label}.csv"
    checked = feed.write(sample, "C-")
    feed_option = ("--feed", feed.check_feed) if feed.check_feed else ()

    async def check() -> Outcome:
        start = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.sftpctl", "--config", str(server.config), "check", *feed_option,
            E2E_TENANT, str(sample), cwd=REPOSITORY, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_SECONDS)
        elapsed = time.perf_counter() - start
        # 1: the rows spoiled on purpose would be rejected; anything else is a failed check.
        failed = process.returncode not in (0, 1)
        note = f"{checked.rows:,} rows" + (f"; check failed: {stderr.decode(errors='replace')[-ERROR_TEXT_CHARS:]}"
                                           if failed else "")
        return Outcome(elapsed, errors=int(failed), note=note)

    def check_cpu_seconds() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return children.ru_utime + children.ru_stime

    row.variant += f" ({runs} run{'s' if runs != 1 else ''})"
    return Measure(row, Side("ours", run, cpu_seconds=cpu_seconds),
                   Side(row.peer_name, check, cpu_seconds=check_cpu_seconds), runs=runs)


def _e2e_tenant(server: OurServer) -> Endpoint:
    added = server.sftpctl("tenant", "add", E2E_TENANT, "--email", TENANT_EMAIL, "--password-stdin",
                           stdin=server.endpoint.password + "\n")
    if added.returncode != 0:
        reason = added.stderr.strip()[-ERROR_TEXT_CHARS:]
        raise NotAvailable(f"sftpctl tenant add {E2E_TENANT} failed: {reason}")
    fields = server.sftpctl("fields", "add", E2E_TENANT, *CUSTOM_COLUMNS)
    if fields.returncode != 0:
        reason = fields.stderr.strip()[-ERROR_TEXT_CHARS:]
        raise NotAvailable(f"sftpctl fields add {E2E_TENANT} failed: {reason}")
    inbox = server.data_dir / "tenants" / E2E_TENANT / "in"
    return dataclasses.replace(server.endpoint, user=E2E_TENANT, inbox=inbox)


async def _make_feed_folder(client: AsyncsshClient, endpoint: Endpoint, folder: str) -> None:
    """``mkdir in/calls``, once, as a customer does before the first file of a feed."""
    if (endpoint.inbox / folder).is_dir():
        return
    async with await client.connect(endpoint, PINNED) as connection, connection.start_sftp_client() as sftp:
        await sftp.mkdir(endpoint.remote(folder))


async def _wait_until_staged(server: OurServer, name: str) -> None:
    """The daemon stages an upload in the background; a run started before that would miss it."""
    deadline = time.monotonic() + STAGE_TIMEOUT_SECONDS
    database = server.data_dir / "state.db"
    while time.monotonic() < deadline:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            row = connection.execute(
                "SELECT state FROM uploads WHERE tenant = ? AND path LIKE ? ORDER BY id DESC LIMIT 1",
                (E2E_TENANT, f"%/{name}"),
            ).fetchone()
        if row is not None and row[0] != RECEIVED:
            return
        await asyncio.sleep(STAGE_POLL_SECONDS)
    raise TimeoutError(f"{name} was not staged within {STAGE_TIMEOUT_SECONDS:g} s")


async def _sftpctl_run(server: OurServer) -> tuple[bool, dict[str, object]]:
    """Run ``sftpctl run``; finished means the run completed, whatever its rows became.

    ``sftpctl run`` exits 1 when any row was rejected, and the file has rows spoiled on purpose,
    so the exit code alone cannot tell a completed run from a failed one.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.sftpctl", "--config", str(server.config), "--json",
        "run", "--tenant", E2E_TENANT, cwd=REPOSITORY,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_SECONDS)
    try:
        summary = json.loads(stdout.decode() or "{}")
    except json.JSONDecodeError:
        summary = {}
    if not isinstance(summary, dict):
        summary = {}
    run = summary.get("run")
    finished = isinstance(run, dict) and run.get("status") == "finished"
    if not finished:
        summary.setdefault("error", stderr.decode(errors="replace").strip()[-ERROR_TEXT_CHARS:])
    return finished, summary
