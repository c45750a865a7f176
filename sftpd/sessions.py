"""Logged-in sessions, counted in the state database: a tenant's cap holds across processes.

``[server] max_sessions_per_tenant`` is what one tenant may hold of the whole service. Counted in
each process's memory, it let a tenant hold N times as many with ``[server] workers = N``, and as
many again on every node sharing the database. So each login is a row here, taken in one
transaction with the count it is checked against (both engines serialise the state's writers),
and removed when the connection ends.

A row names its process (host, pid and a random token) and a lease, which the process renews for
all its rows together every :data:`RENEW_EVERY_SECONDS` (``SftpServer`` does, while it serves).
The count leaves out a row whose process is gone: at once for a process of this host that no
longer exists (``kill -9``, a crash: ``core.processes``), once its lease has run out for one on
another host; the next login of that tenant removes such rows. This process's own rows count
only while their connections are open (one :class:`Sessions` a process), so a place given back
here is free at once, whether or not its row's removal has reached the database yet.

Each login and each logout is one short write transaction, run off the event loop by the caller.

An operator ends sessions (:func:`end_sessions`: ``sftpctl tenant disable``, ``tenant passwd``,
``tenant remove``, ``sessions end``) by writing the reason on their rows: a login that no longer
holds keeps no session open, on any worker or node. The process serving each reads its own rows
every :data:`END_POLL_SECONDS` (:meth:`Sessions.to_end`) and closes the connection, the client
told why.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.clock import iso
from core.db import Database
from core.processes import holder_lives

__all__ = ["END_POLL_SECONDS", "LEASE_SECONDS", "RENEW_EVERY_SECONDS", "Session", "Sessions", "SessionsFull",
           "end_sessions", "live_sessions", "still_open"]

COMPONENT = "sftpd.sessions"
MIGRATIONS = [
    """
    CREATE TABLE sftpd_sessions (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        source TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        token TEXT NOT NULL,
        opened_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX sftpd_sessions_by_tenant ON sftpd_sessions (tenant);
    CREATE INDEX sftpd_sessions_by_token ON sftpd_sessions (token);
    """,
    # Why an operator ended a session (``sftpctl tenant disable``, ``sessions end``); NULL while
    # nobody did. Its process reads it and closes the connection with it.
    "ALTER TABLE sftpd_sessions ADD COLUMN end_reason TEXT;",
]

#: How long a process's sessions count without renewal: a node that died, or lost the database,
#: holds its tenants' places no longer than this.
LEASE_SECONDS = 120.0
RENEW_EVERY_SECONDS = LEASE_SECONDS / 4
#: How often a serving process looks for its sessions an operator ended: the most such a session
#: goes on after ``sftpctl tenant disable`` says it is being closed.
END_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Session:
    """A logged-in session as ``sftpctl sessions`` shows it: whose, from where, served by which
    process, since when."""

    id: int
    tenant: str
    source: str
    host: str
    pid: int
    opened_at: str


class SessionsFull(Exception):
    """The tenant holds its cap already; ``held`` is how many sessions it has open."""

    def __init__(self, held: int) -> None:
        super().__init__(f"{held} sessions open")
        self.held = held


class Sessions:
    """This process's logged-in sessions in the shared table: open, close, renew.

    Its methods block on the database: call them from a worker thread in async code. They may
    run on several threads at once.
    """

    def __init__(self, db: Database, lease_seconds: float = LEASE_SECONDS) -> None:
        db.migrate(COMPONENT, MIGRATIONS)
        self.db = db
        self.lease_seconds = lease_seconds
        self.host = socket.gethostname()
        self.token = secrets.token_hex(8)
        self._lock = threading.Lock()
        #: Rows of connections open now, and rows whose connection ended but whose removal failed
        #: (the database was unreachable): :meth:`renew` removes those.
        self._open: set[int] = set()
        self._leftover: set[int] = set()

    def open(self, tenant: str, source: str, limit: int) -> int:
        """A place for one more session of ``tenant``: its row's id, or :class:`SessionsFull`."""
        now = time.time()
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT id, host, pid, token, expires_at FROM sftpd_sessions WHERE tenant = ?",
                                (tenant,)).fetchall()
            gone = [row["id"] for row in rows if not self._counts(row, now)]
            _delete(conn, gone)
            held = len(rows) - len(gone)
            if held >= limit:
                raise SessionsFull(held)
            row = conn.execute(
                "INSERT INTO sftpd_sessions (tenant, source, host, pid, token, opened_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (tenant, source, self.host, os.getpid(), self.token, now, now + self.lease_seconds),
            ).fetchone()
            session = int(row[0])
            with self._lock:
                self._open.add(session)
        return session

    def close(self, session: int) -> None:
        """Give the place back. It is free for this process at once; if the row cannot be removed
        now (the database is unreachable), :meth:`renew` removes it later."""
        with self._lock:
            self._open.discard(session)
            self._leftover.add(session)
        self.db.execute("DELETE FROM sftpd_sessions WHERE id = ? AND token = ?", (session, self.token))
        with self._lock:
            self._leftover.discard(session)

    def renew(self) -> None:
        """Extend the lease of this process's open sessions; remove the rows of closed ones."""
        with self._lock:
            leftover = sorted(self._leftover)
        with self.db.transaction() as conn:
            conn.execute("UPDATE sftpd_sessions SET expires_at = ? WHERE token = ?",
                         (time.time() + self.lease_seconds, self.token))
            _delete(conn, leftover)
        with self._lock:
            self._leftover.difference_update(leftover)

    def to_end(self) -> list[tuple[int, str]]:
        """This process's open sessions an operator ended, with the reason: each to be closed."""
        rows = self.db.query("SELECT id, end_reason FROM sftpd_sessions WHERE token = ? AND end_reason IS NOT NULL",
                             (self.token,))
        with self._lock:
            return [(int(row["id"]), row["end_reason"]) for row in rows if int(row["id"]) in self._open]

    def close_all(self) -> None:
        """Remove every row of this process (it stops serving)."""
        with self._lock:
            self._open.clear()
            self._leftover.clear()
        self.db.execute("DELETE FROM sftpd_sessions WHERE token = ?", (self.token,))

    def held(self, tenant: str) -> int:
        """How many sessions ``tenant`` holds now, every process's counted."""
        now = time.time()
        rows = self.db.query("SELECT id, host, pid, token, expires_at FROM sftpd_sessions WHERE tenant = ?",
                             (tenant,))
        return sum(1 for row in rows if self._counts(row, now))

    def _counts(self, row: sqlite3.Row, now: float) -> bool:
        """Whether a row holds a place: this process's while its connection is open; another's
        while it :func:`_holds`. A row of this host and pid but another token is a process's
        that had our pid before us (a restarted container's daemon is pid 1 every time)."""
        if row["token"] == self.token:
            with self._lock:
                return int(row["id"]) in self._open
        ours = row["host"] == self.host and int(row["pid"]) == os.getpid()
        return not ours and _holds(row, now, self.host)


def live_sessions(db: Database, tenant: str | None = None) -> list[Session]:
    """The sessions open now on every process and node, oldest first, as a process that serves
    none sees them (``sftpctl``): rows whose process is gone are left out."""
    db.migrate(COMPONENT, MIGRATIONS)
    where, params = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
    rows = db.query(f"SELECT * FROM sftpd_sessions {where} ORDER BY opened_at, id", params)
    return [Session(int(row["id"]), row["tenant"], row["source"], row["host"], int(row["pid"]),
                    iso(datetime.fromtimestamp(row["opened_at"], UTC)))
            for row in still_open(rows)]


def end_sessions(db: Database, reason: str, tenant: str | None = None, ids: Sequence[int] = ()) -> list[Session]:
    """Ask the processes serving them to close the open sessions of ``tenant`` and of ``ids``,
    telling each client ``reason``; the sessions so ended. Each process closes its own within
    :data:`END_POLL_SECONDS`; a session that is gone meanwhile needs nothing."""
    ending = [session for session in live_sessions(db)
              if session.tenant == tenant or session.id in ids]
    with db.transaction() as conn:
        conn.executemany("UPDATE sftpd_sessions SET end_reason = ? WHERE id = ?",
                         [(reason, session.id) for session in ending])
    return ending


def still_open(rows: Iterable[sqlite3.Row]) -> list[sqlite3.Row]:
    """The rows of ``sftpd_sessions`` (``host``, ``pid`` and ``expires_at`` at least) whose
    sessions are open, as a process that serves none sees them (``sftpctl``, the admin
    listener's figures)."""
    now, here = time.time(), socket.gethostname()
    return [row for row in rows if _holds(row, now, here)]


def _holds(row: sqlite3.Row, now: float, here: str) -> bool:
    """Whether another process's row holds a place: while its lease lasts and, on this host
    (``here``), its process lives."""
    return holder_lives(row["host"], int(row["pid"]), row["expires_at"], now, here)


def _delete(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    if ids:
        conn.execute(f"DELETE FROM sftpd_sessions WHERE id IN ({', '.join('?' * len(ids))})", tuple(ids))
