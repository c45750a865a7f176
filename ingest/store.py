"""The pipeline's tables in the state database: feeds, staged uploads, runs and the request log.

Everything the pipeline must remember across a crash lives here or in :mod:`ingest.delivery.outbox`
(the outbox and the per-row results). The tables belong to the ``ingest`` component and reference
the core ``tenants`` and ``uploads`` tables, so purging a tenant removes its feeds and its staged
files' history with it. An upload's state is not among them: ``uploads.state`` (core) is its one
owner, which :class:`StagedStore` reads by a join and moves through :class:`UploadStore`.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.clock import iso, now_iso
from core.db import Database
from core.errors import Conflict, NotFound
from core.tenants import TenantError
from core.uploads import UploadState, UploadStore
from ingest.rows.feeds import (
    DEFAULT_FEED,
    DEFAULT_FEED_TEXTS,
    Feed,
    default_feeds,
    parse_feed,
)

COMPONENT = "ingest"
#: Ids per ``IN (...)`` list: well under SQLite's limit of bound parameters.
IDS_PER_QUERY = 500

MIGRATIONS = [
    """
    CREATE TABLE ingest_feeds (
        tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        text TEXT NOT NULL,
        is_default INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE ingest_runs (
        id INTEGER PRIMARY KEY,
        trigger TEXT NOT NULL,
        slot TEXT,
        tenant TEXT,
        pid INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL DEFAULT 'running',
        files INTEGER NOT NULL DEFAULT 0,
        posted INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        pending INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX ingest_runs_by_slot ON ingest_runs (slot);
    CREATE TABLE ingest_staged (
        upload_id INTEGER PRIMARY KEY REFERENCES uploads(id) ON DELETE CASCADE,
        tenant TEXT NOT NULL,
        path TEXT NOT NULL,
        feed TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        staged_at TEXT NOT NULL,
        state TEXT NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        run_id INTEGER REFERENCES ingest_runs(id),
        rows_total INTEGER NOT NULL DEFAULT 0,
        report TEXT,
        finished_at TEXT
    );
    CREATE INDEX ingest_staged_by_state ON ingest_staged (state, tenant, upload_id);
    CREATE INDEX ingest_staged_by_path ON ingest_staged (tenant, path, state);
    CREATE TABLE ingest_outbox (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES ingest_runs(id),
        upload_id INTEGER NOT NULL REFERENCES ingest_staged(upload_id) ON DELETE CASCADE,
        tenant TEXT NOT NULL,
        row_number INTEGER NOT NULL,
        kind TEXT NOT NULL,
        method TEXT NOT NULL,
        url TEXT NOT NULL,
        token TEXT,
        key TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        status_code INTEGER,
        transaction_id TEXT,
        error TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT,
        UNIQUE (upload_id, row_number)
    );
    CREATE INDEX ingest_outbox_by_state ON ingest_outbox (state, tenant, id);
    CREATE TABLE ingest_rows (
        upload_id INTEGER NOT NULL REFERENCES ingest_staged(upload_id) ON DELETE CASCADE,
        row_number INTEGER NOT NULL,
        status TEXT NOT NULL,
        transaction_id TEXT,
        error TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (upload_id, row_number)
    );
    CREATE TABLE ingest_sends (
        limiter TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX ingest_sends_by_limiter ON ingest_sends (limiter, at);
    """,
    # Poison rows: when a row was queued, when it may be tried next (set aside after failing),
    # and whether the outbox gave up on delivering it (as opposed to the destination refusing it).
    """
    ALTER TABLE ingest_outbox ADD COLUMN queued_at TEXT;
    ALTER TABLE ingest_outbox ADD COLUMN next_attempt_at TEXT;
    ALTER TABLE ingest_outbox ADD COLUMN gave_up INTEGER NOT NULL DEFAULT 0;
    UPDATE ingest_outbox SET queued_at = updated_at;
    """,
    # Failure mail as durable as rows: a finished file that needs its contact told is queued in
    # the transaction that finishes it; ``mail_key`` names the message once it is first tried.
    """
    CREATE TABLE ingest_notices (
        id INTEGER PRIMARY KEY,
        upload_id INTEGER NOT NULL REFERENCES ingest_staged(upload_id) ON DELETE CASCADE,
        tenant TEXT NOT NULL,
        queued_at TEXT NOT NULL,
        mail_key TEXT,
        sent_at TEXT
    );
    CREATE INDEX ingest_notices_unsent ON ingest_notices (tenant, sent_at);
    """,
    # One owner, one word: a staged upload's state is ``uploads.state`` alone (it was written to
    # both tables in the same transactions, so nothing is lost); the request's JSON is ``text``
    # as in the code; a posted request is "posted" as in its row's status and the reports.
    # DROP COLUMN needs SQLite 3.35 (2021), and the column's indexes gone first.
    """
    DROP INDEX ingest_staged_by_state;
    DROP INDEX ingest_staged_by_path;
    ALTER TABLE ingest_staged DROP COLUMN state;
    CREATE INDEX ingest_staged_by_tenant ON ingest_staged (tenant, upload_id);
    CREATE INDEX ingest_staged_by_path ON ingest_staged (tenant, path);
    ALTER TABLE ingest_outbox RENAME COLUMN body TO text;
    UPDATE ingest_outbox SET state = 'posted' WHERE state = 'sent';
    """,
    # Runs go side by side (per-tenant claims, ``ingest.claims``): a run names its host as well as
    # its pid, so a run whose process is gone is told from one still going on another node.
    """
    ALTER TABLE ingest_runs ADD COLUMN host TEXT;
    CREATE INDEX ingest_runs_by_status ON ingest_runs (status);
    """,
    # A tenant's delivery trouble (destination down, token refused) is mailed once when it begins,
    # not at every run while it lasts: an open trouble is remembered until the destination answers.
    """
    CREATE TABLE ingest_troubles (
        tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        since TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (tenant, kind)
    );
    """,
    # A finished file's row counts, kept with its finish: its per-row results are pruned after
    # report_days (``ingest.retention``), its outcome in numbers stays.
    """
    ALTER TABLE ingest_staged ADD COLUMN final_posted INTEGER;
    ALTER TABLE ingest_staged ADD COLUMN final_failed INTEGER;
    ALTER TABLE ingest_staged ADD COLUMN final_rejected INTEGER;
    """,
]


def migrate(db: Database) -> None:
    """Create or upgrade the pipeline's tables (the core schema must already be applied)."""
    db.migrate(COMPONENT, MIGRATIONS)


def purge_tenant(db: Database, tenant: str) -> None:
    """Delete the pipeline's rows of ``tenant``: its queued and settled rows, staged uploads,
    feeds and the runs started for it alone. Part of ``sftpctl tenant purge``: call it before the
    tenant itself is deleted, while holding the tenant's claim; the staged snapshots are the caller's."""
    with db.transaction() as conn:
        conn.execute("DELETE FROM ingest_outbox WHERE tenant = ?", (tenant,))
        conn.execute("DELETE FROM ingest_notices WHERE tenant = ?", (tenant,))
        conn.execute(
            "DELETE FROM ingest_rows WHERE upload_id IN (SELECT upload_id FROM ingest_staged WHERE tenant = ?)",
            (tenant,),
        )
        conn.execute("DELETE FROM ingest_staged WHERE tenant = ?", (tenant,))
        conn.execute("DELETE FROM ingest_feeds WHERE tenant = ?", (tenant,))
        conn.execute(
            "DELETE FROM ingest_runs WHERE tenant = ? AND id NOT IN (SELECT run_id FROM ingest_staged"
            " WHERE run_id IS NOT NULL) AND id NOT IN (SELECT run_id FROM ingest_outbox)",
            (tenant,),
        )


class UnknownFeed(TenantError, NotFound):
    """A tenant has no feed of that name; the message lists the feeds it has."""


class FeedStore:
    """A tenant's feeds: the shipped ``default_feeds()`` plus the ones set with ``sftpctl feed set``.

    A stored feed replaces a shipped one of the same name. The default feed (files directly in
    ``in/``) is the one last set with ``default=True``, else the shipped default.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def set(self, tenant: str, text: str, source: str = "<feed>", default: bool = False) -> Feed:
        """Parse and store a feed (raises ``FeedError`` naming the line); returns it."""
        feed = parse_feed(text, source)
        with self.db.transaction() as conn:
            if default:
                conn.execute("UPDATE ingest_feeds SET is_default = 0 WHERE tenant = ?", (tenant,))
            conn.execute(
                "INSERT INTO ingest_feeds (tenant, name, text, is_default, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (tenant, name) DO UPDATE SET text = excluded.text,"
                " is_default = CASE WHEN excluded.is_default = 1 THEN 1 ELSE ingest_feeds.is_default END,"
                " updated_at = excluded.updated_at",
                (tenant, feed.name, text, int(default), now_iso()),
            )
        return feed

    def remove(self, tenant: str, name: str) -> bool:
        """Forget a feed set with :meth:`set`; False if none was (a shipped feed stays). A shipped
        feed of that name is the tenant's again; a removed default leaves the shipped default."""
        with self.db.transaction() as conn:
            cursor = conn.execute("DELETE FROM ingest_feeds WHERE tenant = ? AND name = ?", (tenant, name))
        return cursor.rowcount > 0

    def find(self, tenant: str, name: str) -> Feed | None:
        return self._feeds(tenant).get(name)

    def get(self, tenant: str, name: str) -> Feed:
        feeds = self._feeds(tenant)
        if name not in feeds:
            raise UnknownFeed(f"tenant {tenant!r} has no feed named {name!r} (feeds: {', '.join(feeds)})")
        return feeds[name]

    def list(self, tenant: str) -> list[Feed]:
        return list(self._feeds(tenant).values())

    def default(self, tenant: str) -> Feed:
        row = self.db.query_one(
            "SELECT text, name FROM ingest_feeds WHERE tenant = ? AND is_default = 1", (tenant,)
        )
        if row:
            return parse_feed(row["text"], _source(tenant, row["name"]))
        return self.get(tenant, DEFAULT_FEED)

    def names(self, tenant: str) -> Sequence[str]:
        """The tenant's feed names (its ``in/`` folders) without parsing any feed: asked at every
        upload by the front door and at staging."""
        rows = self.db.query("SELECT name FROM ingest_feeds WHERE tenant = ?", (tenant,))
        return sorted({*DEFAULT_FEED_TEXTS, *(row["name"] for row in rows)})

    def default_name(self, tenant: str) -> str:
        """The name of :meth:`default` without parsing any feed (staging asks for every upload)."""
        row = self.db.query_one(
            "SELECT name FROM ingest_feeds WHERE tenant = ? AND is_default = 1", (tenant,)
        )
        return str(row["name"]) if row else DEFAULT_FEED

    def text(self, tenant: str, name: str) -> str:
        """The TOML a feed was set from (a shipped feed's own definition if never set)."""
        row = self.db.query_one(
            "SELECT text FROM ingest_feeds WHERE tenant = ? AND name = ?", (tenant, name)
        )
        if row:
            return str(row["text"])
        return DEFAULT_FEED_TEXTS[self.get(tenant, name).name]

    def _feeds(self, tenant: str) -> dict[str, Feed]:
        feeds = default_feeds()
        rows = self.db.query("SELECT name, text FROM ingest_feeds WHERE tenant = ? ORDER BY name", (tenant,))
        for row in rows:
            feeds[row["name"]] = parse_feed(row["text"], _source(tenant, row["name"]))
        return feeds


def _source(tenant: str, name: str) -> str:
    return f"feed {name!r} of {tenant!r}"


@dataclass(frozen=True)
class StagedUpload:
    """An immutable snapshot of one completed upload, and what became of it.

    ``state`` is the upload's (``uploads.state``), read with it; it is not stored here.
    """

    upload_id: int
    tenant: str
    path: str
    feed: str
    snapshot: str
    sha256: str
    staged_at: str
    state: str
    error: str
    run_id: int | None
    rows_total: int
    report: str | None
    finished_at: str | None
    #: The row counts recorded when the file was finished (None before): see :meth:`StagedStore.finish`.
    final_posted: int | None = None
    final_failed: int | None = None
    final_rejected: int | None = None


class StagedStore:
    """Staged uploads: the processor's queue of files, and the supersede rule.

    Every state it reads is the upload's own (a join on ``uploads``) and every state it sets goes
    through the owner, :class:`UploadStore`, in the transaction that changes its own columns.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.uploads = UploadStore(db)

    def add(self, staged: StagedUpload) -> list[StagedUpload]:
        """Stage ``staged``; returns the uploads it supersedes (or itself, if a newer one is staged).

        Only uploads still waiting for a run are superseded: once a run has read a file, a new
        version of it is simply the next file to process. The upload becomes ``staged`` (its
        detail the reason its feed is unknown, if it is) or ``superseded``.
        """
        with self.db.transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM ingest_staged WHERE upload_id = ?", (staged.upload_id,)
            ).fetchone():
                return []
            # By the upload's (tenant, state, path) index: the path's waiting uploads, not its history.
            waiting = self._select(
                "u.tenant = ? AND u.state = ? AND u.path = ?",
                (staged.tenant, UploadState.STAGED.value, staged.path),
            )
            newer = [other for other in waiting if other.upload_id > staged.upload_id]
            conn.execute(
                "INSERT INTO ingest_staged (upload_id, tenant, path, feed, snapshot, sha256,"
                " staged_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (staged.upload_id, staged.tenant, staged.path, staged.feed, staged.snapshot,
                 staged.sha256, staged.staged_at, staged.error),
            )
            if newer:
                self.uploads.set_state(staged.upload_id, UploadState.SUPERSEDED, "superseded by a newer upload")
                return [self.get(staged.upload_id)]  # type: ignore[list-item]
            self.uploads.set_state(staged.upload_id, UploadState.STAGED, staged.error)
            older = [other for other in waiting if other.upload_id < staged.upload_id]
            for other in older:
                self.uploads.set_state(other.upload_id, UploadState.SUPERSEDED,
                                       f"superseded by upload {staged.upload_id}")
            # An older upload recorded but never staged (its node died in between, and the
            # client sent the file again) waits for nothing now: the scan stages a path's
            # latest upload only. Were it being staged after all, its own add finds this one.
            for row in conn.execute(
                "SELECT id FROM uploads WHERE tenant = ? AND state = ? AND path = ? AND id < ?",
                (staged.tenant, UploadState.RECEIVED.value, staged.path, staged.upload_id),
            ).fetchall():
                self.uploads.move(row["id"], UploadState.SUPERSEDED, f"superseded by upload {staged.upload_id}",
                                  only_from=(UploadState.RECEIVED,))
            return older

    def get(self, upload_id: int) -> StagedUpload | None:
        found = self._select("s.upload_id = ?", (upload_id,))
        return found[0] if found else None

    def waiting(self, tenants: list[str] | None = None) -> list[StagedUpload]:
        """Uploads staged for the next run, oldest first, of the given tenants (None: all)."""
        if tenants is None:
            return self._select("u.state = ?", (UploadState.STAGED.value,))
        return self._in_state(UploadState.STAGED, tenants)

    def tenants_with_work(self) -> set[str]:
        """Tenants a run has something to do for: an upload waiting or under way, a rejection
        whose report is not written, a failure mail not sent. Indexed reads: the cost follows
        what is open, not the number of tenants or the history."""
        rows = self.db.query(
            "SELECT tenant FROM uploads WHERE state IN (?, ?)"
            " UNION SELECT u.tenant FROM uploads u JOIN ingest_staged s ON s.upload_id = u.id"
            " WHERE u.state = ? AND s.finished_at IS NULL"
            " UNION SELECT DISTINCT tenant FROM ingest_notices WHERE sent_at IS NULL",
            (UploadState.STAGED.value, UploadState.PROCESSING.value, UploadState.REJECTED.value),
        )
        return {row["tenant"] for row in rows}

    def processing(self, tenants: list[str]) -> list[StagedUpload]:
        """Uploads whose rows are queued in the outbox, oldest first."""
        return self._in_state(UploadState.PROCESSING, tenants)

    def withdraw(self, upload_id: int, detail: str) -> bool:
        """A waiting upload is no longer to be processed (``superseded``, with ``detail``); False
        if a run claimed it first."""
        with self.db.transaction():
            return self.uploads.move(upload_id, UploadState.SUPERSEDED, detail, only_from=(UploadState.STAGED,))

    def claim(self, upload_id: int, run_id: int, rows_total: int, detail: str) -> bool:
        """Claim a waiting upload for a run (it becomes ``processing``); False if it was
        superseded in the meantime. Queue its rows in the same transaction."""
        with self.db.transaction() as conn:
            if not self.uploads.move(upload_id, UploadState.PROCESSING, detail, only_from=(UploadState.STAGED,)):
                return False
            conn.execute("UPDATE ingest_staged SET run_id = ?, rows_total = ? WHERE upload_id = ?",
                         (run_id, rows_total, upload_id))
            return True

    def reject(self, upload_id: int, run_id: int, rows_total: int, reason: str) -> bool:
        """Claim a waiting upload for a run as ``rejected`` for ``reason``; False as for
        :meth:`claim`. Queue its rejected rows in the same transaction."""
        with self.db.transaction() as conn:
            if not self.uploads.move(upload_id, UploadState.REJECTED, reason, only_from=(UploadState.STAGED,)):
                return False
            conn.execute("UPDATE ingest_staged SET run_id = ?, rows_total = ?, error = ? WHERE upload_id = ?",
                         (run_id, rows_total, reason, upload_id))
            return True

    def unreported_rejections(self, tenants: list[str]) -> list[StagedUpload]:
        """Rejected uploads whose report is not written yet (a crash came between the two)."""
        return self._of_tenants("u.state = ? AND s.finished_at IS NULL", (UploadState.REJECTED.value,), tenants)

    def reserve_report(self, upload_id: int, choose: Callable[[Callable[[str], bool]], str]) -> str:
        """The report path of an upload being finished: the one recorded before, or ``choose``'s.

        ``choose`` is told which paths other uploads hold. The path is recorded before the report
        is written, so finishing again after a crash rewrites the same report instead of adding a
        second one.
        """
        with self.db.transaction() as conn:
            row = conn.execute("SELECT report FROM ingest_staged WHERE upload_id = ?", (upload_id,)).fetchone()
            if row["report"]:
                return str(row["report"])

            def taken(path: str) -> bool:
                return conn.execute("SELECT 1 FROM ingest_staged WHERE report = ?", (path,)).fetchone() is not None

            path = choose(taken)
            conn.execute("UPDATE ingest_staged SET report = ? WHERE upload_id = ?", (path, upload_id))
            return path

    def finish(self, upload_id: int, state: UploadState, report: str | None, detail: str,
               counts: tuple[int, int, int] = (0, 0, 0)) -> None:
        """Record the report, the file's final row counts (posted, failed, rejected: kept after
        its per-row results are pruned) and give the upload its final ``state``; a rejected
        upload keeps its reason as its detail."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE ingest_staged SET report = ?, finished_at = ?, final_posted = ?, final_failed = ?,"
                         " final_rejected = ? WHERE upload_id = ?", (report, now_iso(), *counts, upload_id))
            if state != UploadState.REJECTED:
                self.uploads.set_state(upload_id, state, detail)

    def reopen(self, upload_ids: set[int]) -> None:
        """Make finished uploads ``processing`` again, their report to be written anew (the
        operator sent failed rows back to the outbox); call it in that transaction."""
        with self.db.transaction() as conn:
            for upload_id in sorted(upload_ids):
                if self.uploads.move(upload_id, UploadState.PROCESSING, "rows requeued by the operator",
                                     only_from=(UploadState.POSTED, UploadState.PARTLY_FAILED, UploadState.FAILED)):
                    conn.execute("UPDATE ingest_staged SET finished_at = NULL, report = NULL WHERE upload_id = ?",
                                 (upload_id,))

    def of_uploads(self, upload_ids: Sequence[int]) -> dict[int, StagedUpload]:
        """The staged uploads among ``upload_ids``, by id: a page of the history, not all of it
        (asked in chunks, under SQLite's limit of parameters)."""
        found: dict[int, StagedUpload] = {}
        for start in range(0, len(upload_ids), IDS_PER_QUERY):
            chunk = tuple(upload_ids[start:start + IDS_PER_QUERY])
            marks = ", ".join("?" * len(chunk))
            found.update((staged.upload_id, staged) for staged in self._select(f"s.upload_id IN ({marks})", chunk))
        return found

    def _in_state(self, state: UploadState, tenants: list[str]) -> list[StagedUpload]:
        """By the uploads' (tenant, state) index: the tenants' uploads in ``state``, not their history."""
        return self._of_tenants("u.state = ?", (state.value,), tenants)

    def _of_tenants(self, where: str, params: tuple[Any, ...], tenants: list[str]) -> list[StagedUpload]:
        """:meth:`_select` of ``where`` among ``tenants``' uploads; none, and no query, for no
        tenant (a run holding none): ``IN ()`` is SQLite's, not PostgreSQL's."""
        if not tenants:
            return []
        marks = ", ".join("?" * len(tenants))
        return self._select(f"{where} AND u.tenant IN ({marks})", (*params, *tenants))

    def _select(self, where: str, params: tuple[Any, ...]) -> list[StagedUpload]:
        """Staged uploads with their state (the upload's), oldest first."""
        rows = self.db.query(
            "SELECT s.*, u.state FROM ingest_staged s JOIN uploads u ON u.id = s.upload_id"
            f" WHERE {where} ORDER BY s.upload_id", params,
        )
        return [_staged(row) for row in rows]


@dataclass(frozen=True)
class Notice:
    """A finished file whose contact must hear of it, and the message that tells them, once named."""

    id: int
    upload_id: int
    tenant: str
    mail_key: str | None


class TroubleStore:
    """A tenant's open delivery troubles (``down``, ``refused``), each mailed to its contact once:
    recorded after the mail that told of it went out, closed once the destination answers."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def open_kinds(self, tenant: str) -> set[str]:
        rows = self.db.query("SELECT kind FROM ingest_troubles WHERE tenant = ?", (tenant,))
        return {row["kind"] for row in rows}

    def begin(self, tenant: str, kind: str, reason: str) -> None:
        self.db.execute("INSERT INTO ingest_troubles (tenant, kind, since, reason) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT DO NOTHING",
                        (tenant, kind, now_iso(), reason))

    def end(self, tenant: str, kinds: set[str]) -> None:
        for kind in kinds:
            self.db.execute("DELETE FROM ingest_troubles WHERE tenant = ? AND kind = ?", (tenant, kind))


class NoticeStore:
    """The failure-mail queue: at least once per finished file, the same message on every retry."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, upload_id: int, tenant: str) -> None:
        """Queue a notice; call it in the transaction that finishes the file."""
        self.db.execute("INSERT INTO ingest_notices (upload_id, tenant, queued_at) VALUES (?, ?, ?)",
                        (upload_id, tenant, now_iso()))

    def unsent(self, tenant: str) -> list[Notice]:
        rows = self.db.query(
            "SELECT id, upload_id, tenant, mail_key FROM ingest_notices WHERE tenant = ? AND sent_at IS NULL"
            " ORDER BY id", (tenant,),
        )
        return [Notice(row["id"], row["upload_id"], row["tenant"], row["mail_key"]) for row in rows]

    def name(self, ids: Sequence[int], mail_key: str) -> None:
        """Give notices not yet in a message the key of the message about to be sent."""
        with self.db.transaction() as conn:
            conn.executemany("UPDATE ingest_notices SET mail_key = ? WHERE id = ? AND mail_key IS NULL",
                             [(mail_key, notice_id) for notice_id in ids])

    def sent(self, mail_key: str) -> None:
        self.db.execute("UPDATE ingest_notices SET sent_at = ? WHERE mail_key = ? AND sent_at IS NULL",
                        (now_iso(), mail_key))


class RunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class Trigger(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    CATCH_UP = "catch-up"


@dataclass(frozen=True)
class RunRecord:
    """One run as ``sftpctl runs`` lists it; row counts are of rows settled by this run."""

    id: int
    trigger: str
    slot: str | None
    tenant: str | None
    pid: int
    started_at: str
    finished_at: str | None
    status: str
    files: int
    posted: int
    failed: int
    rejected: int
    pending: int
    detail: str
    host: str | None = None


@dataclass(frozen=True)
class RunCounts:
    files: int = 0
    posted: int = 0
    failed: int = 0
    rejected: int = 0
    pending: int = 0


INTERRUPTED_DETAIL = "the process stopped during the run; its pending rows are resumed by a later run"


class SlotTaken(RuntimeError, Conflict):
    """A run was already started for this schedule slot, here or on another node."""


class RunStore:
    """The run history; the slot column is how a missed slot is noticed at start-up, and how
    each slot runs once however many nodes share the state."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, trigger: Trigger, slot: datetime | None, tenant: str | None, pid: int) -> RunRecord:
        """Record a run as started. A schedule slot's run starts once, whichever process or node
        asks first (each has a schedule): the others get :class:`SlotTaken`."""
        with self.db.transaction() as conn:
            if slot is not None and conn.execute(
                "SELECT 1 FROM ingest_runs WHERE slot = ? LIMIT 1", (iso(slot),)
            ).fetchone():
                raise SlotTaken(f"a run was already started for the slot of {iso(slot)}")
            run_id = conn.execute(
                "INSERT INTO ingest_runs (trigger, slot, tenant, pid, host, started_at) VALUES (?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                (trigger.value, iso(slot) if slot else None, tenant, pid, socket.gethostname(), now_iso()),
            ).fetchone()
        assert run_id is not None
        record = self.get(int(run_id["id"]))
        assert record is not None
        return record

    def finish(self, run_id: int, status: RunStatus, counts: RunCounts, detail: str = "") -> RunRecord:
        self.db.execute(
            "UPDATE ingest_runs SET finished_at = ?, status = ?, files = ?, posted = ?, failed = ?,"
            " rejected = ?, pending = ?, detail = ? WHERE id = ?",
            (now_iso(), status.value, counts.files, counts.posted, counts.failed, counts.rejected,
             counts.pending, detail, run_id),
        )
        record = self.get(run_id)
        assert record is not None
        return record

    def mark_gone(self, exists: Callable[[int], bool]) -> int:
        """Close the runs left 'running' by a process of this host that no longer ``exists``
        (SIGKILL, a crash, a power cut); their claims lapse with them and their work is resumed."""
        host = socket.gethostname()
        rows = self.db.query(
            "SELECT id, pid FROM ingest_runs WHERE status = ? AND (host = ? OR host IS NULL)",
            (RunStatus.RUNNING.value, host),
        )
        gone = [row["id"] for row in rows if not exists(row["pid"])]
        for run_id in gone:
            self.db.execute(
                "UPDATE ingest_runs SET status = ?, finished_at = ?, detail = ? WHERE id = ? AND status = ?",
                (RunStatus.INTERRUPTED.value, now_iso(), INTERRUPTED_DETAIL, run_id, RunStatus.RUNNING.value),
            )
        return len(gone)

    def get(self, run_id: int) -> RunRecord | None:
        row = self.db.query_one("SELECT * FROM ingest_runs WHERE id = ?", (run_id,))
        return _run(row) if row else None

    def recent(self, limit: int) -> list[RunRecord]:
        rows = self.db.query("SELECT * FROM ingest_runs ORDER BY id DESC LIMIT ?", (limit,))
        return [_run(row) for row in rows]

    def last_slot(self) -> str | None:
        """The latest schedule slot a run was started for (scheduled or catch-up)."""
        row = self.db.query_one("SELECT MAX(slot) AS slot FROM ingest_runs WHERE slot IS NOT NULL")
        return row["slot"] if row else None


class SendLog:
    """When requests per rate-limit key completed, so a new process honours earlier sends.

    A tenant's rows are posted by one process at a time (its claim), each process with its own
    limiter; seeding a limiter from this log keeps the window exact from one holder to the next.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, limiter: str, at: float) -> None:
        self.db.execute("INSERT INTO ingest_sends (limiter, at) VALUES (?, ?)", (limiter, at))

    def since(self, limiter: str, start: float) -> list[float]:
        rows = self.db.query(
            "SELECT at FROM ingest_sends WHERE limiter = ? AND at >= ? ORDER BY at", (limiter, start)
        )
        return [row["at"] for row in rows]

    def prune(self, before: float) -> None:
        self.db.execute("DELETE FROM ingest_sends WHERE at < ?", (before,))


def _staged(row: sqlite3.Row) -> StagedUpload:
    return StagedUpload(**dict(row))


def _run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(**dict(row))
