"""Brute-force protection: too many failed logins lock an account, or a source address, for a while.

State lives in the state database rather than in memory, so the operator CLI (another process)
sees and clears lockouts, and the running server honours a clear on the very next attempt.
Failures are kept one row each, which makes the window a true sliding window; rows older than
the longest window are pruned as new failures arrive.

Failures for names that are not tenants count too, per source and per attempted name: locking a
name nobody owns harms no one, and treating every name alike keeps lockouts from revealing which
names exist.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from core.clock import iso, utcnow
from core.config import DefenderSettings
from core.db import Database
from core.logs import get_logger

log = get_logger(__name__)

COMPONENT = "sftpd"
MIGRATIONS = [
    """
    CREATE TABLE sftpd_auth_failures (
        kind TEXT NOT NULL CHECK (kind IN ('account', 'source')),
        key TEXT NOT NULL,
        failed_at TEXT NOT NULL
    );
    CREATE INDEX sftpd_auth_failures_by_key ON sftpd_auth_failures (kind, key, failed_at);
    CREATE INDEX sftpd_auth_failures_by_time ON sftpd_auth_failures (failed_at);
    CREATE TABLE sftpd_lockouts (
        kind TEXT NOT NULL CHECK (kind IN ('account', 'source')),
        key TEXT NOT NULL,
        locked_at TEXT NOT NULL,
        locked_until TEXT NOT NULL,
        failures INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    );
    """,
]

# Attempted user names are attacker-chosen; store no more than a real name could need.
MAX_KEY_LENGTH = 255

LockoutKind = Literal["account", "source"]


@dataclass(frozen=True)
class Lockout:
    """An active lockout: ``key`` is the account name or the source address."""

    kind: LockoutKind
    key: str
    until: str
    failures: int


@dataclass(frozen=True)
class _Policy:
    kind: LockoutKind
    max_failures: int
    window: timedelta
    lockout: timedelta


class Defender:
    """Counts failed logins and decides whether an account or a source may try again.

    Every method is a few short SQL statements; callers on an event loop should run them in a
    thread (the database may be busy with another process).
    """

    def __init__(
        self,
        db: Database,
        settings: DefenderSettings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self._clock = clock
        self._policies = {
            "account": _Policy(
                "account",
                settings.account_max_failures,
                timedelta(seconds=settings.account_window_seconds),
                timedelta(seconds=settings.account_lockout_seconds),
            ),
            "source": _Policy(
                "source",
                settings.source_max_failures,
                timedelta(seconds=settings.source_window_seconds),
                timedelta(seconds=settings.source_lockout_seconds),
            ),
        }
        db.migrate(COMPONENT, MIGRATIONS)

    def lockout_for(self, account: str, source: str) -> Lockout | None:
        """The lockout that stops ``account`` logging in from ``source`` now, if any."""
        now = iso(self._clock())
        row = self.db.query_one(
            "SELECT * FROM sftpd_lockouts WHERE locked_until > ?"
            " AND ((kind = 'account' AND key = ?) OR (kind = 'source' AND key = ?))"
            " ORDER BY locked_until DESC LIMIT 1",
            (now, _key(account), _key(source)),
        )
        return _lockout(row) if row else None

    def is_locked(self, account: str, source: str) -> bool:
        return self.lockout_for(account, source) is not None

    def record_failure(self, account: str, source: str) -> list[Lockout]:
        """Count a failed login; returns the lockouts it started (usually none)."""
        now = self._clock()
        started: list[Lockout] = []
        oldest = now - max(policy.window for policy in self._policies.values())
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM sftpd_auth_failures WHERE failed_at < ?", (iso(oldest),))
            for kind, key in (("account", account), ("source", source)):
                lockout = self._count(conn, self._policies[kind], _key(key), now)
                if lockout:
                    started.append(lockout)
        for lockout in started:
            log.warning(
                "auth.locked",
                kind=lockout.kind,
                key=lockout.key,
                until=lockout.until,
                failures=lockout.failures,
            )
        return started

    def record_success(self, account: str, source: str) -> None:
        """A good login forgets the account's failures (not the source's: it may be shared).

        Most logins have no failures to forget; checking first spares them a write transaction.
        """
        failed_before = self.db.query_one(
            "SELECT 1 FROM sftpd_auth_failures WHERE kind = 'account' AND key = ? LIMIT 1",
            (_key(account),),
        )
        if failed_before:
            self.db.execute(
                "DELETE FROM sftpd_auth_failures WHERE kind = 'account' AND key = ?",
                (_key(account),),
            )

    def lockouts(self) -> list[Lockout]:
        """Lockouts in force now, soonest to expire first."""
        rows = self.db.query(
            "SELECT * FROM sftpd_lockouts WHERE locked_until > ? ORDER BY locked_until, kind, key",
            (iso(self._clock()),),
        )
        return [_lockout(row) for row in rows]

    def unlock_account(self, name: str) -> bool:
        """Lift an account's lockout and forget its failures; False if it was not locked."""
        return self._unlock("account", name)

    def unlock_source(self, address: str) -> bool:
        """Lift a source address's lockout and forget its failures; False if it was not locked."""
        return self._unlock("source", address)

    def _count(
        self, conn: sqlite3.Connection, policy: _Policy, key: str, now: datetime
    ) -> Lockout | None:
        conn.execute(
            "INSERT INTO sftpd_auth_failures (kind, key, failed_at) VALUES (?, ?, ?)",
            (policy.kind, key, iso(now)),
        )
        failures = conn.execute(
            "SELECT COUNT(*) FROM sftpd_auth_failures"
            " WHERE kind = ? AND key = ? AND failed_at >= ?",
            (policy.kind, key, iso(now - policy.window)),
        ).fetchone()[0]
        if failures < policy.max_failures:
            return None
        already = conn.execute(
            "SELECT 1 FROM sftpd_lockouts WHERE kind = ? AND key = ? AND locked_until > ?",
            (policy.kind, key, iso(now)),
        ).fetchone()
        if already:
            return None
        until = iso(now + policy.lockout)
        conn.execute(
            "INSERT INTO sftpd_lockouts (kind, key, locked_at, locked_until, failures)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET"
            " locked_at = excluded.locked_at, locked_until = excluded.locked_until,"
            " failures = excluded.failures",
            (policy.kind, key, iso(now), until, failures),
        )
        conn.execute(
            "DELETE FROM sftpd_auth_failures WHERE kind = ? AND key = ?", (policy.kind, key)
        )
        return Lockout(policy.kind, key, until, failures)

    def _unlock(self, kind: LockoutKind, key: str) -> bool:
        with self.db.transaction() as conn:
            active = conn.execute(
                "SELECT 1 FROM sftpd_lockouts WHERE kind = ? AND key = ? AND locked_until > ?",
                (kind, _key(key), iso(self._clock())),
            ).fetchone()
            conn.execute("DELETE FROM sftpd_lockouts WHERE kind = ? AND key = ?", (kind, _key(key)))
            conn.execute(
                "DELETE FROM sftpd_auth_failures WHERE kind = ? AND key = ?", (kind, _key(key))
            )
        if active:
            log.info("auth.unlocked", kind=kind, key=key)
        return active is not None


def _key(value: str) -> str:
    return value[:MAX_KEY_LENGTH]


def _lockout(row: sqlite3.Row) -> Lockout:
    return Lockout(
        kind=row["kind"], key=row["key"], until=row["locked_until"], failures=row["failures"]
    )
