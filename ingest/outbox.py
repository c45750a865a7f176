"""The durable outbox: every mapped request is stored before it is sent and marked after.

A file's requests and its rejected rows are written in one transaction with the claim of the
file, so a file is either wholly queued or still waiting. Each request is marked as soon as its
response arrives; after a crash the next run sends what is still ``pending``, so nothing is lost
and nothing already marked is sent again. The one request in flight at the crash is sent again,
which the Signal API treats as a no-op (same call, name and partner_unique_id).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from core.clock import now_iso
from core.db import Database

from ingest.store import StagedStore


class OutboxState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class RowStatus(StrEnum):
    """A row's outcome as the report shows it."""

    POSTED = "posted"
    FAILED = "failed"
    REJECTED = "rejected"
    PENDING = "pending"


@dataclass(frozen=True)
class QueuedRequest:
    """A mapped row ready for the outbox; ``token`` None means the tenant's own API token."""

    row_number: int
    kind: str
    method: str
    url: str
    token: str | None
    key: str
    #: The JSON body, as ``ingest.mapping`` spells it.
    text: str


@dataclass(frozen=True)
class RejectedRow:
    row_number: int
    error: str


@dataclass(frozen=True)
class OutboxItem:
    id: int
    run_id: int
    upload_id: int
    tenant: str
    row_number: int
    kind: str
    method: str
    url: str
    token: str | None
    key: str
    text: str
    state: str
    attempts: int

    @property
    def body(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.text))


@dataclass(frozen=True)
class RowOutcome:
    row_number: int
    status: str
    transaction_id: str | None
    error: str


@dataclass(frozen=True)
class RowCounts:
    total: int = 0
    posted: int = 0
    failed: int = 0
    rejected: int = 0
    pending: int = 0


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.staged = StagedStore(db)

    def enqueue(
        self, upload_id: int, run_id: int, tenant: str, rows_total: int,
        requests: Sequence[QueuedRequest], rejected: Sequence[RejectedRow],
    ) -> bool:
        """Claim a staged file for ``run_id`` and queue its rows, all or nothing.

        Returns False (and writes nothing) if the file was superseded since it was read.
        """
        now = now_iso()
        with self.db.transaction() as conn:
            if not self.staged.start(upload_id, run_id, rows_total):
                return False
            conn.executemany(
                "INSERT INTO ingest_outbox (run_id, upload_id, tenant, row_number, kind, method, url,"
                " token, key, body, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, upload_id, tenant, r.row_number, r.kind, r.method, r.url, r.token, r.key, r.text,
                  now) for r in requests],
            )
            conn.executemany(
                "INSERT INTO ingest_rows (upload_id, row_number, status, error) VALUES (?, ?, ?, ?)",
                [(upload_id, r.row_number, RowStatus.REJECTED.value, r.error) for r in rejected],
            )
        return True

    def pending(self, tenants: Sequence[str]) -> list[OutboxItem]:
        """Requests still to send for these tenants, oldest first (an interrupted run's first)."""
        marks = ", ".join("?" * len(tenants))
        rows = self.db.query(
            f"SELECT * FROM ingest_outbox WHERE state = ? AND tenant IN ({marks}) ORDER BY id",
            (OutboxState.PENDING.value, *tenants),
        )
        return [_item(row) for row in rows]

    def mark_sent(self, item_id: int, status_code: int, transaction_id: str | None, attempts: int) -> None:
        self._settle(item_id, OutboxState.SENT, RowStatus.POSTED, status_code, transaction_id, "", attempts)

    def mark_failed(self, item_id: int, status_code: int | None, error: str, attempts: int) -> None:
        self._settle(item_id, OutboxState.FAILED, RowStatus.FAILED, status_code, None, error, attempts)

    def note_attempts(self, item_id: int, status_code: int | None, error: str, attempts: int) -> None:
        """Record tries of a request that stays pending (destination down, token refused)."""
        self.db.execute(
            "UPDATE ingest_outbox SET status_code = ?, error = ?, attempts = attempts + ?, updated_at = ?"
            " WHERE id = ?",
            (status_code, error, attempts, now_iso(), item_id),
        )

    def counts(self, upload_id: int) -> RowCounts:
        rows = self.db.query(
            "SELECT status, COUNT(*) AS n FROM ingest_rows WHERE upload_id = ? GROUP BY status",
            (upload_id,),
        )
        by_status = {row["status"]: row["n"] for row in rows}
        pending = self.db.query_one(
            "SELECT COUNT(*) AS n FROM ingest_outbox WHERE upload_id = ? AND state = ?",
            (upload_id, OutboxState.PENDING.value),
        )
        staged = self.staged.get(upload_id)
        return RowCounts(
            total=staged.rows_total if staged else 0,
            posted=by_status.get(RowStatus.POSTED.value, 0),
            failed=by_status.get(RowStatus.FAILED.value, 0),
            rejected=by_status.get(RowStatus.REJECTED.value, 0),
            pending=pending["n"] if pending else 0,
        )

    def results(self, upload_id: int) -> list[RowOutcome]:
        """Every row of a file with its outcome so far, in file order."""
        settled = self.db.query(
            "SELECT row_number, status, transaction_id, error FROM ingest_rows WHERE upload_id = ?",
            (upload_id,),
        )
        waiting = self.db.query(
            "SELECT row_number, error FROM ingest_outbox WHERE upload_id = ? AND state = ?",
            (upload_id, OutboxState.PENDING.value),
        )
        results = [RowOutcome(r["row_number"], r["status"], r["transaction_id"], r["error"]) for r in settled]
        results += [RowOutcome(r["row_number"], RowStatus.PENDING.value, None, r["error"]) for r in waiting]
        return sorted(results, key=lambda result: result.row_number)

    def _settle(
        self, item_id: int, state: OutboxState, status: RowStatus, status_code: int | None,
        transaction_id: str | None, error: str, attempts: int,
    ) -> None:
        with self.db.transaction() as conn:
            row = conn.execute(
                "UPDATE ingest_outbox SET state = ?, status_code = ?, transaction_id = ?, error = ?,"
                " attempts = attempts + ?, updated_at = ? WHERE id = ? AND state = ?"
                " RETURNING upload_id, row_number",
                (state.value, status_code, transaction_id, error, attempts, now_iso(), item_id,
                 OutboxState.PENDING.value),
            ).fetchone()
            if row is None:
                return
            conn.execute(
                "INSERT INTO ingest_rows (upload_id, row_number, status, transaction_id, error)"
                " VALUES (?, ?, ?, ?, ?)",
                (row["upload_id"], row["row_number"], status.value, transaction_id, error),
            )


def _item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"], run_id=row["run_id"], upload_id=row["upload_id"], tenant=row["tenant"],
        row_number=row["row_number"], kind=row["kind"], method=row["method"], url=row["url"],
        token=row["token"], key=row["key"], text=row["body"], state=row["state"],
        attempts=row["attempts"],
    )
