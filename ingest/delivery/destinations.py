"""Destinations: "deliver these queued requests, and record one outcome per request".

Two implementations:

- :class:`RemoteSignalApi`: a Signal API over HTTP (a feed's ``[destination] url``, or the
  embedded API when in-process delivery is off). :class:`ingest.delivery.poster.Poster` does the
  work: pacing per token, retries, poison rows, 401.
- :class:`EmbeddedLedger`: the product's own ledger (``settings.ledger_location``: this data dir's
  ``ledger.db``, or the ``ledger`` schema of ``[database] url``), written in process through
  ``ledger.requests.LedgerRequests`` (the code the HTTP handlers call), many rows per ledger
  transaction, consecutive signals or calls of a tenant saved together, with no HTTP hop and no
  rate limit. Each row gets the status and message the HTTP API would answer. It never talks to
  another instance, and works the same whether or not the daemon runs (the database serialises
  it with the daemon's API). Each chunk of batches is read and validated in a limited child on
  the other core while the chunk before it is written (``ledger/plans.py``). Bench case 7
  (docs/BENCHMARKS.md): a 5 MB file of 26,842 signals from upload to report in 5.7 s (before: one
  paced HTTP request per row, ~8 h; ~60 s with the limits off).

Durability: the ledger and the outbox are two stores, so a batch is two commits, the
ledger's first and the outbox marks second. A crash between them leaves the batch pending; the
next run sends it again, and the ledger answers it from ``delivered_requests``, which remembers
each queued request's answer (by outbox id and content key) in the ledger transaction that
applied it: the replay writes nothing and gets the first answers (201 stays 201). Without that
memory the ledger's own idempotency (an identical signal, call or lookup row changes nothing)
would still keep rows single, but a row corrected later in the same batch would be corrected
back and forth once more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from core.config import Settings
from core.logs import get_logger
from core.tenants import TenantStore
from ingest.delivery.outbox import Outbox, OutboxItem
from ingest.delivery.poster import (
    HTTP_UNAUTHORIZED,
    Delivery,
    DeliveryOutcome,
    Poster,
    PostReport,
    error_text,
    record_deliveries,
)
from ingest.sandbox import Limits, WorkerFailed, run_limited

if TYPE_CHECKING:
    from ledger.auth import Gatekeeper
    from ledger.plans import Plan, Refused
    from ledger.requests import Answer, LedgerRequests

log = get_logger("ingest.destinations")

#: Rows per ledger transaction: large enough that commits cost little, small enough that the
#: daemon's API and other writers wait at most a fraction of a second for the ledger.
BATCH_ROWS = 500
#: Batches read by one child at most: each child costs a fork, so a chunk of several batches
#: lets the reading (on the other core) keep ahead of the ledger's writes.
READ_BATCHES = 4
#: Remembered answers older than this are forgotten; a replay comes at the next run.
REMEMBER_SECONDS = 7 * 24 * 3600.0
HTTP_ERROR = 400

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
    """The data dir's own ledger, written in bulk in process; opened per stream, then closed."""

    def __init__(self, settings: Settings, tenants: TenantStore, outbox: Outbox,
                 batch_rows: int | None = None) -> None:
        self.settings = settings
        self.tenants = tenants
        self.outbox = outbox
        self.batch_rows = batch_rows or BATCH_ROWS

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
        # Imported here: the one door from ingest into ledger, used only by this destination.
        from ledger.auth import Gatekeeper
        from ledger.requests import LedgerRequests
        from ledger.store import LedgerStore

        store = await asyncio.to_thread(LedgerStore.open, self.settings.ledger_location)
        base = self.settings.embedded_api_base
        zones: dict[str, str] = {}
        reading: asyncio.Task[list[Plan | Refused] | None] | None = None
        try:
            requests = LedgerRequests(self.settings.api, self.tenants, store)
            gate = Gatekeeper(self.tenants, None)
            await asyncio.to_thread(requests.forget_delivered, time.time() - REMEMBER_SECONDS)
            upcoming = await anext(chunks, None)
            # Each chunk of batches is read (parsed, validated) in a child while the chunk before
            # it is written: the ledger's writes keep this core, the reading takes the other. A
            # lone chunk is read in process: a child would cost more than it saves.
            if upcoming is not None:
                reading = await self._reading(chunk, base, zones)
            while chunk is not None:
                plans = await reading if reading is not None else None
                reading = await self._reading(upcoming, base, zones) if upcoming is not None else None
                # A chunk's plans were read in the time zones ``_reading`` looked up for it.
                read = iter(plans) if plans is not None else None
                for batch in chunk:
                    planned = None if read is None else [(zones[item.tenant], next(read)) for item in batch]
                    # One thread writes the batch and then its outbox marks: a stop (SIGTERM's
                    # cancellation) while it works lets it finish both, so the ledger's remembered
                    # answers and the outbox agree.
                    done = await asyncio.to_thread(
                        self._batch, requests, gate, base, batch, token_for, report, planned)
                    if after is not None:
                        for item, delivery in done:
                            after(item, delivery)
                    if report.ends_stream:
                        break
                if report.ends_stream:
                    break
                chunk, upcoming = upcoming, (await anext(chunks, None) if upcoming is not None else None)
        finally:
            if reading is not None:
                reading.cancel()
            await asyncio.to_thread(store.close)
        return report

    async def _chunks(self, pages: Pages) -> AsyncIterator[list[Sequence[OutboxItem]]]:
        """The pages' items in batches of :attr:`batch_rows` (a page's last batch may be short),
        grouped in chunks read by one child each: one batch first, so writing starts soon, then
        twice as many each time up to :data:`READ_BATCHES`, so the reading keeps ahead of the
        writing at a child per chunk."""
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

    def _known_zones(self, items: Sequence[OutboxItem], zones: dict[str, str]) -> None:
        """Add the time zone of each tenant of ``items`` not in ``zones`` yet: a request's times
        are read in its tenant's."""
        for name in {item.tenant for item in items} - zones.keys():
            zones[name] = self.tenants.get(name).timezone

    async def _reading(self, chunk: Sequence[Sequence[OutboxItem]], base: str,
                       zones: dict[str, str]) -> asyncio.Task[list[Plan | Refused] | None]:
        """Read the batches of ``chunk`` in a limited child (``ingest.sandbox``), started now."""
        from ledger.plans import BodyLimits, PlanJob, plan_batch

        batch = [item for items in chunk for item in items]
        await asyncio.to_thread(self._known_zones, batch, zones)

        api = self.settings.api
        job = PlanJob(BodyLimits(api.max_body_bytes, api.max_json_depth),
                      [(item.tenant, zones[item.tenant], item.method, item.url[len(base):], item.text)
                       for item in batch])
        limits = Limits.from_settings(self.settings.parse)

        def read() -> list[Plan | Refused] | None:
            try:
                return run_limited(plan_batch, job, limits)
            except WorkerFailed as exc:  # the batch is read in process instead, as without a child
                log.warning("delivery.reading_failed", rows=len(batch), reason=exc.reason, limit=exc.kind)
                return None

        return asyncio.create_task(asyncio.to_thread(read))

    def _batch(self, requests: LedgerRequests, gate: Gatekeeper, base: str, batch: Sequence[OutboxItem],
               token_for: TokenFor, report: PostReport,
               planned: Sequence[tuple[str, Plan | Refused]] | None = None) -> list[tuple[OutboxItem, Delivery]]:
        """Apply a batch in one ledger transaction, then mark the outbox;
        ``planned`` are its requests already read, in its order, each with the time zone it was
        read in."""
        from ledger.errors import ApiError
        from ledger.requests import Queued

        queued: list[Queued] = []
        taken: list[OutboxItem] = []
        with requests.batch([(item.id, item.key) for item in batch]) as conn:
            for index, item in enumerate(batch):
                if item.tenant in report.refused:
                    report.left_pending += 1
                    continue
                token = token_for(item)
                admitted = requests.admit_once(gate, token)
                if isinstance(admitted, ApiError) and admitted.status_code == HTTP_UNAUTHORIZED:
                    # This row gets its 401; the tenant's rows after it wait for a new token.
                    report.refused.add(item.tenant)
                    log.warning("post.token_refused", tenant=item.tenant, destination="embedded ledger")
                queued.append(Queued(item.tenant, token, item.id, item.key, item.method, item.url[len(base):],
                                     item.text, planned[index] if planned is not None else None))
                taken.append(item)
            # A fault of ours (a bug, a broken database) rolls the whole batch back and stops
            # the run, as a crash would: the batch stays pending for the next run.
            answers = requests.apply_queued(conn, gate, queued)
        done = [(item, _delivery(answer)) for item, answer in zip(taken, answers)]
        report.answered.update(item.tenant for item, answer in zip(taken, answers)
                               if answer.status != HTTP_UNAUTHORIZED)
        with self.outbox.db.transaction():
            record_deliveries(self.outbox, done, report)
        return done


def _delivery(answer: Answer) -> Delivery:
    """The outcome the poster would record for this answer over HTTP."""
    status = answer.status
    if status < HTTP_ERROR:
        return Delivery(DeliveryOutcome.POSTED, status, answer.transaction_id, "", 1)
    if status == HTTP_UNAUTHORIZED:
        return Delivery(DeliveryOutcome.UNAUTHORIZED, status, None,
                        "the destination refused the API token (HTTP 401)", 1)
    return Delivery(DeliveryOutcome.FAILED, status, None, error_text(status, answer.body), 1)
