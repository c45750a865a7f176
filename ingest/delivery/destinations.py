"""Destinations: "deliver these queued requests, and record one outcome per request".

Two implementations:

- :class:`RemoteSignalApi`: a Signal API over HTTP (a feed's ``[destination] url``, or the
  embedded API when in-process delivery is off). :class:`ingest.delivery.poster.Poster` does the
  work: pacing per token, retries, poison rows, 401.
- :class:`EmbeddedLedger`: the product's own ledger (``settings.ledger_location``: this data dir's
  ``ledger.db``, or the ``ledger`` schema of ``[database] url``), written through
  ``ledger.requests.LedgerRequests`` (the code the HTTP handlers call), many rows per ledger
  transaction, consecutive signals or calls of a tenant saved together, with no HTTP hop and no
  rate limit. Each row gets the status and message the HTTP API would answer. It never talks to
  another instance, and works the same whether or not the daemon runs (the database serialises
  it with the daemon's API). A stream of more than one chunk of batches is written by limited
  children, a chunk each (``ingest.delivery.ledger_writes``): the next chunks' children read
  theirs while one writes, and the ledger's work stays out of this process (the daemon's event
  loop). Bench case 7 (docs/BENCHMARKS.md): a 5 MB file of 26,842 signals from upload to report
  in about 5 s (before: one paced HTTP request per row, ~8 h; ~60 s with the limits off).

Durability: where the ledger and the outbox are schemas of one PostgreSQL database, a batch and
its outbox marks are one commit (``Database.beside``). On SQLite they are two files, so a batch is
two commits, the ledger's first and the outbox marks second. A crash between them leaves the
batch pending; the next run sends it again, and the ledger answers it from
``delivered_requests``, which remembers each queued request's answer (by outbox id and content
key) in the ledger transaction that applied it: the replay writes nothing and gets the first
answers (201 stays 201). Without that memory the ledger's own idempotency (an identical signal,
call or lookup row changes nothing) would still keep rows single, but a row corrected later in
the same batch would be corrected back and forth once more.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from core.config import Settings
from core.logs import get_logger
from core.tenants import TenantStore
from ingest.delivery.outbox import Outbox, OutboxItem
from ingest.delivery.poster import HTTP_UNAUTHORIZED, Delivery, Poster, PostReport, count_deliveries, record_deliveries
from ingest.sandbox import Limits, Worker, WorkerFailed, start_limited

if TYPE_CHECKING:
    from ingest.delivery.ledger_writes import Marks, WriteRow
    from ledger.auth import Gatekeeper
    from ledger.requests import LedgerRequests
    from ledger.store import LedgerStore

log = get_logger("ingest.destinations")

#: Batches written by one child at most: each child costs a fork, so a chunk of several batches
#: lets the next chunk's reading (on the other core) keep ahead of this one's writing.
READ_BATCHES = 4
#: Chunks read ahead of the one written: each child reads its chunk and opens the stores in
#: about the time the one before writes its own, so two keep the writing from waiting.
CHUNKS_AHEAD = 2
#: Remembered answers older than this are forgotten; a replay comes at the next run.
REMEMBER_SECONDS = 7 * 24 * 3600.0

After = Callable[[OutboxItem, Delivery], None]
TokenFor = Callable[[OutboxItem], str]
#: Queued requests a page at a time, oldest first; a destination asks for the next page when it
#: is ready for it, and stops asking when its report ends the stream (``PostReport.ends_stream``).
Pages = AsyncIterator[Sequence[OutboxItem]]


class Destination(Protocol):
    """Delivers queued requests, marks each in the outbox, and tells ``after`` of each one."""

    async def deliver(self, pages: Pages, token_for: TokenFor, after: After | None = None) -> PostReport: ...


class RemoteSignalApi:
    """A Signal API over HTTP, through the poster (pacing, retries, poison rows, 401).

    Paced per token at ``[post] rate_limit_requests`` per ``rate_limit_window_seconds`` by
    :mod:`ingest.delivery.ratelimit`, seeded from the ``ingest_sends`` log, so the limit holds
    across runs and processes; a 429 holds the token for its ``Retry-After`` without costing the
    row a try. Against the ledger's own limiter over HTTP (``bench/remote_pacing.py``), 100 per
    60 s: 99.8 % of the limit sustained over 5 minutes (99.5 % with 200 ms round trips), no 429.
    """

    def __init__(self, poster: Poster) -> None:
        self.poster = poster

    async def deliver(self, pages: Pages, token_for: TokenFor, after: After | None = None) -> PostReport:
        reports: list[PostReport] = []
        async for items in pages:  # each page once the one before is answered
            reports.append(await self.poster.post(items, token_for, after))
            if reports[-1].ends_stream:
                break
        return PostReport.merged(reports)


class EmbeddedLedger:
    """The data dir's own ledger, written in bulk: a small stream by this process, a larger one
    a chunk of batches per limited child (``ingest.delivery.ledger_writes``)."""

    def __init__(self, settings: Settings, tenants: TenantStore, outbox: Outbox,
                 batch_rows: int | None = None) -> None:
        """``batch_rows``: rows per ledger transaction (``[post] embedded_batch_rows``)."""
        self.settings = settings
        self.tenants = tenants
        self.outbox = outbox
        self.batch_rows = batch_rows or settings.post.embedded_batch_rows

    @staticmethod
    def takes(item: OutboxItem, embedded_base: str) -> bool:
        """True for a request queued for the embedded API (a feed without a URL of its own)."""
        return item.url.startswith(embedded_base + "/")

    async def deliver(self, pages: Pages, token_for: TokenFor, after: After | None = None) -> PostReport:
        report = PostReport()
        chunks = self._chunks(pages)
        chunk = await anext(chunks, None)
        if chunk is None:
            return report
        upcoming = await anext(chunks, None)
        here = _Here(self, token_for)
        forget: float | None = time.time() - REMEMBER_SECONDS
        started: list[_ChunkWriter] = []
        try:
            if upcoming is None:
                # A lone chunk is written here: a child would cost more than it saves.
                await asyncio.to_thread(here.forget, forget)
                await self._write_here(here, chunk, report, after)
                return report
            zones: dict[str, str] = {}
            for first in (chunk, upcoming):
                started.append(await self._writer(first, token_for, zones, forget))
                forget = None
            while started:
                # The children of the next chunks read (and open the stores) while this one's
                # writes; the next is told to go as soon as this one's last batch is committed.
                # This one is told first, so starting them never holds up its writing.
                writer = started[0]
                await asyncio.to_thread(writer.go, report)
                while len(started) < 1 + CHUNKS_AHEAD and (chunk := await anext(chunks, None)) is not None:
                    started.append(await self._writer(chunk, token_for, zones, None))
                await self._write(writer, started[1] if len(started) > 1 else None, here, report, after)
                await asyncio.to_thread(writer.stop, report)  # reaped: done, or stopped by a refused token
                started.remove(writer)
                if report.ends_stream:
                    break
        finally:
            # A stop (SIGTERM's cancellation) or a fault: a child under way finishes its batch, and
            # every batch a child committed is marked, so the ledger's remembered answers and the
            # outbox agree; a child still reading is told to stop.
            for writer in started:
                await asyncio.to_thread(writer.stop, report)
            await asyncio.to_thread(here.close)
        return report

    async def _chunks(self, pages: Pages) -> AsyncIterator[list[Sequence[OutboxItem]]]:
        """The pages' items in batches of :attr:`batch_rows` (a page's last batch may be short),
        grouped in chunks written by one child each: one batch first, so writing starts soon,
        then twice as many each time up to :data:`READ_BATCHES`, so the reading keeps ahead of
        the writing at a child per chunk."""
        size = 1
        chunk: list[Sequence[OutboxItem]] = []
        async for page in pages:
            for start in range(0, len(page), self.batch_rows):
                chunk.append(page[start:start + self.batch_rows])
                if len(chunk) == size:
                    yield chunk
                    chunk, size = [], min(size * 2, READ_BATCHES)
        if chunk:
            yield chunk

    async def _writer(self, chunk: Sequence[Sequence[OutboxItem]], token_for: TokenFor, zones: dict[str, str],
                      forget: float | None) -> _ChunkWriter:
        """A child for ``chunk``, started now: it reads the chunk, then waits for its turn."""

        def start() -> _ChunkWriter:
            # Imported here, off the event loop (the ledger's modules and pydantic: 0.1 s once).
            from ingest.delivery.ledger_writes import ChunkJob, write_chunk

            for name in {item.tenant for items in chunk for item in items} - zones.keys():
                zones[name] = self.tenants.get(name).timezone
            base = len(self.settings.embedded_api_base)
            batches = [_rows(items, token_for, base) for items in chunk]
            job = ChunkJob(self.settings, {item.tenant: zones[item.tenant] for items in chunk for item in items},
                           batches, forget)
            worker = start_limited(write_chunk, job, Limits.from_settings(self.settings.parse),
                                   task=f"writing {sum(map(len, batches))} rows to the embedded ledger")
            return _ChunkWriter(self, worker, chunk)

        return await asyncio.to_thread(start)

    async def _write(self, writer: _ChunkWriter, following: _ChunkWriter | None, here: _Here, report: PostReport,
                     after: After | None) -> None:
        """Let ``writer`` write its chunk and mark each batch as its answers come, then let
        ``following`` go; a child that fails leaves the batches it did not answer to this
        process."""
        await asyncio.to_thread(writer.go, report)
        while True:
            try:
                done = await asyncio.to_thread(writer.next_batch, report, following)
            except WorkerFailed as exc:
                log.warning("delivery.writer_failed", rows=sum(map(len, writer.unanswered)), reason=exc.reason,
                            limit=exc.kind)
                await self._write_here(here, writer.unanswered, report, after)
                return
            if done is None:
                return
            _tell(after, done)
            if report.ends_stream:
                return

    async def _write_here(self, here: _Here, chunk: Sequence[Sequence[OutboxItem]], report: PostReport,
                          after: After | None) -> None:
        for batch in chunk:
            # One thread writes the batch and then its outbox marks: a stop (SIGTERM's
            # cancellation) while it works lets it finish both.
            _tell(after, await asyncio.to_thread(here.write, batch, report))
            if report.ends_stream:
                return

    def settle(self, batch: Sequence[OutboxItem], deliveries: Sequence[Delivery | None], refused: Iterable[str],
               report: PostReport, marked: bool = False) -> list[tuple[OutboxItem, Delivery]]:
        """Count a written batch, and mark it in the outbox unless it was ``marked`` with its
        ledger transaction: each row's delivery (None: left pending), and the tenants whose token
        was refused so far."""
        for tenant in set(refused) - report.refused:
            log.warning("post.token_refused", tenant=tenant, destination="embedded ledger")
            report.refused.add(tenant)
        done: list[tuple[OutboxItem, Delivery]] = []
        for item, delivery in zip(batch, deliveries, strict=True):
            if delivery is None:
                report.left_pending += 1
            else:
                done.append((item, delivery))
        report.answered.update(item.tenant for item, delivery in done if delivery.status_code != HTTP_UNAUTHORIZED)
        if marked:
            count_deliveries(done, report)
        else:
            with self.outbox.db.transaction():
                record_deliveries(self.outbox, [(item.id, delivery) for item, delivery in done], report)
        return done


def _rows(items: Sequence[OutboxItem], token_for: TokenFor, base: int) -> list[WriteRow]:
    """The ledger's rows of ``items``, their paths relative to the API base (``base`` long)."""
    from ingest.delivery.ledger_writes import WriteRow

    return [WriteRow(item.id, item.key, item.tenant, token_for(item), item.method, item.url[base:], item.text)
            for item in items]


def _tell(after: After | None, done: Sequence[tuple[OutboxItem, Delivery]]) -> None:
    if after is not None:
        for item, delivery in done:
            after(item, delivery)


class _ChunkWriter:
    """The parent's side of one chunk's child: tells it to go or stop, and marks each batch
    from its answers, in order. Its methods block: each runs in a worker thread, one at a time."""

    def __init__(self, ledger: EmbeddedLedger, worker: Worker, chunk: Sequence[Sequence[OutboxItem]]) -> None:
        self.ledger = ledger
        self.worker = worker
        self.chunk = chunk
        self.answered = 0
        self.told = False
        self.lock = threading.Lock()

    @property
    def unanswered(self) -> Sequence[Sequence[OutboxItem]]:
        return self.chunk[self.answered:]

    def go(self, report: PostReport) -> None:
        """Let the child write (once), the tenants refused so far left pending."""
        with self.lock:
            if not self.told:
                self.told = True
                self.worker.send(sorted(report.refused))

    def next_batch(self, report: PostReport,
                   following: _ChunkWriter | None = None) -> list[tuple[OutboxItem, Delivery]] | None:
        """The next batch written, marked; None once the child is done. Once the chunk's last
        batch is committed, ``following`` may go: it writes while this batch is marked."""
        with self.lock:
            return self._next(report, following)

    def _next(self, report: PostReport,
              following: _ChunkWriter | None = None) -> list[tuple[OutboxItem, Delivery]] | None:
        answers = self.worker.receive()
        if answers is Worker.DONE:
            return None
        deliveries, refused, marked = answers
        batch = self.chunk[self.answered]
        self.answered += 1
        if following is not None and self.answered == len(self.chunk) and not refused:
            following.go(report)
        return self.ledger.settle(batch, deliveries, refused, report, marked)

    def stop(self, report: PostReport) -> None:
        """Stop the child after the batch under way, if it writes, and mark what it wrote."""
        with self.lock:
            try:
                self.worker.send(None)
                if self.told:
                    while self._next(report) is not None:
                        pass
            except WorkerFailed as exc:
                log.warning("delivery.writer_failed", rows=sum(map(len, self.unanswered)), reason=exc.reason,
                            limit=exc.kind)
            finally:
                self.worker.close()


class _Here:
    """Writing in this process: for a lone chunk, and a chunk whose child failed. The ledger is
    opened when first needed, and closed with the stream."""

    def __init__(self, ledger: EmbeddedLedger, token_for: TokenFor) -> None:
        self.ledger = ledger
        self.token_for = token_for
        self._opened: tuple[LedgerStore, LedgerRequests, Gatekeeper, Marks | None] | None = None

    def _open(self) -> tuple[LedgerStore, LedgerRequests, Gatekeeper, Marks | None]:
        # Imported here: the one door from ingest into ledger, used only by this destination.
        from ingest.delivery.ledger_writes import outbox_marks
        from ledger.auth import Gatekeeper
        from ledger.requests import LedgerRequests
        from ledger.store import LedgerStore

        if self._opened is None:
            settings = self.ledger.settings
            store = LedgerStore.open(settings.ledger_location)
            requests = LedgerRequests(settings.api, self.ledger.tenants, store)
            self._opened = (store, requests, Gatekeeper(self.ledger.tenants, None),
                            outbox_marks(store, settings.state_location))
        return self._opened

    def forget(self, before: float | None) -> None:
        if before is not None:
            self._open()[1].forget_delivered(before)

    def write(self, batch: Sequence[OutboxItem], report: PostReport) -> list[tuple[OutboxItem, Delivery]]:
        """Write ``batch`` in one ledger transaction, and mark it: in that transaction where the
        outbox can share it, after it otherwise."""
        from ingest.delivery.ledger_writes import write_batch

        _, requests, gate, marks = self._open()
        refused = set(report.refused)
        base = len(self.ledger.settings.embedded_api_base)
        rows = _rows(batch, self.token_for, base)
        deliveries = write_batch(requests, gate, rows, refused, marks=marks)
        return self.ledger.settle(batch, deliveries, refused, report, marked=marks is not None)

    def close(self) -> None:
        if self._opened is not None:
            self._opened[0].close()
            self._opened = None
