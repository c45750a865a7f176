"""One run: read, validate and map the staged files, queue them, post, report and notify.

The order is what makes a run safe to interrupt at any point:

1. Each waiting file of a tenant that may be processed (it has a login and is enabled) is read,
   validated and mapped in a child process of its own with memory and time limits
   (``ingest.sandbox``), then queued: its requests and its rejected rows go to
   the outbox in one transaction with the claim of the file. A refused file is reported at once.
2. Every pending request of those tenants is delivered, oldest first, so the rows an interrupted
   run left behind go before new ones: in bulk into the embedded ledger, or over HTTP to a remote
   Signal API (``ingest.delivery.destinations``). Each answer is written as it arrives.
3. Files with no pending rows left are finished: report in ``out/``, final upload state.
4. Each tenant with anything failed gets one mail, with the reports of its finished files.

Files of tenants without a valid login stay staged, and their pending rows stay pending, until a
login is set again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from core.clock import parse_iso
from core.config import Settings
from core.crypto import AtRest
from core.logs import get_logger
from core.tenants import Tenant, TenantStore
from core.uploads import UploadState, UploadStore
from ingest.claims import ClaimHeld, Claims, tenant_claim
from ingest.delivery.destinations import Destination, EmbeddedLedger, RemoteSignalApi
from ingest.delivery.outbox import PAGE_ROWS, Outbox, OutboxItem, QueuedRows
from ingest.delivery.poster import Delivery, LazyClient, Poster, PostReport
from ingest.notify import Mailer, TenantRun, failure_message
from ingest.prepare import Prepared, PrepareJob, prepare_file
from ingest.progress import DeliveryProgress
from ingest.reports import FileSummary, choose_report_path, write_report_at
from ingest.rows import LAST_RANK, Feed, posting_rank
from ingest.sandbox import INTERNAL_ERROR, Limits, WorkerFailed, run_limited
from ingest.store import (
    FeedStore,
    NoticeStore,
    RunCounts,
    RunRecord,
    RunStore,
    SendLog,
    StagedStore,
    StagedUpload,
    TroubleStore,
)

log = get_logger("ingest.processor")

# The kinds of delivery trouble a tenant's contact hears of once (``TroubleStore``).
REFUSED = "refused"
DOWN = "down"


class Progress(Protocol):
    """Told what a run is doing, for ``sftpctl run`` to print.

    Events, with their fields: ``run.started`` (run, trigger), ``tenant.skipped`` (tenant,
    reason), ``file.started`` (tenant, file, upload), ``file.rejected`` (tenant, file, reason),
    ``file.queued`` (tenant, file, rows, rejected), ``post.started`` (tenant, rows),
    ``file.progress`` (tenant, file, upload, done, total, rate, eta_seconds: see
    ``ingest.progress``), ``file.done`` (tenant, file, state, posted, failed, rejected, report),
    ``mail.sent`` (tenant, to, via) and ``run.finished`` (run, files, posted, failed, rejected,
    pending). Tenants go side by side, so events of different tenants interleave. An exception
    raised by the callback stops the run like a crash would; the outbox makes that safe.
    """

    def __call__(self, event: str, **fields: Any) -> None: ...


def _silent(event: str, **fields: Any) -> None:
    """The progress callback of runs nobody watches."""


@dataclass(frozen=True)
class TenantProfile:
    """What a run reads of a tenant once, as its pass begins: the tenant, its feeds (parsed once,
    not once per file) and its data dictionary. Changes made during the pass count from the next."""

    tenant: Tenant
    feeds: dict[str, Feed]
    dictionary: tuple[str, ...]

    def rank(self, staged: StagedUpload) -> int:
        """The file's place in the posting order (see :meth:`Processor._in_posting_order`)."""
        feed = self.feeds.get(staged.feed)
        return posting_rank(feed.mapping.kind) if feed else LAST_RANK


@dataclass
class RunWork:
    """What a run did for its tenants, added up tenant by tenant."""

    counts: RunCounts = field(default_factory=RunCounts)
    files: list[FileSummary] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, other: RunWork) -> None:
        mine, theirs = self.counts, other.counts
        self.counts = RunCounts(*(a + b for a, b in zip(dataclasses.astuple(mine), dataclasses.astuple(theirs),
                                                          strict=True)))
        self.files += other.files
        self.problems += other.problems
        self.skipped += other.skipped


@dataclass(frozen=True)
class RunSummary:
    """What a run did: its record, the files it finished, what held rows back, and the tenants
    it left to the run that held them."""

    run: RunRecord
    files: list[FileSummary] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when everything was posted: no rejected file or row, no failed or waiting row."""
        run = self.run
        return (
            run.status == "finished" and not self.problems and not (run.failed or run.rejected or run.pending)
            and all(item.state != UploadState.REJECTED for item in self.files)
        )


class Processor:
    def __init__(
        self, settings: Settings, tenants: TenantStore, uploads: UploadStore, feeds: FeedStore,
        staged: StagedStore, outbox: Outbox, runs: RunStore, send_log: SendLog, mailer: Mailer,
        claims: Claims, at_rest: AtRest,
    ) -> None:
        self.settings = settings
        self.at_rest = at_rest
        self.tenants = tenants
        self.uploads = uploads
        self.feeds = feeds
        self.staged = staged
        self.outbox = outbox
        self.runs = runs
        self.send_log = send_log
        self.mailer = mailer
        self.claims = claims
        self.notices = NoticeStore(staged.db)
        self.troubles = TroubleStore(staged.db)
        #: Outbox rows a delivery pass reads at a time (``Outbox.page``).
        self.page_rows = PAGE_ROWS

    async def process(
        self, run: RunRecord, only: str | None, client: LazyClient, progress: Progress | None = None,
        embedded_base: str | None = None,
    ) -> RunWork:
        """Do the work of ``run`` for every eligible tenant (or just ``only``), side by side.

        Each tenant is processed under its claim (``ingest.claims``), at most
        ``schedule.concurrent_tenants`` at once: a tenant another run holds is skipped (that run
        does its work), and a slow destination of one tenant never holds up another. Files are
        read at most one per core at a time. ``embedded_base`` is where the embedded API answers
        for this run, when not at its configured address (``sftpctl run`` serves one itself).
        """
        emit = progress or _silent
        tenants, problems = self._eligible(only)
        turns = asyncio.Semaphore(max(1, self.settings.schedule.concurrent_tenants))
        reading = asyncio.Semaphore(os.cpu_count() or 1)

        async def one(tenant: Tenant) -> RunWork:
            async with turns:
                try:
                    claim = self.claims.take(tenant_claim(tenant.name), run.id)
                except ClaimHeld as exc:
                    if only is not None:
                        raise
                    log.info("ingest.tenant_skipped", run=run.id, tenant=tenant.name, reason=str(exc))
                    emit("tenant.skipped", tenant=tenant.name, reason=str(exc))
                    return RunWork(skipped=[str(exc)])
                async with self.claims.renewing(claim):
                    return await self._process_tenant(run, tenant, client, emit, embedded_base, reading)

        # A fault that stops the run (or the progress callback raising) stops every tenant's
        # work, as a crash would: the others are cancelled at their next await, which the outbox
        # makes safe, rather than left running behind a run recorded as ended.
        tasks = [asyncio.ensure_future(one(tenant)) for tenant in tenants]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        work = RunWork(problems=problems)
        for part in parts:
            work.add(part)
        return work

    async def _process_tenant(
        self, run: RunRecord, tenant: Tenant, client: LazyClient, emit: Progress,
        embedded_base: str | None, reading: asyncio.Semaphore,
    ) -> RunWork:
        """Queue the tenant's waiting files, deliver its pending rows, finish, report and mail.

        Called while holding the tenant's claim: nobody else works on its files or rows.
        """
        names = [tenant.name]
        profile = TenantProfile(tenant, {feed.name: feed for feed in self.feeds.list(tenant.name)},
                                tuple(self.tenants.dictionary(tenant.name)))
        work = RunWork()
        tried: set[int] = set()
        # Queueing a file, rejecting one and writing a report take time in proportion to its
        # rows: each runs in a worker thread, so the event loop (the daemon's logins and API)
        # never waits for it; what it tells comes back to the loop.
        loop = asyncio.get_running_loop()

        def told(event: str, **fields: Any) -> None:
            loop.call_soon_threadsafe(functools.partial(emit, event, **fields))

        async def finish(staged: StagedUpload) -> None:
            tried.add(staged.upload_id)
            try:
                work.files.append(await asyncio.to_thread(self._finish, staged.upload_id, told))
            except Exception as exc:  # noqa: BLE001 - a bulkhead: the fault is this file's alone
                work.problems.append(self._file_problem(staged, "could not be finished", exc))

        for staged in self._in_posting_order(profile, self.staged.waiting(names)):
            emit("file.started", tenant=staged.tenant, file=staged.path, upload=staged.upload_id)
            try:
                async with reading:
                    prepared = await self._prepare(staged, profile)
                work.counts = _plus(work.counts, files=1, rejected=len(prepared.rejected))
                if prepared.error:
                    rejected = await asyncio.to_thread(self._reject, staged, run, prepared)
                elif await asyncio.to_thread(self._queue, staged, run, prepared):
                    emit("file.queued", tenant=staged.tenant, file=staged.path, rows=len(prepared.requests),
                         rejected=len(prepared.rejected))
            except Exception as exc:  # noqa: BLE001 - a bulkhead: the fault is this file's alone
                work.problems.append(self._file_problem(staged, "could not be queued", exc))
                continue
            if prepared.error and rejected:
                emit("file.rejected", tenant=staged.tenant, file=staged.path, reason=prepared.error)
                await finish(staged)
        report = await self._post(names, {tenant.name: tenant}, client, emit, embedded_base)
        # Rejections whose report a crash or a fault kept from being written, then settled files.
        for staged in self.staged.unreported_rejections(names):
            if staged.upload_id not in tried:
                await finish(staged)
        for staged in self.staged.processing(names):
            if self.outbox.counts(staged.upload_id).pending == 0:
                await finish(staged)
        troubles = _tenant_problems(report, tenant.name)
        work.problems += troubles.values()
        # A trouble is mailed when it begins, not at every run while it lasts (the run's problems
        # still name it for the operator); it ends once the destination answers again.
        already = self.troubles.open_kinds(tenant.name)
        if tenant.name in report.answered:
            self.troubles.end(tenant.name, already - troubles.keys())
        fresh = {kind: text for kind, text in troubles.items() if kind not in already}
        try:
            await self._notify(tenant, run, list(fresh.values()), emit)
        except Exception as exc:  # a bulkhead: the notices stay queued for the next run
            log.error("ingest.mail_failed", exc_info=True, tenant=tenant.name)
            work.problems.append(f"{tenant.name}: the failure mail could not be sent: {type(exc).__name__}: {exc}")
        else:
            for kind, text in fresh.items():
                self.troubles.begin(tenant.name, kind, text)
        pending = sum(self.outbox.counts(item.upload_id).pending for item in self.staged.processing(names))
        work.counts = _plus(work.counts, posted=report.posted, failed=report.failed, pending=pending)
        return work

    def _file_problem(self, staged: StagedUpload, what: str, exc: Exception) -> str:
        """Log a fault of ours (or of the machine: a full disk) on one file; the run goes on.

        The file keeps its state, so the next run tries it again from where it stopped.
        """
        log.error("ingest.file_failed", exc_info=True, tenant=staged.tenant,  # noqa: LOG014
                  upload=staged.upload_id, step=what)
        return f"{staged.tenant}: {staged.path} (upload {staged.upload_id}) {what}: {type(exc).__name__}: {exc}"

    @staticmethod
    def _in_posting_order(profile: TenantProfile, waiting: list[StagedUpload]) -> list[StagedUpload]:
        """Calls first, then lookup rows, then signals; upload order within each.

        Requests are posted in queue order, and a signal can only find a call the ledger already
        has, so a call-metadata file uploaded after the signals that refer to it still goes first.
        """
        return sorted(waiting, key=profile.rank)

    def _eligible(self, only: str | None) -> tuple[list[Tenant], list[str]]:
        """The tenants to work for (those with something to do, or ``only``), and a problem for
        each that may not be processed while its files wait; a few queries whatever the count."""
        candidates = [self.tenants.get(only)] if only else self.tenants.all()
        busy = self.staged.tenants_with_work()
        eligible = [tenant for tenant in candidates
                    if tenant.may_be_processed and (only is not None or tenant.name in busy)]
        waiting = {staged.tenant for staged in self.staged.waiting()} if busy else set()
        problems = [
            f"tenant {tenant.name!r} {tenant.why_idle}; its files wait unprocessed"
            for tenant in candidates if not tenant.may_be_processed and tenant.name in waiting
        ]
        return eligible, problems

    async def _prepare(self, staged: StagedUpload, profile: TenantProfile) -> Prepared:
        """Read, validate and map one file in a limited child process (``ingest.sandbox``).

        Whatever the file does to the reader (a crash, a memory or time blow-up) or to our own
        code, it becomes that file's rejection; the run and every other file go on.
        """
        if staged.error:
            return Prepared.refused(staged.error)
        feed = profile.feeds.get(staged.feed)
        if feed is None:
            return Prepared.refused(f"the feed {staged.feed!r} no longer exists")
        settings = self.settings
        job = PrepareJob(
            snapshot=Path(staged.snapshot), sha256=staged.sha256, feed=feed,
            dictionary=profile.dictionary, timezone=profile.tenant.timezone,
            base_url=feed.destination.url or settings.embedded_api_base,
            max_upload_bytes=settings.server.max_upload_bytes,
            allowed_extensions=settings.server.allowed_extensions,
            max_bad_row_share=settings.post.max_bad_row_share, limits=settings.parse,
            at_rest=self.at_rest,
        )
        try:
            return await asyncio.to_thread(run_limited, prepare_file, job, Limits.from_settings(settings.parse))
        except WorkerFailed as exc:
            log.warning("ingest.prepare_failed", tenant=staged.tenant, upload=staged.upload_id,
                        limit=exc.kind, reason=exc.reason)
            return Prepared.refused(exc.reason)
        except Exception:
            log.error("ingest.prepare_failed", exc_info=True, tenant=staged.tenant,
                      upload=staged.upload_id)
            return Prepared.refused(INTERNAL_ERROR)

    def _queue(self, staged: StagedUpload, run: RunRecord, prepared: Prepared) -> bool:
        """Claim the file and queue its rows in one transaction; False if it was superseded."""
        with self.staged.db.transaction():
            claimed = self.staged.claim(staged.upload_id, run.id, prepared.rows_total,
                                        f"{len(prepared.requests)} rows queued")
            if claimed:
                self.outbox.enqueue(staged.upload_id, run.id, staged.tenant, prepared.requests,
                                    prepared.rejected)
        return claimed

    def _reject(self, staged: StagedUpload, run: RunRecord, prepared: Prepared) -> bool:
        """Claim the file as rejected and queue its rejected rows in one transaction."""
        with self.staged.db.transaction():
            claimed = self.staged.reject(staged.upload_id, run.id, prepared.rows_total, prepared.error)
            if claimed:
                self.outbox.enqueue(staged.upload_id, run.id, staged.tenant, QueuedRows(), prepared.rejected)
        return claimed

    async def _post(
        self, names: list[str], tenants: dict[str, Tenant], client: LazyClient, emit: Progress,
        embedded_base: str | None,
    ) -> PostReport:
        """Deliver the pending rows of ``names`` (one tenant), each file's progress told as it goes.

        The rows are those due when the pass starts (``Outbox.due``, counted without their
        bodies), read :attr:`page_rows` at a time by id, off the event loop: memory and each read
        stay the same however long the queue is. Rows queued after the start wait for the next
        run, as when the pass read them all at once.
        """
        due = await asyncio.to_thread(self.outbox.due, names)
        emit("post.started", tenant=names[0], rows=due.total)
        # Pending rows are those of files being processed: their names in one read.
        files = {staged.upload_id: staged.path for staged in self.staged.processing(names)}
        counted = chain.from_iterable(repeat(upload, rows) for upload, rows in due.per_upload.items())
        progress = DeliveryProgress(names[0], files, counted, emit)

        def after(item: OutboxItem, delivery: Delivery) -> None:
            # A row an operator put back meanwhile (``sftpctl outbox retry``) was not counted.
            if item.upload_id in due.per_upload:
                progress.row_done(item.upload_id)

        configured = self.settings.embedded_api_base

        def route(url: str) -> str:
            if embedded_base and url.startswith(configured + "/"):
                return embedded_base + url[len(configured):]
            return url

        def token_for(item: OutboxItem) -> str:
            return item.token or tenants[item.tenant].api_token

        # Each item goes through the destination of its feed: rows for the embedded API in bulk
        # into the ledger (``EmbeddedLedger.takes``: their URL starts with the embedded base), the
        # rest over HTTP; the two go side by side, each a stream of pages of its own rows.
        remote: Destination = RemoteSignalApi(
            Poster(self.settings.post, client, self.outbox, self.send_log, route))
        embedded = EmbeddedLedger(self.settings, self.tenants, self.outbox)
        local_prefix = configured + "/" if self.settings.post.embedded_in_process else None
        streams = [self._stream(remote, names, due.last, local_prefix, False, token_for, after)]
        if local_prefix is not None:
            streams.append(self._stream(embedded, names, due.last, local_prefix, True, token_for, after))
        logging = asyncio.create_task(progress.log_every())
        try:
            reports = await asyncio.gather(*streams)
        finally:
            logging.cancel()
        return PostReport.merged(reports)

    async def _stream(
        self, destination: Destination, names: list[str], last: int, prefix: str | None, prefixed: bool,
        token_for: Callable[[OutboxItem], str], after: Callable[[OutboxItem, Delivery], None],
    ) -> PostReport:
        """Deliver one destination's rows up to id ``last``, a page at a time, oldest first.

        The destination asks for each page when it is ready for it (the embedded ledger while it
        writes the page before, the poster once the page before is answered), and stops asking
        when a token is refused or the destination is down: what is left waits for the next run.
        """

        async def pages() -> AsyncIterator[Sequence[OutboxItem]]:
            after_id = 0
            while after_id < last:
                items = await asyncio.to_thread(self.outbox.page, names, after_id, upto=last,
                                                limit=self.page_rows, url_prefix=prefix, prefixed=prefixed)
                if not items:
                    return
                yield items
                after_id = items[-1].id

        return await destination.deliver(pages(), token_for, after)

    def _finish(self, upload_id: int, emit: Progress) -> FileSummary:
        """Write the report of a file whose rows are all settled and give it its final state.

        Each step can be repeated after a crash without doubling anything: the report's path is
        recorded before it is written (so a repeat rewrites that one report), and the final state
        and the contact's notice are committed together after it.
        """
        staged = self.staged.get(upload_id)
        assert staged is not None
        summary = self._summary(staged)
        state = UploadState(summary.state)
        tenant = self.tenants.get(staged.tenant)
        zone = ZoneInfo(tenant.timezone)
        claimed_by = self.runs.get(staged.run_id) if staged.run_id else None
        run_time = parse_iso(claimed_by.started_at) if claimed_by else parse_iso(staged.staged_at)
        out_dir = self.tenants.folders(staged.tenant).reports_dir
        target = Path(self.staged.reserve_report(
            upload_id, lambda taken: str(choose_report_path(out_dir, summary, run_time, zone, taken))
        ))
        write_report_at(target, out_dir, summary, self.outbox.results(upload_id), run_time, zone, self.at_rest)
        with self.staged.db.transaction():
            self.staged.finish(upload_id, state, str(target), _detail(summary),
                               (summary.posted, summary.failed, summary.rejected))
            if summary.needs_notice:
                self.notices.add(upload_id, staged.tenant)
        emit("file.done", tenant=staged.tenant, file=staged.path, state=state.value, posted=summary.posted,
             failed=summary.failed, rejected=summary.rejected, report=target.name)
        log.info("ingest.file_done", tenant=staged.tenant, upload=upload_id, state=state.value,
                 posted=summary.posted, failed=summary.failed, rejected=summary.rejected)
        return dataclasses.replace(summary, report=str(target))

    def _summary(self, staged: StagedUpload) -> FileSummary:
        """A file's outcome as its report and mail tell it, from what the database holds."""
        upload = self.uploads.get(staged.upload_id)
        assert upload is not None
        counts = self.outbox.counts(staged.upload_id)
        state = FileSummary.final_state(staged.state, counts.posted, counts.failed, counts.rejected)
        return FileSummary(
            upload_id=staged.upload_id, tenant=staged.tenant, path=staged.path, feed=staged.feed,
            received_at=upload.received_at, state=state.value, rows_total=counts.total, posted=counts.posted,
            failed=counts.failed, rejected=counts.rejected, pending=counts.pending, error=staged.error,
            report=staged.report,
        )

    async def _notify(self, tenant: Tenant, run: RunRecord, problems: list[str], emit: Progress) -> None:
        """Mail the contact about every finished file not yet mailed, and this run's problems.

        At least once, never lost: notices are queued with the finish of their file and marked
        sent only after the message went out. A message that was tried before goes again under its
        own key (the same ``.eml`` name and Message-ID, so the copy can be told for what it is);
        new notices go together in one new message.
        """
        notices = self.notices.unsent(tenant.name)
        retried = sorted({notice.mail_key for notice in notices if notice.mail_key})
        for key in retried:
            await self._mail(tenant, run, key, [n.upload_id for n in notices if n.mail_key == key], [], emit)
        fresh = [notice for notice in notices if notice.mail_key is None]
        if not fresh and not problems:
            return
        key = f"{parse_iso(run.started_at).strftime('%Y%m%dT%H%M%SZ')}-run{run.id}-{tenant.name}"
        self.notices.name([notice.id for notice in fresh], key)
        await self._mail(tenant, run, key, [notice.upload_id for notice in fresh], problems, emit)

    async def _mail(
        self, tenant: Tenant, run: RunRecord, key: str, uploads: list[int], problems: list[str], emit: Progress,
    ) -> None:
        files = [self._summary(staged) for upload_id in uploads if (staged := self.staged.get(upload_id))]
        notice = TenantRun(tenant=tenant.name, email=tenant.email, run_id=run.id,
                           run_time=parse_iso(run.started_at), zone=ZoneInfo(tenant.timezone),
                           files=files, problems=problems)
        message = await asyncio.to_thread(failure_message, self.settings.mail.sender, notice, key, at_rest=self.at_rest)
        where = await self.mailer.send(message, key)
        self.notices.sent(key)
        emit("mail.sent", tenant=tenant.name, to=tenant.email, via=where)


def _tenant_problems(report: PostReport, tenant: str) -> dict[str, str]:
    """The tenant's delivery troubles of this pass, by kind (see ``TroubleStore``)."""
    problems = {}
    if tenant in report.refused:
        problems[REFUSED] = ("The API refused this account's token (HTTP 401). Posting stopped; the remaining"
                             " rows wait and are sent at the next run once the token is fixed.")
    if tenant in report.down:
        problems[DOWN] = (f"The destination is not answering ({report.down[tenant]}); the remaining rows"
                          " wait and are sent at the next run.")
    return problems


def _plus(counts: RunCounts, **more: int) -> RunCounts:
    return dataclasses.replace(counts, **{name: getattr(counts, name) + value for name, value in more.items()})


def _detail(summary: FileSummary) -> str:
    return f"{summary.posted} posted, {summary.failed} failed, {summary.rejected} rejected"
