"""What the state database says now, read for a scrape or a page load off the event loop.

The figures come from the tables every process writes (the daemon and ``sftpctl run`` alike), so a
run started by ``sftpctl`` counts as one the daemon started. The reads use a read-only connection
of their own (``core.db.Reader``, on SQLite or PostgreSQL), on a thread of their own, and are cut
off after ``read_timeout_seconds``, so a slow read costs the scrape an error and never holds the
daemon's connection, its lock or the threads logins use.
Scrapes arriving together share one read, and a read younger than :data:`MAX_AGE_SECONDS` is
reused: ten scrapes a second cost one read a second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from core.clock import iso, parse_iso, utcnow
from core.config import RETENTION_RULES
from core.db import DatabaseUnavailable, Location, Reader, ReadFailed
from sftpd.sessions import still_open

MAX_AGE_SECONDS = 1.0
# Upload states a file is still waiting in (not yet finished one way or another).
WAITING_STATES = ("received", "staged", "processing")
RUN_OVER = ("finished", "failed")

T = TypeVar("T")


class SnapshotError(RuntimeError):
    """The state database did not answer in time, or not at all; the message says which."""


@dataclass(frozen=True)
class TenantState:
    name: str
    enabled: bool
    has_login: bool
    locked_until: str | None
    last_upload: str | None
    last_report: str | None
    files_waiting: int
    rows_pending: int
    # The tenant's own retention rules (``sftpctl tenant retention``), by rule; others are the
    # installation's ``[retention]``.
    retention_own: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LockoutState:
    kind: str
    account: str
    source: str
    until: str


@dataclass(frozen=True)
class RunState:
    id: int
    trigger: str
    status: str
    tenant: str | None
    started_at: str
    finished_at: str | None


@dataclass(frozen=True)
class PruneState:
    """The last whole retention pass: when it ended, files deleted, tenants it failed for."""

    finished_at: str
    files: int
    problems: int


@dataclass(frozen=True)
class OutboxItemState:
    tenant: str
    path: str
    queued_at: str


@dataclass(frozen=True)
class Snapshot:
    """The database's figures at ``taken_at``; ``(tenant, label)`` keys carry the tenant so the
    metrics may sum it away or keep it (``[admin] per_tenant_labels``)."""

    taken_at: datetime
    uploads: Counter[str] = field(default_factory=Counter)
    upload_bytes: Counter[str] = field(default_factory=Counter)
    files: Counter[tuple[str, str]] = field(default_factory=Counter)
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    outbox_pending: Counter[str] = field(default_factory=Counter)
    outbox_oldest: OutboxItemState | None = None
    responses: Counter[str] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)
    run_durations: tuple[float, ...] = ()
    last_run: RunState | None = None
    last_prune: PruneState | None = None
    lockouts: tuple[LockoutState, ...] = ()
    #: Logged-in sessions by tenant, every worker's and node's (``sftpd.sessions``).
    sessions: Counter[str] = field(default_factory=Counter)
    tenants: tuple[TenantState, ...] = ()


def read_snapshot(reader: Reader, now: datetime) -> Snapshot:
    """Every figure in one read transaction, so they agree with each other."""
    with reader.read() as conn:
        return _read(conn, reader.tables(), reader.columns("tenants"), now)


def _read(conn: sqlite3.Connection, tables: set[str], tenant_columns: set[str], now: datetime) -> Snapshot:
    snapshot = Snapshot(taken_at=now)
    for row in conn.execute("SELECT tenant, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM uploads"
                            " GROUP BY tenant"):
        snapshot.uploads[row["tenant"]] = row["n"]
        snapshot.upload_bytes[row["tenant"]] = row["bytes"]
    waiting: Counter[str] = Counter()
    for row in conn.execute("SELECT tenant, state, COUNT(*) AS n FROM uploads GROUP BY tenant, state"):
        snapshot.files[(row["tenant"], row["state"])] = row["n"]
        if row["state"] in WAITING_STATES:
            waiting[row["tenant"]] += row["n"]
    if "ingest_rows" in tables:
        for row in conn.execute("SELECT s.tenant, r.status, COUNT(*) AS n FROM ingest_rows r"
                                " JOIN ingest_staged s ON s.upload_id = r.upload_id GROUP BY s.tenant, r.status"):
            snapshot.rows[(row["tenant"], row["status"])] = row["n"]
        for row in conn.execute("SELECT tenant, COUNT(*) AS n FROM ingest_outbox WHERE state = 'pending'"
                                " GROUP BY tenant"):
            snapshot.outbox_pending[row["tenant"]] = row["n"]
        oldest = conn.execute(
            "SELECT o.tenant, o.queued_at, s.path FROM ingest_outbox o"
            " LEFT JOIN ingest_staged s ON s.upload_id = o.upload_id"
            " WHERE o.state = 'pending' ORDER BY o.id LIMIT 1").fetchone()
        if oldest is not None:
            snapshot = _with(snapshot, outbox_oldest=OutboxItemState(
                oldest["tenant"], oldest["path"] or "", oldest["queued_at"] or ""))
        for row in conn.execute("SELECT status_code / 100 AS class, COUNT(*) AS n FROM ingest_outbox"
                                " WHERE status_code IS NOT NULL GROUP BY class"):
            snapshot.responses[f"{row['class']}xx"] = row["n"]
        snapshot = _read_runs(conn, snapshot)
    if "retention_passes" in tables:
        last = conn.execute("SELECT finished_at, files, problems FROM retention_passes ORDER BY id DESC LIMIT 1"
                            ).fetchone()
        if last is not None:
            snapshot = _with(snapshot, last_prune=PruneState(last["finished_at"], last["files"], last["problems"]))
    if "sftpd_sessions" in tables:
        rows = conn.execute("SELECT tenant, host, pid, expires_at FROM sftpd_sessions").fetchall()
        snapshot.sessions.update(row["tenant"] for row in still_open(rows))
    lockouts = _lockouts(conn, now) if "sftpd_login_lockouts" in tables else ()
    return _with(snapshot, lockouts=lockouts,
                 tenants=_tenants(conn, tables, tenant_columns, lockouts, waiting, snapshot))


def _read_runs(conn: sqlite3.Connection, snapshot: Snapshot) -> Snapshot:
    for row in conn.execute("SELECT status, COUNT(*) AS n FROM ingest_runs GROUP BY status"):
        snapshot.runs[row["status"]] = row["n"]
    marks = ", ".join("?" * len(RUN_OVER))
    durations = tuple(
        max(0.0, (parse_iso(row["finished_at"]) - parse_iso(row["started_at"])).total_seconds())
        for row in conn.execute(f"SELECT started_at, finished_at FROM ingest_runs WHERE status IN ({marks})"
                                " AND finished_at IS NOT NULL", RUN_OVER)
    )
    last = conn.execute("SELECT * FROM ingest_runs ORDER BY id DESC LIMIT 1").fetchone()
    run = None if last is None else RunState(last["id"], last["trigger"], last["status"], last["tenant"],
                                             last["started_at"], last["finished_at"])
    return _with(snapshot, run_durations=durations, last_run=run)


def _lockouts(conn: sqlite3.Connection, now: datetime) -> tuple[LockoutState, ...]:
    rows = conn.execute("SELECT kind, account, source, locked_until FROM sftpd_login_lockouts"
                        " WHERE locked_until > ? ORDER BY locked_until", (iso(now),))
    return tuple(LockoutState(r["kind"], r["account"], r["source"], r["locked_until"]) for r in rows)


def _tenants(
    conn: sqlite3.Connection, tables: set[str], columns: set[str], lockouts: tuple[LockoutState, ...],
    waiting: Counter[str], snapshot: Snapshot,
) -> tuple[TenantState, ...]:
    locked = {lockout.account: lockout.until for lockout in lockouts if lockout.kind == "account"}
    last_upload = {r["tenant"]: r["at"] for r in conn.execute(
        "SELECT tenant, MAX(received_at) AS at FROM uploads GROUP BY tenant")}
    last_report: dict[str, str] = {}
    if "ingest_staged" in tables:
        last_report = {r["tenant"]: r["at"] for r in conn.execute(
            "SELECT tenant, MAX(finished_at) AS at FROM ingest_staged WHERE report IS NOT NULL GROUP BY tenant")}
    rules = [rule for rule in RETENTION_RULES if rule in columns]
    rows = conn.execute("SELECT name, enabled, password_hash IS NOT NULL AS has_login"
                        + "".join(f", {rule}" for rule in rules) + " FROM tenants ORDER BY name")
    return tuple(
        TenantState(r["name"], bool(r["enabled"]), bool(r["has_login"]), locked.get(r["name"]),
                    last_upload.get(r["name"]), last_report.get(r["name"]), waiting[r["name"]],
                    snapshot.outbox_pending[r["name"]], {rule: r[rule] for rule in rules if r[rule] is not None})
        for r in rows
    )


def _with(snapshot: Snapshot, **changes: Any) -> Snapshot:
    return dataclasses.replace(snapshot, **changes)


class SnapshotReader:
    """Reads :class:`Snapshot` s for the admin listener: one thread, one connection, a deadline."""

    def __init__(self, state: Location, timeout_seconds: float, clock: Callable[[], datetime] = utcnow) -> None:
        self._timeout = timeout_seconds
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="admin-read")
        self._reader = Reader(state, timeout_seconds)
        self._latest: tuple[float, Snapshot] | None = None
        self._reading: asyncio.Future[Snapshot] | None = None

    async def snapshot(self) -> Snapshot:
        """A snapshot at most :data:`MAX_AGE_SECONDS` old; raises :class:`SnapshotError`."""
        if self._latest is not None and time.monotonic() - self._latest[0] < MAX_AGE_SECONDS:
            return self._latest[1]
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._reading)

    async def ping(self) -> None:
        """Raise :class:`SnapshotError` unless the database answers a trivial query in time."""
        await self._in_thread(lambda reader: reader.ping())

    async def call(self, work: Callable[[], T]) -> T:
        """Run blocking ``work`` (the disk, the page's rendering) on the reader's thread, never on
        the event loop nor on the threads logins use."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._reader.close)
        self._executor.shutdown(wait=False)

    async def _read(self) -> Snapshot:
        started = time.monotonic()
        snapshot = await self._in_thread(lambda reader: read_snapshot(reader, self._clock()))
        self._latest = (started, snapshot)
        return snapshot

    async def _in_thread(self, work: Callable[[Reader], T]) -> T:
        try:
            result = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._executor, work, self._reader),
                self._timeout + 1.0)
        except (TimeoutError, DatabaseUnavailable) as exc:
            raise SnapshotError(f"the state database did not answer within {self._timeout:g} s"
                                f" ({exc or 'timed out'})") from None
        except ReadFailed as exc:
            raise SnapshotError(f"the state database failed: {exc}") from None
        return result
