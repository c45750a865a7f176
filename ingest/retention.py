"""Retention: processed files are deleted after their tenant's days, and the state stays bounded.

The rules in force for a tenant are its profile's (:attr:`core.tenants.Tenant.retention`: the
installation's ``[retention]``, each overridden by the tenant's own value). Days count from the
end of a file's processing (``ingest_staged.finished_at``); 0 days means at the first prune after
it. A prune deletes, per tenant:

- after ``upload_days``, a processed upload (posted, partly failed, failed): its file in ``in/``,
  only while that file is still the very upload (same size and sha256; a newer upload of the same
  name is never touched), its staged snapshot, and the request bodies of its posted rows (the
  outbox rows stay, for the reports and the replay memory, without their ``text``);
- after ``rejected_days``, a rejected upload's file in ``in/`` and its snapshot;
- after ``report_days``, the report in ``out/`` of any finished upload (only the path its staged
  record names: never another file of ``out/``), and with it the file's per-row results
  (``ingest_rows``), its settled outbox rows and its delivered notices; the tenant's mails in the
  spool (``<time>-run<id>-<tenant>.eml``, by their age on disk);
- with no tenant named, run records finished ``report_days`` (the installation's) ago that no
  upload or outbox row names, but for the latest run and the latest slot's (the catch-up rule).

Never pruned: a file not finished (rows pending, or reopened by ``sftpctl outbox retry``), a
report or mail whose notice is not sent yet, the upload history (``uploads``: name, size, sha256,
outcome), the staged records (feed, report path, error), the ledger and its replay memory
(``delivered_requests``, which the ledger prunes itself). The send log and the failed logins are
pruned where they are written (``ingest.delivery.poster``, ``sftpd.defender``).

What was done is remembered in ``retention_pruned`` (per upload: when its files went, when its
report went), so an hourly prune visits each upload once. Every deletion is logged
(``retention.deleted``) and counted in the :class:`PruneResult`; a dry run deletes nothing and
lists the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import secrets
import shutil
import sqlite3
import stat
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from core.clock import iso, parse_iso, utcnow
from core.config import Settings
from core.crypto import AtRest, TamperedFile
from core.crypto.at_rest import READ_CHUNK_BYTES
from core.db import Database
from core.logs import get_logger
from core.tenants import OUT_DIR, Tenant, TenantStore
from core.uploads import FINAL_STATES, UploadState
from ingest.claims import PRUNE, ClaimHeld, Claims
from ingest.delivery.outbox import OutboxState
from ingest.staging import STAGING_DIR
from ingest.store import RunStatus
from ingest.store import migrate as migrate_pipeline

log = get_logger("ingest.retention")

COMPONENT = "retention"
MIGRATIONS = [
    """
    CREATE TABLE retention_pruned (
        upload_id INTEGER PRIMARY KEY REFERENCES uploads(id) ON DELETE CASCADE,
        files_at TEXT,
        report_at TEXT
    );
    """,
    # Each whole pass (every tenant, not a dry run), the daemon's or sftpctl's: when it ended, what
    # it deleted and how many tenants failed (for /metrics and the status page); the last few kept.
    """
    CREATE TABLE retention_passes (
        id INTEGER PRIMARY KEY,
        finished_at TEXT NOT NULL,
        files INTEGER NOT NULL,
        problems INTEGER NOT NULL
    );
    """,
]
#: Whole passes remembered (``retention_passes``): a few days of the daemon's hourly passes.
PASSES_KEPT = 100

#: How often the daemon prunes.
PRUNE_INTERVAL_SECONDS = 3600.0
PROCESSED = (UploadState.POSTED, UploadState.PARTLY_FAILED, UploadState.FAILED)
# The name an upload's file takes for the instant between its check and its deletion; one left by
# a prune that was killed in that instant is deleted by a later prune, once this old.
ASIDE_PREFIX = ".retention-"
ASIDE_LEFTOVER_SECONDS = 3600.0
LEFTOVER = "leftover"
MAIL_SUFFIX = ".eml"

UPLOAD = "upload"
SNAPSHOT = "snapshot"
REPORT = "report"
MAIL = "mail"


# Finished uploads of a tenant in some states, finished before a cutoff, with what they were
# pruned of so far (``retention_pruned``); each query adds what it looks for.
_CANDIDATES = (
    "SELECT s.upload_id, s.path, u.size, u.sha256, s.report FROM ingest_staged s"
    " JOIN uploads u ON u.id = s.upload_id"
    " LEFT JOIN retention_pruned r ON r.upload_id = s.upload_id"
    " WHERE s.tenant = ? AND u.state IN ({marks}) AND s.finished_at IS NOT NULL AND s.finished_at <= ?"
)


@dataclass(frozen=True)
class Deletion:
    """A file deleted (or, in a dry run, to be): what it is, by which rule and how many days."""

    tenant: str
    what: str
    path: str
    upload_id: int | None
    rule: str
    days: int


@dataclass(frozen=True)
class Kept:
    """A file a rule reached but did not delete, and why (a newer upload holds the name)."""

    tenant: str
    what: str
    path: str
    upload_id: int | None
    reason: str


@dataclass
class StateCounts:
    """Rows of the state database emptied or deleted."""

    #: Request bodies (``ingest_outbox.text``) of posted rows emptied.
    bodies: int = 0
    #: Per-row results (``ingest_rows``) deleted with their report.
    row_results: int = 0
    #: Settled outbox rows deleted with their report.
    outbox_rows: int = 0
    #: Delivered notices deleted with their report.
    notices: int = 0
    #: Run records deleted.
    runs: int = 0


@dataclass
class PruneResult:
    """What one prune did (or, ``dry_run``, would do), as of ``now``."""

    now: str
    dry_run: bool
    deleted: list[Deletion] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    state: StateCounts = field(default_factory=StateCounts)
    #: Tenants whose prune failed, with the reason (the others went on).
    problems: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Files deleted, by what they are."""
        return dict(Counter(item.what for item in self.deleted))


@dataclass(frozen=True)
class _Candidate:
    upload_id: int
    path: str
    size: int
    sha256: str
    report: str | None


class Pruner:
    """Applies the retention rules; blocking (file I/O), so the daemon runs it in a thread."""

    def __init__(self, settings: Settings, db: Database, tenants: TenantStore, at_rest: AtRest | None = None) -> None:
        """``at_rest``: the keys an upload in ``in/`` is read with to tell it is still that
        upload (by default the data dir's: ``AtRest.for_data_dir``)."""
        migrate_pipeline(db)
        self.at_rest = at_rest or AtRest.for_data_dir(settings.server.keys_dir, settings.data_dir)
        db.migrate(COMPONENT, MIGRATIONS)
        self.db = db
        self.tenants = tenants
        self.staging_root = settings.data_dir / STAGING_DIR
        self.mail_spool = settings.mail_spool
        self.run_days = settings.retention.report_days

    def prune(self, now: datetime, tenant: str | None = None, dry_run: bool = False) -> PruneResult:
        """Apply every rule as of ``now`` (aware), to ``tenant`` or to all; see the module docstring.

        One tenant's failure (a database error, a folder the OS refuses) is logged and recorded in
        ``problems``; the other tenants are pruned all the same.
        """
        chosen = [self.tenants.get(tenant)] if tenant is not None else self.tenants.all()
        result = PruneResult(now=iso(now), dry_run=dry_run)
        for profile in chosen:
            try:
                self._prune_tenant(profile, now, result)
            except Exception as exc:  # a bulkhead: one tenant's trouble never stops the others' prune
                log.error("retention.failed", exc_info=True, tenant=profile.name)
                result.problems.append(f"{profile.name}: {type(exc).__name__}: {exc}")
        if tenant is None:
            result.state.runs += self._prune_runs(now, dry_run)
            if not dry_run:
                self._record_pass(now, result)
        log.info("retention.pruned", dry_run=dry_run, tenant=tenant, files=result.counts, kept=len(result.kept),
                 bodies=result.state.bodies, row_results=result.state.row_results,
                 outbox_rows=result.state.outbox_rows, notices=result.state.notices, runs=result.state.runs)
        return result

    def last_pass(self) -> datetime | None:
        """When the last whole pass (this node's, another's or ``sftpctl``'s) began: the time it
        pruned as of, recorded as ``finished_at``."""
        row = self.db.query_one("SELECT finished_at FROM retention_passes ORDER BY id DESC LIMIT 1")
        return parse_iso(row["finished_at"]) if row is not None else None

    def _record_pass(self, now: datetime, result: PruneResult) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO retention_passes (finished_at, files, problems) VALUES (?, ?, ?)",
                         (iso(now), sum(result.counts.values()), len(result.problems)))
            conn.execute("DELETE FROM retention_passes WHERE id <= (SELECT MAX(id) FROM retention_passes) - ?",
                         (PASSES_KEPT,))

    def _prune_tenant(self, tenant: Tenant, now: datetime, result: PruneResult) -> None:
        rules = tenant.retention
        for states, rule, days in ((PROCESSED, "upload_days", rules.upload_days),
                                   ((UploadState.REJECTED,), "rejected_days", rules.rejected_days)):
            for candidate in self._files_due(tenant.name, states, _cutoff(now, days)):
                self._prune_files(tenant, candidate, rule, days, result)
        for candidate in self._reports_due(tenant.name, _cutoff(now, rules.report_days)):
            self._prune_report(tenant, candidate, rules.report_days, result)
        self._prune_mail(tenant, now, result)
        self._prune_leftovers(tenant, now, result)

    def _files_due(self, tenant: str, states: Sequence[UploadState], cutoff: str) -> list[_Candidate]:
        marks = ", ".join("?" * len(states))
        rows = self.db.query(
            _CANDIDATES.format(marks=marks) + " AND r.files_at IS NULL ORDER BY s.upload_id",
            (tenant, *(state.value for state in states), cutoff),
        )
        return [_Candidate(*row) for row in rows]

    def _reports_due(self, tenant: str, cutoff: str) -> list[_Candidate]:
        """Finished uploads whose report is due, but for one whose notice is not sent yet (the
        mail attaches the report)."""
        marks = ", ".join("?" * len(FINAL_STATES))
        rows = self.db.query(
            _CANDIDATES.format(marks=marks) + " AND r.report_at IS NULL AND NOT EXISTS (SELECT 1 FROM ingest_notices n"
            "  WHERE n.upload_id = s.upload_id AND n.sent_at IS NULL) ORDER BY s.upload_id",
            (tenant, *(state.value for state in FINAL_STATES), cutoff),
        )
        return [_Candidate(*row) for row in rows]

    def _prune_files(self, tenant: Tenant, candidate: _Candidate, rule: str, days: int,
                     result: PruneResult) -> None:
        """The upload's file in ``in/`` (if still that upload), its snapshot, its posted bodies."""
        root = self.tenants.folders(tenant.name).root
        inbox_file = _inside(root, candidate.path)
        if inbox_file is not None:
            kept = _take_away(inbox_file, candidate.size, candidate.sha256, result.dry_run, self.at_rest)
            if kept is None:
                _deleted(result, Deletion(tenant.name, UPLOAD, str(inbox_file), candidate.upload_id, rule, days))
            elif kept:
                result.kept.append(Kept(tenant.name, UPLOAD, str(inbox_file), candidate.upload_id, kept))
                log.info("retention.kept", tenant=tenant.name, what=UPLOAD, path=str(inbox_file),
                         upload=candidate.upload_id, reason=kept)
        snapshot = self.staging_root / tenant.name / str(candidate.upload_id)
        if snapshot.is_dir() and _remove(snapshot, result.dry_run):
            _deleted(result, Deletion(tenant.name, SNAPSHOT, str(snapshot), candidate.upload_id, rule, days))
        with self.db.transaction() as conn:
            where = "upload_id = ? AND state = ? AND text != ''"
            params = (candidate.upload_id, OutboxState.POSTED.value)
            result.state.bodies += _apply(conn, "UPDATE ingest_outbox SET text = ''", "ingest_outbox", where,
                                          params, result.dry_run)
            if not result.dry_run:
                _remember(conn, candidate.upload_id, "files_at", result.now)

    def _prune_report(self, tenant: Tenant, candidate: _Candidate, days: int, result: PruneResult) -> None:
        """The report, and with it the file's per-row results, settled outbox rows and sent notices."""
        report = self._report_file(tenant.name, candidate.report)
        if report is not None and _is_file(report) and _remove(report, result.dry_run):
            _deleted(result, Deletion(tenant.name, REPORT, str(report), candidate.upload_id, "report_days", days))
        with self.db.transaction() as conn:
            still_finished = conn.execute(
                "SELECT 1 FROM ingest_staged WHERE upload_id = ? AND finished_at IS NOT NULL",
                (candidate.upload_id,)).fetchone()
            if still_finished is None:  # reopened by `sftpctl outbox retry` meanwhile: its rows are needed
                return
            upload = (candidate.upload_id,)
            state = result.state
            state.row_results += _apply(conn, "DELETE", "ingest_rows", "upload_id = ?", upload, result.dry_run)
            # Never the newest row of the outbox: SQLite gives a new row the largest id plus one, and
            # an id used again could be answered from the ledger's replay memory.
            state.outbox_rows += _apply(
                conn, "DELETE", "ingest_outbox",
                "upload_id = ? AND state != ? AND id < (SELECT MAX(id) FROM ingest_outbox)",
                (*upload, OutboxState.PENDING.value), result.dry_run)
            state.notices += _apply(conn, "DELETE", "ingest_notices", "upload_id = ? AND sent_at IS NOT NULL",
                                    upload, result.dry_run)
            left = conn.execute("SELECT 1 FROM ingest_outbox WHERE upload_id = ? LIMIT 1", upload).fetchone()
            if not result.dry_run and left is None:
                _remember(conn, candidate.upload_id, "report_at", result.now)

    def _report_file(self, tenant: str, stored: str | None) -> Path | None:
        """The report an upload's record names, in the tenant's ``out/`` as configured now (a
        path recorded under another working directory is found by its part below ``out/``)."""
        if not stored:
            return None
        out_dir = self.tenants.folders(tenant).reports_dir
        path = Path(stored)
        if not path.is_relative_to(out_dir):
            parts = path.parts
            below = [i for i in range(len(parts) - 1) if parts[i] == tenant and parts[i + 1] == OUT_DIR]
            if not below:
                return None
            path = out_dir.joinpath(*parts[below[-1] + 2:])
        return None if ".." in path.parts else path

    def _prune_mail(self, tenant: Tenant, now: datetime, result: PruneResult) -> None:
        """The tenant's mails in the spool older than its ``report_days``, but for one whose
        notice is not marked sent (it is sent again, under the same name)."""
        if not self.mail_spool.is_dir():
            return
        days = tenant.retention.report_days
        cutoff = (now - timedelta(days=days)).timestamp()
        ending = f"-{tenant.name}{MAIL_SUFFIX}"
        unsent = {row["mail_key"] for row in self.db.query(
            "SELECT DISTINCT mail_key FROM ingest_notices WHERE tenant = ? AND sent_at IS NULL"
            " AND mail_key IS NOT NULL", (tenant.name,))}
        for path in sorted(self.mail_spool.iterdir()):
            if not (path.name.endswith(ending) and _is_mail_name(path.name[:-len(ending)])):
                continue
            if path.name[:-len(MAIL_SUFFIX)] in unsent:
                continue
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_mtime <= cutoff and _remove(path, result.dry_run):
                _deleted(result, Deletion(tenant.name, MAIL, str(path), None, "report_days", days))

    def _prune_leftovers(self, tenant: Tenant, now: datetime, result: PruneResult) -> None:
        """Files a killed prune left moved aside in ``in/`` (hidden, never scanned or staged)."""
        cutoff = now.timestamp() - ASIDE_LEFTOVER_SECONDS
        for folder, dirs, files in os.walk(self.tenants.folders(tenant.name).inbox):
            dirs[:] = [name for name in dirs if not name.startswith(".")]
            for name in files:
                if not name.startswith(ASIDE_PREFIX):
                    continue
                path = Path(folder) / name
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode) or info.st_ctime > cutoff:
                    continue
                if _remove(path, result.dry_run):
                    _deleted(result, Deletion(tenant.name, UPLOAD, str(path), None, LEFTOVER, 0))

    def _prune_runs(self, now: datetime, dry_run: bool) -> int:
        """Run records finished ``report_days`` ago (the installation's) that nothing names,
        but for the latest run and the runs of the latest slot (which the catch-up reads)."""
        where = (
            "status != ? AND finished_at IS NOT NULL AND finished_at <= ?"
            " AND id NOT IN (SELECT run_id FROM ingest_staged WHERE run_id IS NOT NULL)"
            " AND id NOT IN (SELECT run_id FROM ingest_outbox)"
            " AND id < (SELECT MAX(id) FROM ingest_runs)"
            " AND (slot IS NULL OR slot < (SELECT MAX(slot) FROM ingest_runs))"
        )
        with self.db.transaction() as conn:
            return _apply(conn, "DELETE", "ingest_runs", where,
                          (RunStatus.RUNNING.value, _cutoff(now, self.run_days)), dry_run)


async def prune_hourly(pruner: Pruner, claims: Claims, interval: float = PRUNE_INTERVAL_SECONDS) -> None:
    """The daemon's pruning: at start, then every ``interval`` seconds, until cancelled; a
    failure is logged and the next hour tries again. Each time is :func:`prune_once`, so the
    nodes of a cluster prune once an hour between them, not once each."""
    while True:
        try:
            await prune_once(pruner, claims, interval)
        except Exception:  # the daemon goes on, and the next hour tries again; the log says why
            log.error("retention.prune_failed", exc_info=True)
        await asyncio.sleep(interval)


async def prune_once(pruner: Pruner, claims: Claims, interval: float = PRUNE_INTERVAL_SECONDS) -> bool:
    """A whole pass unless another node's is under way (the ``prune`` claim) or a pass began
    less than half an ``interval`` ago (another node's, or an operator's ``sftpctl prune``):
    then this hour's pass is done. True if it pruned.

    Two passes at once were harmless (each skips what the other deleted first), but each node
    walked every tenant's files every hour; with the claim and the last pass's time, the node
    whose hour comes first prunes and the others find it done.
    """
    try:
        async with claims.holding(PRUNE):
            last = await asyncio.to_thread(pruner.last_pass)
            now = utcnow()
            if last is not None and now - last < timedelta(seconds=interval / 2):
                log.info("retention.skipped", reason="pruned already", last_pass=iso(last))
                return False
            await asyncio.to_thread(pruner.prune, now)
            return True
    except ClaimHeld as held:
        holder = held.holder
        log.info("retention.skipped", reason="another node prunes",
                 host=holder.host if holder else None, pid=holder.pid if holder else None)
        return False


def _cutoff(now: datetime, days: int) -> str:
    """Finished at or before this (ISO text, as the state database stores times) means due."""
    return iso(now - timedelta(days=days))


def _apply(conn: sqlite3.Connection, action: str, table: str, where: str, params: tuple[object, ...],
           dry_run: bool) -> int:
    """``action`` (``DELETE`` or an ``UPDATE ... SET``) on the rows of ``table`` that ``where``
    selects, or, in a dry run, count them; returns how many."""
    if dry_run:
        row = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", params).fetchone()
        return int(row[0])
    statement = f"DELETE FROM {table}" if action == "DELETE" else action
    return conn.execute(f"{statement} WHERE {where}", params).rowcount


def _remember(conn: sqlite3.Connection, upload_id: int, column: str, when: str) -> None:
    conn.execute(
        f"INSERT INTO retention_pruned (upload_id, {column}) VALUES (?, ?)"
        f" ON CONFLICT (upload_id) DO UPDATE SET {column} = excluded.{column}",
        (upload_id, when),
    )


def _deleted(result: PruneResult, deletion: Deletion) -> None:
    result.deleted.append(deletion)
    log.info("retention.deleted", dry_run=result.dry_run, tenant=deletion.tenant, what=deletion.what,
             path=deletion.path, upload=deletion.upload_id, rule=deletion.rule, days=deletion.days)


def _inside(root: Path, upload_path: str) -> Path | None:
    """The file of an upload path (``in/a/b.csv``) under the tenant's root; None for a path that
    would leave it."""
    relative = Path(upload_path.lstrip("/"))
    if not relative.parts or ".." in relative.parts:
        return None
    return root / relative


def _remove(path: Path, dry_run: bool) -> bool:
    """Delete a file, or a folder and all in it (a snapshot's); False if it was gone already (a
    prune of another process took it first). A dry run deletes nothing and says True."""
    if dry_run:
        return True
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    return True


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _is_mail_name(stem: str) -> bool:
    """``<YYYYMMDDTHHMMSSZ>-run<id>``: the start of a name the mail spool's writer gives."""
    moment, _, run = stem.partition("-run")
    return (len(moment) == 16 and moment[8] == "T" and moment[15] == "Z"
            and (moment[:8] + moment[9:15]).isdigit() and run.isdigit())


def _take_away(path: Path, size: int, sha256: str, dry_run: bool, at_rest: AtRest) -> str | None:
    """Delete the upload's file at ``path`` if it is still that upload (regular, same plaintext
    size and sha256: it is read through ``at_rest``). Returns None when it is deleted (or, dry,
    would be), else why it is kept: an empty reason when there is nothing there.

    The file is moved aside before it is deleted and deleted only if what was moved is the file
    that was read: a newer upload that takes the name in the meantime (the front door publishes
    by a rename over the name) keeps it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"not a file that can be read: {exc.strerror or exc}"
    read = os.fstat(fd)
    if not stat.S_ISREG(read.st_mode):
        os.close(fd)
        return "not a regular file"
    try:
        with at_rest.open_fd(fd, str(path)) as reader:
            if reader.seek(0, io.SEEK_END) != size:
                return "a newer upload of the same name (another size)"
            reader.seek(0)
            digest = hashlib.sha256()
            while chunk := reader.read(READ_CHUNK_BYTES):
                digest.update(chunk)
    except TamperedFile:
        return "damaged (it fails authentication): kept for an operator to look at"
    if digest.hexdigest() != sha256:
        return "a newer upload of the same name (another sha256)"
    if dry_run:
        return None
    aside = path.with_name(f"{ASIDE_PREFIX}{secrets.token_hex(8)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return ""
    moved = os.lstat(aside)
    if _identity(moved) == _identity(read):
        os.unlink(aside)
        return None
    # An even newer file may hold the name by now: this one would have been replaced by it anyway.
    with contextlib.suppress(FileExistsError):
        os.link(aside, path, follow_symlinks=False)
    os.unlink(aside)
    return "a newer upload of the same name arrived during the prune"


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns
