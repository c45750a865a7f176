"""Claims: who works on what, held with a lease in the state database.

A run claims each tenant before it processes it (and the scan before it scans), so two runs, the
daemon's scheduled one and an operator's ``sftpctl run`` say, never work on one tenant's files at
once, while different tenants go side by side. A claim names its holder (host, pid, a random token
and the run) and a lease that the holder renews while it works (:meth:`Claims.renewing`).

A claim is taken over when its lease has run out, or at once when its holder is a process of this
host that no longer exists (``kill -9``, a crash): the files it left ``processing`` and the rows
it left pending are resumed by the new holder, and the outbox makes that resumption exactly-once.
A pid the kernel reused for another process looks alive; that claim is taken over when its lease
runs out, because nobody renews it. Leases use wall-clock time, so on several hosts (one database
shared by several nodes) their clocks must agree to well within a lease.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from core.db import Database
from core.errors import Conflict
from core.logs import get_logger
from core.processes import holder_lives

log = get_logger("ingest.claims")

COMPONENT = "ingest.claims"

MIGRATIONS = [
    """
    CREATE TABLE ingest_claims (
        name TEXT PRIMARY KEY,
        run_id INTEGER,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        token TEXT NOT NULL,
        claimed_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
]

# How long a claim lasts without renewal, and how often its holder renews it. A holder's event
# loop blocked for longer than a lease could lose its claim; the lease is far above any step we
# take on the loop.
LEASE_SECONDS = 120.0
RENEW_EVERY_SECONDS = LEASE_SECONDS / 4

SCAN = "scan"
#: The daemons' hourly retention pass: one node prunes at a time (``ingest.retention``).
PRUNE = "prune"


def tenant_claim(tenant: str) -> str:
    """The claim a run holds while it processes ``tenant``."""
    return f"tenant:{tenant}"


class ClaimHeld(RuntimeError, Conflict):
    """Someone else holds the claim; the message names the run and process."""

    def __init__(self, message: str, holder: Holder | None = None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who holds a claim, as recorded."""

    name: str
    run_id: int | None
    host: str
    pid: int
    token: str
    expires_at: float

    def describe(self) -> str:
        run = f"run {self.run_id}" if self.run_id is not None else "an operator's command"
        where = f"pid {self.pid}" if self.host == socket.gethostname() else f"pid {self.pid} on {self.host}"
        return f"{run} ({where})"


@dataclass(frozen=True)
class Claim:
    """A claim this process holds."""

    name: str
    token: str
    run_id: int | None


class Claims:
    """Take, renew and release claims; one instance per process (or per test)."""

    def __init__(self, db: Database, lease_seconds: float = LEASE_SECONDS) -> None:
        db.migrate(COMPONENT, MIGRATIONS)
        self.db = db
        self.lease_seconds = lease_seconds
        self.host = socket.gethostname()

    def take(self, name: str, run_id: int | None = None) -> Claim:
        """Claim ``name`` now or raise :class:`ClaimHeld` naming its live holder."""
        token = secrets.token_hex(8)
        now = time.time()
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM ingest_claims WHERE name = ?", (name,)).fetchone()
            if row is not None:
                holder = _holder(row)
                if self._alive(holder, now):
                    raise _held(holder)
                log.warning("ingest.claim_taken_over", claim=name, run=holder.run_id, host=holder.host,
                            pid=holder.pid, lease_left=round(holder.expires_at - now, 1))
            conn.execute(
                "INSERT INTO ingest_claims (name, run_id, host, pid, token, claimed_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET run_id = excluded.run_id,"
                " host = excluded.host, pid = excluded.pid, token = excluded.token,"
                " claimed_at = excluded.claimed_at, expires_at = excluded.expires_at",
                (name, run_id, self.host, os.getpid(), token, now, now + self.lease_seconds),
            )
        return Claim(name, token, run_id)

    def renew(self, claim: Claim) -> bool:
        """Extend the lease; False if the claim was lost (taken over after its lease ran out)."""
        cursor = self.db.execute(
            "UPDATE ingest_claims SET expires_at = ? WHERE name = ? AND token = ?",
            (time.time() + self.lease_seconds, claim.name, claim.token),
        )
        return cursor.rowcount == 1

    def release(self, claim: Claim) -> None:
        self.db.execute("DELETE FROM ingest_claims WHERE name = ? AND token = ?", (claim.name, claim.token))

    def holder(self, name: str) -> Holder | None:
        """The live holder of ``name``, if any."""
        row = self.db.query_one("SELECT * FROM ingest_claims WHERE name = ?", (name,))
        if row is None:
            return None
        holder = _holder(row)
        return holder if self._alive(holder, time.time()) else None

    def ensure_free(self, name: str) -> None:
        """Raise :class:`ClaimHeld`, as :meth:`take` would, if a live holder has ``name``."""
        holder = self.holder(name)
        if holder is not None:
            raise _held(holder)

    def tenants_of(self, run_id: int) -> list[str]:
        """The tenants run ``run_id`` holds now (and so is working on)."""
        rows = self.db.query("SELECT name FROM ingest_claims WHERE run_id = ? AND name LIKE 'tenant:%'"
                             " ORDER BY name", (run_id,))
        return [row["name"].removeprefix("tenant:") for row in rows]

    @contextmanager
    def held(self, name: str, run_id: int | None = None) -> Iterator[Claim]:
        """Hold ``name`` for a short piece of blocking work (no renewal)."""
        claim = self.take(name, run_id)
        try:
            yield claim
        finally:
            self.release(claim)

    @asynccontextmanager
    async def holding(self, name: str, run_id: int | None = None) -> AsyncIterator[Claim]:
        """Take ``name`` (or raise :class:`ClaimHeld`) and hold it while the block runs."""
        async with self.renewing(self.take(name, run_id)) as claim:
            yield claim

    @asynccontextmanager
    async def renewing(self, claim: Claim) -> AsyncIterator[Claim]:
        """Renew ``claim``'s lease in the background while the block runs, then release it."""
        renewer = asyncio.create_task(self._renew_until_cancelled(claim))
        try:
            yield claim
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            self.release(claim)

    async def wait_for(self, name: str, run_id: int | None = None, poll: float = 0.2) -> Claim:
        """Take ``name``, waiting while a live holder has it (for short claims like the scan)."""
        while True:
            try:
                return self.take(name, run_id)
            except ClaimHeld:
                await asyncio.sleep(poll)

    async def _renew_until_cancelled(self, claim: Claim) -> None:
        interval = min(RENEW_EVERY_SECONDS, self.lease_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                if not self.renew(claim):
                    log.error("ingest.claim_lost", claim=claim.name, run=claim.run_id)
                    return
            except Exception:
                log.error("ingest.claim_renew_failed", exc_info=True, claim=claim.name)

    def _alive(self, holder: Holder, now: float) -> bool:
        return holder_lives(holder.host, holder.pid, holder.expires_at, now, self.host)


def _holder(row: sqlite3.Row) -> Holder:
    return Holder(row["name"], row["run_id"], row["host"], row["pid"], row["token"], row["expires_at"])


def _held(holder: Holder) -> ClaimHeld:
    return ClaimHeld(f"{_what(holder.name)} is being processed by {holder.describe()}", holder)


def _what(name: str) -> str:
    kind, _, rest = name.partition(":")
    if kind == "tenant":
        return f"tenant {rest!r}"
    return {SCAN: "the scan", PRUNE: "the retention pass"}.get(name, name)
