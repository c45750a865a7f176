"""The pipeline as the daemon and ``sftpctl`` see it: stage uploads, run, serve the schedule.

:class:`Ingest` owns the stores and the claims; each run posts through one pooled HTTP client,
closed when the run ends. Runs may overlap (the daemon's scheduled runs, its catch-up run at
start-up, an operator's ``sftpctl run``, even across processes): each claims a tenant before it
works on it (``ingest.claims``), so no two work on one tenant, and tenants go side by side. Every
run scans ``in/`` first (one scan at a time), so files copied in another way are never missed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from core.clock import parse_iso, utcnow
from core.config import Settings
from core.crypto import AtRest
from core.db import Database
from core.logs import get_logger
from core.processes import process_exists
from core.tenants import TenantStore
from core.uploads import FINAL_STATES, Upload, UploadStore
from ingest.claims import SCAN, ClaimHeld, Claims, tenant_claim
from ingest.delivery.outbox import Outbox, Pace, RowCounts
from ingest.delivery.poster import LazyClient
from ingest.notify import Mailer
from ingest.processor import Processor, Progress, RunSummary
from ingest.schedule import Schedule
from ingest.staging import Scanner, Stager
from ingest.store import (
    FeedStore,
    RunCounts,
    RunRecord,
    RunStatus,
    RunStore,
    SendLog,
    SlotTaken,
    StagedStore,
    StagedUpload,
    Trigger,
    migrate,
)

log = get_logger("ingest.pipeline")

USER_AGENT = "sftp-inbox-ingest"


@dataclass(frozen=True)
class UploadStatus:
    """One upload as ``sftpctl uploads`` shows it, with its row counts once processed, and while
    rows wait, when the last should be delivered at the last minute's pace (None if none moved)."""

    id: int
    path: str
    size: int
    received_at: str
    source: str
    state: str
    detail: str
    feed: str | None
    posted: int
    failed: int
    rejected: int
    pending: int
    report: str | None
    expected_finish: str | None = None


class Ingest:
    def __init__(
        self, settings: Settings, db: Database, tenants: TenantStore, uploads: UploadStore,
        at_rest: AtRest | None = None,
    ) -> None:
        """``at_rest``: the keys stored files are sealed and read with (by default, the data
        dir's: ``AtRest.for_data_dir``)."""
        migrate(db)
        self.settings = settings
        self.at_rest = at_rest or AtRest.for_data_dir(settings.server.keys_dir, settings.data_dir)
        self.db = db
        self.tenants = tenants
        self.uploads = uploads
        self.feeds = FeedStore(db)
        self.staged = StagedStore(db)
        self.outbox = Outbox(db)
        self.run_store = RunStore(db)
        self.schedule = Schedule(settings.schedule)
        self.claims = Claims(db)
        self.stager = Stager(settings, uploads, self.feeds, self.staged, self.at_rest)
        self.scanner = Scanner(settings, tenants, uploads, self.stager)
        self.processor = Processor(
            settings, tenants, uploads, self.feeds, self.staged, self.outbox, self.run_store,
            SendLog(db), Mailer(settings.mail, settings.mail_spool, self.at_rest), self.claims,
            self.at_rest,
        )
        self._background: set[asyncio.Task[object]] = set()

    def on_upload(self, upload: Upload, local_path: Path, kept: Path | None = None) -> None:
        """An upload completed: take over the front door's ``kept`` name of its bytes, if given,
        and queue its staging on the stager's thread.

        A rename at most, so any thread may call it; the front door calls it on its recorder's.
        """
        adopted = self.stager.adopt(upload, kept) if kept is not None else None
        self.stager.queue(upload, local_path, adopted)

    async def stage(
        self, upload: Upload, local_path: Path, adopted: Path | None = None
    ) -> StagedUpload | None:
        return await self.stager.stage_in_worker(upload, local_path, adopted)

    async def settled(self) -> None:
        """Wait until every upload handed to :meth:`on_upload` so far is staged."""
        await self.stager.settled()

    async def scan(self) -> list[StagedUpload]:
        """Stage the stable files in tenants' ``in/`` that no upload event announced.

        One scan at a time across processes (the ``scan`` claim): two would record one new file
        twice. A scan under way elsewhere is waited for, then this one finds nothing new.
        """
        claim = await self.claims.wait_for(SCAN)
        async with self.claims.renewing(claim):
            return await asyncio.to_thread(self.scanner.scan)

    async def run(
        self, tenant: str | None = None, trigger: str = "manual", progress: Progress | None = None,
        slot: datetime | None = None, embedded_base: str | None = None,
    ) -> RunSummary:
        """Process now and wait. Tenants another run holds are left to it (``skipped``); asked for
        one such tenant alone, raises :class:`ClaimHeld` naming the run that holds it.

        ``embedded_base``: where the embedded API answers for this run, if not where configured.
        """
        kind = Trigger(trigger)
        if tenant is not None:
            self.tenants.get(tenant)
            self.claims.ensure_free(tenant_claim(tenant))
        interrupted = self.run_store.mark_gone(process_exists)
        if interrupted:
            log.warning("ingest.resuming", interrupted_runs=interrupted)
        record = self.run_store.start(kind, slot, tenant, os.getpid())
        log.info("ingest.run_started", run=record.id, trigger=kind.value, tenant=tenant)
        if progress is not None:
            progress("run.started", run=record.id, trigger=kind.value)
        try:
            # Inside the run's record, so a failure here is a failed run with its reason.
            await self.settled()
            await self.scan()
            async with LazyClient(self._http) as client:
                work = await self.processor.process(record, tenant, client, progress, embedded_base)
        except asyncio.CancelledError:
            self.run_store.finish(record.id, RunStatus.INTERRUPTED, RunCounts(), "stopped during the run")
            raise
        except Exception as exc:
            self.run_store.finish(record.id, RunStatus.FAILED, RunCounts(), f"{type(exc).__name__}: {exc}")
            log.error("ingest.run_failed", run=record.id, exc_info=True)
            raise
        counts = work.counts
        finished = self.run_store.finish(record.id, RunStatus.FINISHED, counts, "; ".join(work.problems))
        log.info("ingest.run_finished", run=finished.id, files=counts.files, posted=counts.posted,
                 failed=counts.failed, rejected=counts.rejected, pending=counts.pending,
                 skipped=len(work.skipped))
        if progress is not None:
            progress("run.finished", run=finished.id, files=counts.files, posted=counts.posted,
                     failed=counts.failed, rejected=counts.rejected, pending=counts.pending)
        return RunSummary(finished, work.files, work.problems, work.skipped)

    async def catch_up(self, now: datetime | None = None) -> RunSummary | None:
        """Run once for the latest slot if no run was started for it (the daemon was down);
        raises :class:`SlotTaken` if another node started it meanwhile."""
        latest = self.schedule.latest_slot(now or utcnow())
        last = self.run_store.last_slot()
        if last is not None and parse_iso(last) >= latest:
            return None
        log.info("ingest.catch_up", slot=latest.isoformat(), last_slot=last)
        return await self.run(trigger=Trigger.CATCH_UP, slot=latest)

    async def serve_forever(self) -> None:
        """Catch up, then scan every ``scan_interval_seconds`` and start a run at each slot;
        until cancelled.

        A slot's run goes on in the background: a run still posting (a remote destination's
        paced rows, say) never keeps the next slot from starting, whose run takes the tenants
        that the earlier one does not hold.
        """
        try:
            self._start(self.catch_up())
            due = self.schedule.next_slot(utcnow())
            while True:
                await self._quietly(self.scan())
                if utcnow() >= due:
                    self._start(self.run(trigger=Trigger.SCHEDULED, slot=due))
                    # Slots that passed meanwhile are run once, like a missed slot.
                    due = max(self.schedule.next_slot(due), self.schedule.latest_slot(utcnow()))
                wait = min(self.settings.schedule.scan_interval_seconds, (due - utcnow()).total_seconds())
                await asyncio.sleep(max(0.0, wait))
        finally:
            for task in self._background:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            await self.aclose()

    def _start(self, work: Awaitable[object]) -> None:
        """Run ``work`` in the background of :meth:`serve_forever`, failures logged."""
        task: asyncio.Task[object] = asyncio.ensure_future(self._quietly(work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The latest runs; a run whose process is gone is shown interrupted, not running."""
        self.run_store.mark_gone(process_exists)
        return self.run_store.recent(limit)

    def run_pace(self, run_id: int) -> Pace:
        """How the delivery of a running run goes: the files of the tenants it holds now."""
        uploads = [staged.upload_id for staged in self.staged.processing(self.claims.tenants_of(run_id))]
        return self.outbox.pace(uploads)

    def retry_rows(self, ids: Sequence[int] = (), tenant: str | None = None) -> int:
        """``sftpctl outbox retry``: rows back to pending, and their finished files reopened, in
        one transaction (the outbox owns the rows, the staged store the files)."""
        return self.outbox.retry(ids, tenant, reopen=self.staged.reopen)

    def upload_states(self, tenant: str, limit: int | None = None) -> list[UploadStatus]:
        history = self.uploads.history(tenant, limit)
        staged = self.staged.of_uploads([upload.id for upload in history])
        states = []
        for upload in history:
            entry = staged.get(upload.id)
            counts = self.outbox.counts(upload.id) if entry else None
            if entry and counts and upload.state in FINAL_STATES and entry.final_posted is not None:
                # What its finish recorded: the per-row results may have been pruned since.
                counts = RowCounts(total=entry.rows_total, posted=entry.final_posted,
                                   failed=entry.final_failed or 0, rejected=entry.final_rejected or 0)
            finish = self.outbox.pace([upload.id]).expected_finish() if counts and counts.pending else None
            states.append(UploadStatus(
                id=upload.id, path=upload.path, size=upload.size, received_at=upload.received_at,
                source=upload.source, state=upload.state, detail=upload.detail,
                feed=entry.feed if entry else None, posted=counts.posted if counts else 0,
                failed=counts.failed if counts else 0, rejected=counts.rejected if counts else 0,
                pending=counts.pending if counts else 0, report=entry.report if entry else None,
                expected_finish=finish,
            ))
        return states

    async def aclose(self) -> None:
        """Let staging that is under way finish (the daemon calls this when it stops)."""
        await self.settled()

    def _http(self) -> httpx.AsyncClient:
        """The run's one pooled client, shared by every file and destination of the run."""
        return httpx.AsyncClient(
            timeout=self.settings.post.timeout_seconds, headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    async def _quietly(self, work: Awaitable[object]) -> bool:
        """Await ``work`` for the serving loop: a failure is logged, never ends the daemon."""
        try:
            await work
        except (ClaimHeld, SlotTaken) as exc:
            log.info("ingest.run_skipped", reason=str(exc))
            return False
        except Exception:
            log.error("ingest.serve_error", exc_info=True)
        return True
