"""Brute-force protection that an attacker cannot turn against the tenant it attacks.

Every failed login counts three ways, each with its own threshold, window and lockout time:

- the (account, source address) pair: too many failures lock that account from that address;
- the source address: too many failures, whatever the names, lock every login from it;
- the account: too many failures from anywhere lock the account, but only for sources that
  have never logged in to it successfully. Each good login remembers its (account, source) pair
  for ``known_source_days``, so a distributed guessing attack still locks the account for
  strangers while the tenant's usual address keeps working. The tenant's address is only ever
  locked by failures from that very address.

State lives in the state database rather than in memory, so the operator CLI (another process)
sees and clears lockouts, and the running server honours a clear on the very next attempt.
Failures are kept one row each, which makes the window a true sliding window; rows older than
the longest window are pruned as new failures arrive.

Failures for names that are not tenants count too, per source and per attempted name: locking a
name nobody owns harms no one, and treating every name alike keeps lockouts from revealing which
names exist (only real logins make a source known, and a known source changes nothing the
attacker of another address can observe).
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
    # Pair lockouts and known sources: a row names its account and its source ('' if unused).
    """
    CREATE TABLE sftpd_login_failures (
        kind TEXT NOT NULL CHECK (kind IN ('account', 'source', 'pair')),
        account TEXT NOT NULL,
        source TEXT NOT NULL,
        failed_at TEXT NOT NULL
    );
    CREATE INDEX sftpd_login_failures_by_key
        ON sftpd_login_failures (kind, account, source, failed_at);
    CREATE INDEX sftpd_login_failures_by_time ON sftpd_login_failures (failed_at);
    INSERT INTO sftpd_login_failures (kind, account, source, failed_at)
        SELECT kind, CASE kind WHEN 'account' THEN key ELSE '' END,
               CASE kind WHEN 'source' THEN key ELSE '' END, failed_at
        FROM sftpd_auth_failures;
    DROP TABLE sftpd_auth_failures;
    CREATE TABLE sftpd_login_lockouts (
        kind TEXT NOT NULL CHECK (kind IN ('account', 'source', 'pair')),
        account TEXT NOT NULL,
        source TEXT NOT NULL,
        locked_at TEXT NOT NULL,
        locked_until TEXT NOT NULL,
        failures INTEGER NOT NULL,
        PRIMARY KEY (kind, account, source)
    );
    CREATE INDEX sftpd_login_lockouts_by_source ON sftpd_login_lockouts (source, kind);
    INSERT INTO sftpd_login_lockouts
        (kind, account, source, locked_at, locked_until, failures)
        SELECT kind, CASE kind WHEN 'account' THEN key ELSE '' END,
               CASE kind WHEN 'source' THEN key ELSE '' END, locked_at, locked_until, failures
        FROM sftpd_lockouts;
    DROP TABLE sftpd_lockouts;
    CREATE TABLE sftpd_known_sources (
        account TEXT NOT NULL,
        source TEXT NOT NULL,
        last_login TEXT NOT NULL,
        PRIMARY KEY (account, source)
    );
    CREATE INDEX sftpd_known_sources_by_time ON sftpd_known_sources (last_login);
    """,
]

# Attempted user names are attacker-chosen; store no more than a real name could need.
MAX_KEY_LENGTH = 255
# A known source's last login is written again only when it is older than this, so an
# everyday login costs no write transaction.
KNOWN_SOURCE_REFRESH = timedelta(days=1)

LockoutKind = Literal["account", "source", "pair"]


@dataclass(frozen=True)
class Lockout:
    """An active lockout: ``key`` is the account name (kinds ``account`` and ``pair``) or the
    source address (``source``); ``source`` is a pair's address, empty for the other kinds."""

    kind: LockoutKind
    key: str
    until: str
    failures: int
    source: str = ""


@dataclass(frozen=True)
class _Policy:
    kind: LockoutKind
    max_failures: int
    window: timedelta
    lockout: timedelta


class Defender:
    """Counts failed logins and decides whether an account may log in from a source.

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
            "pair": _Policy(
                "pair",
                settings.pair_max_failures,
                timedelta(seconds=settings.pair_window_seconds),
                timedelta(seconds=settings.pair_lockout_seconds),
            ),
            "source": _Policy(
                "source",
                settings.source_max_failures,
                timedelta(seconds=settings.source_window_seconds),
                timedelta(seconds=settings.source_lockout_seconds),
            ),
        }
        self._known_for = timedelta(days=settings.known_source_days)
        db.migrate(COMPONENT, MIGRATIONS)

    def lockout_for(self, account: str, source: str) -> Lockout | None:
        """The lockout that stops ``account`` logging in from ``source`` now, if any.

        An account-wide lockout does not stop a source the account logged in from before.
        """
        now = self._clock()
        account, source = _key(account), _key(source)
        rows = self.db.query(
            "SELECT * FROM sftpd_login_lockouts WHERE locked_until > ? AND ("
            " (kind = 'source' AND account = '' AND source = ?)"
            " OR (kind = 'pair' AND account = ? AND source = ?)"
            " OR (kind = 'account' AND account = ? AND source = ''))"
            " ORDER BY locked_until DESC",
            (iso(now), source, account, source, account),
        )
        for row in rows:
            if row["kind"] == "account" and self.is_known(account, source):
                continue
            return _lockout(row)
        return None

    def is_locked(self, account: str, source: str) -> bool:
        return self.lockout_for(account, source) is not None

    def is_known(self, account: str, source: str) -> bool:
        """Whether ``account`` logged in from ``source`` within ``known_source_days``."""
        cutoff = iso(self._clock() - self._known_for)
        row = self.db.query_one(
            "SELECT 1 FROM sftpd_known_sources WHERE account = ? AND source = ?"
            " AND last_login >= ?",
            (_key(account), _key(source), cutoff),
        )
        return row is not None

    def record_failure(self, account: str, source: str) -> list[Lockout]:
        """Count a failed login; returns the lockouts it started (usually none)."""
        now = self._clock()
        account, source = _key(account), _key(source)
        started: list[Lockout] = []
        oldest = now - max(policy.window for policy in self._policies.values())
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM sftpd_login_failures WHERE failed_at < ?", (iso(oldest),))
            for kind, pair in (
                ("pair", (account, source)),
                ("account", (account, "")),
                ("source", ("", source)),
            ):
                lockout = self._count(conn, self._policies[kind], pair, now)
                if lockout:
                    started.append(lockout)
        for lockout in started:
            log.warning(
                "auth.locked",
                kind=lockout.kind,
                key=lockout.key,
                **({"source": lockout.source} if lockout.source else {}),
                until=lockout.until,
                failures=lockout.failures,
            )
        return started

    def record_success(self, account: str, source: str) -> None:
        """A good login forgets the account's and the pair's failures (not the source's: it may
        be shared), and makes ``source`` known to the account.

        Most logins have no failures to forget and a fresh known-source row; checking first
        spares them a write transaction.
        """
        now = self._clock()
        account, source = _key(account), _key(source)
        failed_before = self.db.query_one(
            "SELECT 1 FROM sftpd_login_failures WHERE kind IN ('account', 'pair')"
            " AND account = ? LIMIT 1",
            (account,),
        )
        if failed_before:
            self.db.execute(
                "DELETE FROM sftpd_login_failures WHERE (kind = 'account' AND account = ?)"
                " OR (kind = 'pair' AND account = ? AND source = ?)",
                (account, account, source),
            )
        if self._known_for <= timedelta(0):
            return
        known = self.db.query_one(
            "SELECT last_login FROM sftpd_known_sources WHERE account = ? AND source = ?",
            (account, source),
        )
        if known and known["last_login"] >= iso(now - KNOWN_SOURCE_REFRESH):
            return
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO sftpd_known_sources (account, source, last_login) VALUES (?, ?, ?)"
                " ON CONFLICT (account, source) DO UPDATE SET last_login = excluded.last_login",
                (account, source, iso(now)),
            )
            conn.execute(
                "DELETE FROM sftpd_known_sources WHERE last_login < ?",
                (iso(now - self._known_for),),
            )

    def lockouts(self) -> list[Lockout]:
        """Lockouts in force now, soonest to expire first."""
        rows = self.db.query(
            "SELECT * FROM sftpd_login_lockouts WHERE locked_until > ?"
            " ORDER BY locked_until, kind, account, source",
            (iso(self._clock()),),
        )
        return [_lockout(row) for row in rows]

    def unlock_account(self, name: str) -> bool:
        """Lift an account's lockouts, account-wide and from every address, and forget its
        failures; False if it was not locked."""
        return self._unlock("kind IN ('account', 'pair') AND account = ?", name)

    def forget_account(self, name: str) -> None:
        """Everything remembered of an account (lockouts, failures, known sources), for a purge:
        a new tenant of the same name must not inherit the old one's trusted addresses."""
        self.unlock_account(name)
        self.db.execute("DELETE FROM sftpd_known_sources WHERE account = ?", (_key(name),))

    def unlock_source(self, address: str) -> bool:
        """Lift a source address's lockouts, its own and its pairs, and forget its failures;
        False if it was not locked."""
        return self._unlock("kind IN ('source', 'pair') AND source = ?", address)

    def _count(
        self, conn: sqlite3.Connection, policy: _Policy, pair: tuple[str, str], now: datetime
    ) -> Lockout | None:
        account, source = pair
        conn.execute(
            "INSERT INTO sftpd_login_failures (kind, account, source, failed_at)"
            " VALUES (?, ?, ?, ?)",
            (policy.kind, account, source, iso(now)),
        )
        failures = conn.execute(
            "SELECT COUNT(*) FROM sftpd_login_failures"
            " WHERE kind = ? AND account = ? AND source = ? AND failed_at >= ?",
            (policy.kind, account, source, iso(now - policy.window)),
        ).fetchone()[0]
        if failures < policy.max_failures:
            return None
        already = conn.execute(
            "SELECT 1 FROM sftpd_login_lockouts"
            " WHERE kind = ? AND account = ? AND source = ? AND locked_until > ?",
            (policy.kind, account, source, iso(now)),
        ).fetchone()
        if already:
            return None
        until = iso(now + policy.lockout)
        conn.execute(
            "INSERT INTO sftpd_login_lockouts"
            " (kind, account, source, locked_at, locked_until, failures)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, account, source) DO UPDATE SET"
            " locked_at = excluded.locked_at, locked_until = excluded.locked_until,"
            " failures = excluded.failures",
            (policy.kind, account, source, iso(now), until, failures),
        )
        conn.execute(
            "DELETE FROM sftpd_login_failures WHERE kind = ? AND account = ? AND source = ?",
            (policy.kind, account, source),
        )
        return _lockout_of(policy.kind, account, source, until, failures)

    def _unlock(self, where: str, key: str) -> bool:
        with self.db.transaction() as conn:
            active = conn.execute(
                f"SELECT kind, account, source FROM sftpd_login_lockouts WHERE {where}"
                " AND locked_until > ? ORDER BY kind, account, source",
                (_key(key), iso(self._clock())),
            ).fetchall()
            conn.execute(f"DELETE FROM sftpd_login_lockouts WHERE {where}", (_key(key),))
            conn.execute(f"DELETE FROM sftpd_login_failures WHERE {where}", (_key(key),))
        for row in active:
            lifted = _lockout_of(row["kind"], row["account"], row["source"], "", 0)
            log.info(
                "auth.unlocked",
                kind=lifted.kind,
                key=lifted.key,
                **({"source": lifted.source} if lifted.source else {}),
            )
        return bool(active)


def _key(value: str) -> str:
    return value[:MAX_KEY_LENGTH]


def _lockout_of(kind: LockoutKind, account: str, source: str, until: str, failures: int) -> Lockout:
    if kind == "source":
        return Lockout(kind, source, until, failures)
    return Lockout(kind, account, until, failures, source if kind == "pair" else "")


def _lockout(row: sqlite3.Row) -> Lockout:
    return _lockout_of(
        row["kind"], row["account"], row["source"], row["locked_until"], row["failures"]
    )
