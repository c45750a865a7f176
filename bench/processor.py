"""Case 6: the processor (read + validate + map of a 5 MB signal file) and the embedded API.

The processor runs here, in the bench process, with the same functions and steps as
``ingest.processor.Processor._prepare``: the file check, ``read_table``, ``validate`` against the
tenant's default ``signals`` feed, then ``map_row`` for every good row. Its peer is a plain read
of the same file with the library a hand-written script would use (pandas, openpyxl, xlrd): no
validation, no mapping, so the peer is the floor, not a competitor.

The API part posts signals to the running daemon's embedded API with httpx, its rate limit off.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from bench.context import BenchContext
from bench.errors import NotAvailable
from bench.ledger_client import HTTP_TIMEOUT_SECONDS, api_base, auth, create_calls, tenant_token
from bench.our_server import TENANT
from bench.plan import MB
from bench.runner import Measure, Outcome, Side
from bench.signal_files import call_transaction_id, csv_file, xls_file, xlsx_file
from bench.stats import Row

# Signals of the benchmark files spread over this many calls.
CALLS = 100
ZONE = ZoneInfo("America/Los_Angeles")


@dataclass(frozen=True)
class Format:
    extension: str
    write: Callable[[Path, int, int], int]
    peer_name: str
    peer_read: Callable[[Path], int]


def _pandas_csv(path: Path) -> int:
    import pandas

    return len(pandas.read_csv(path, dtype=str, keep_default_na=False))


def _openpyxl_xlsx(path: Path) -> int:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        return sum(1 for _ in book.worksheets[0].iter_rows(values_only=True)) - 1
    finally:
        book.close()


def _xlrd_xls(path: Path) -> int:
    import xlrd

    sheet = xlrd.open_workbook(str(path)).sheet_by_index(0)
    return len([sheet.row_values(number) for number in range(1, sheet.nrows)])


FORMATS = (
    Format("csv", csv_file, "pandas.read_csv (plain read)", _pandas_csv),
    Format("xlsx", xlsx_file, "openpyxl read-only (plain read)", _openpyxl_xlsx),
    Format("xls", xls_file, "xlrd (plain read)", _xlrd_xls),
)


def case_6(context: BenchContext) -> list[Measure]:
    measures = [_file_measure(context, spec) for spec in FORMATS]
    measures.append(_api_measure(context))
    return measures


def _file_measure(context: BenchContext, spec: Format) -> Measure:
    size = context.plan.signal_file_bytes
    row = Row(key=f"6.{spec.extension}", case=6,
              title=f"{size / MB:g} MB {spec.extension.upper()} signal file: read + validate + map",
              variant="in process", unit="s", higher_is_better=False, peer_name=spec.peer_name)
    try:
        prepare = _processor()
    except ImportError as exc:
        row.unavailable = f"ingest: {exc}"
        return Measure(row, None, None)
    folder = context.scratch / "signals"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"signals.{spec.extension}"
    rows = spec.write(path, size, CALLS)
    # One unrecorded read each, so neither side's first run pays for imports and cold caches.
    prepare(path)
    spec.peer_read(path)

    async def ours() -> Outcome:
        start = time.perf_counter()
        good, bad = prepare(path)
        elapsed = time.perf_counter() - start
        return Outcome(elapsed, errors=bad, note=f"{good:,} rows, {good / elapsed:,.0f} rows/s")

    async def peer() -> Outcome:
        start = time.perf_counter()
        count = spec.peer_read(path)
        elapsed = time.perf_counter() - start
        return Outcome(elapsed, errors=abs(count - rows), note=f"{count / elapsed:,.0f} rows/s")

    return Measure(row, Side("ours", ours), Side(spec.peer_name, peer))


def _processor() -> Callable[[Path], tuple[int, int]]:
    """Read, validate and map one file as the processor does; (good rows, bad rows).

    Mapping goes through ``map_rows`` (a column at a time) where ingest has it, else row by row
    through ``map_row``, whichever the processor of this checkout uses.
    """
    from core.config import Settings
    from ingest import mapping
    from ingest.errors import FileRejected
    from ingest.feeds import DEFAULT_FEED, default_feeds
    from ingest.readers import read_table
    from ingest.validate import Validation, check_file, validate

    defaults = Settings()
    feed = default_feeds()[DEFAULT_FEED]

    def map_good_rows(checked: Validation) -> tuple[int, int]:
        if hasattr(mapping, "map_rows"):
            mapped = mapping.map_rows(feed, checked, ZONE)
            return len(mapped.requests), len(mapped.failures)
        good = failed = 0
        for result in checked.good:
            try:
                mapping.map_row(feed, result.values, ZONE)
            except ValueError:
                failed += 1
            else:
                good += 1
        return good, failed

    def prepare(path: Path) -> tuple[int, int]:
        problem = check_file(path, defaults.server.max_upload_bytes, defaults.server.allowed_extensions)
        if problem:
            raise FileRejected(problem)
        checked = validate(read_table(path), feed, [], ZONE, defaults.post.max_bad_row_share)
        if checked.file_error:
            raise FileRejected(checked.file_error)
        good, failed = map_good_rows(checked)
        return good, len(checked.bad) + failed

    return prepare


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
