"""Case 6: the processor (read + validate + map of a 5 MB signal file) and the embedded API.

The file part is :mod:`bench.processor_stages` on every file of :mod:`bench.signal_files`, its
peer's plain read alternating with it in the same run. The API part posts signals to the running
daemon's embedded API with httpx, its rate limit off.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import httpx

from bench.context import BenchContext
from bench.errors import NotAvailable
from bench.ledger_client import (
    HTTP_TIMEOUT_SECONDS,
    api_base,
    auth,
    create_calls,
    tenant_token,
)
from bench.our_server import TENANT
from bench.plan import MB
from bench.processor_stages import (
    FORMATS,
    SignalFormat,
    StageTimes,
    peer_read,
    processor,
)
from bench.runner import Measure, Outcome, Side
from bench.signal_files import CALLS, call_transaction_id
from bench.stats import Row

LABELS = {
    "csv": "CSV",
    "xlsx": "XLSX (as Excel saves it)",
    "xlsx-inline": "XLSX (as openpyxl writes it)",
    "xls": "XLS",
}


def case_6(context: BenchContext) -> list[Measure]:
    measures = [_file_measure(context, name, spec) for name, spec in FORMATS.items()]
    measures.append(_api_measure(context))
    return measures


def _file_measure(context: BenchContext, name: str, spec: SignalFormat) -> Measure:
    size = context.plan.signal_file_bytes
    row = Row(key=f"6.{name}", case=6,
              title=f"{size / MB:g} MB {LABELS[name]} signal file: read + validate + map",
              variant="in process", unit="s", higher_is_better=False, peer_name=spec.peer.name)
    try:
        prepare = processor()
    except ImportError as exc:
        row.unavailable = f"ingest: {exc}"
        return Measure(row, None, None)
    folder = context.scratch / "signals"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.file_name
    try:
        written = spec.write(path, size)
    except ImportError as exc:
        row.unavailable = f"{exc.name} is not installed"
        return Measure(row, None, None)
    # One unrecorded read each, so neither side's first run pays for imports and cold caches.
    prepare(path)
    peer_read(spec.peer, path)

    async def ours() -> Outcome:
        times = prepare(path)
        return Outcome(times.total, errors=_unexpected(times, written.rows, written.bad),
                       note=_stages_note(times))

    peer_cpu = [0.0]

    async def peer() -> Outcome:
        read = peer_read(spec.peer, path)
        peer_cpu[0] += read.cpu
        return Outcome(read.seconds, errors=abs(read.rows - written.rows),
                       note=f"{read.rows / read.seconds:,.0f} rows/s")

    # The peer's interpreter reports the CPU time of its read alone, imports excluded.
    peer_side = Side(spec.peer.name, peer, cpu_seconds=lambda: peer_cpu[0])
    return Measure(row, Side("ours", ours), peer_side)


def _unexpected(times: StageTimes, rows: int, planted: int) -> int:
    """Rows missed, and bad rows other than the ones the generator spoiled on purpose."""
    return abs(times.rows - rows) + abs(times.bad - planted)


def _stages_note(times: StageTimes) -> str:
    return (f"{times.good:,} good + {times.bad:,} bad rows, {times.rows / times.total:,.0f} rows/s "
            f"(read {times.read:.2f} s, validate {times.validate:.2f} s, map {times.map:.2f} s)")


def _api_measure(context: BenchContext) -> Measure:
    plan = context.plan
    row = Row(key="6.api", case=6, title=f"embedded Signal API: {plan.api_posts:,} signal posts, "
                                         f"{plan.api_concurrency} at a time, rate limit off",
              variant="httpx", unit="posts/s", higher_is_better=True, peer_name="—")
    server = context.ours
    if server is None:
        row.unavailable = context.ours_missing
        return Measure(row, None, None)
    try:
        token = tenant_token(server, TENANT)
        create_calls(server, token, CALLS)
    except NotAvailable as exc:
        row.unavailable = str(exc)
        return Measure(row, None, None)
    runs = itertools.count()

    async def ours() -> Outcome:
        return await _post_signals(api_base(server), token, plan.api_posts, plan.api_concurrency,
                                   prefix=f"api{next(runs)}-")

    side = Side("ours", ours, cpu_seconds=server.endpoint.cpu_seconds)
    return Measure(row, side, None)


async def _post_signals(base: str, token: str, count: int, concurrency: int, prefix: str) -> Outcome:
    """New signals (fresh partner ids), ``concurrency`` requests in flight; posts/s of 2xx answers."""
    statuses: dict[int, int] = {}
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers=auth(token), limits=limits,
                                 timeout=HTTP_TIMEOUT_SECONDS) as client:

        async def post(index: int) -> None:
            body: dict[str, Any] = {
                "search": {"transaction_id": call_transaction_id(index % CALLS)},
                "signal": {"name": "Sale", "partner_unique_id": f"{prefix}{index}", "sale_amount": "12.50"},
            }
            async with gate:
                response = await client.post("/transactions/signals.json", json=body)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        start = time.perf_counter()
        results = await asyncio.gather(*(post(index) for index in range(count)), return_exceptions=True)
        elapsed = time.perf_counter() - start
    ok = sum(number for status, number in statuses.items() if 200 <= status < 300)
    failed = count - ok
    raised = sum(isinstance(result, BaseException) for result in results)
    note = ", ".join(f"HTTP {status}: {number}" for status, number in sorted(statuses.items()))
    return Outcome(ok / elapsed, errors=failed, note=note + (f", {raised} raised" if raised else ""))
