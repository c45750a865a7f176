"""The durable outbox: every mapped request is stored before it is sent and marked after.

A file's requests and its rejected rows are written in one transaction with the claim of the
file (the run's: it wraps :meth:`Outbox.enqueue` and its claim in one transaction), so a file is
either wholly queued or still waiting. Each request is marked as soon as its
response arrives; after a crash the next run sends what is still ``pending``, so nothing is lost
and nothing already marked is sent again. The one request in flight at the crash is sent again,
which the Signal API treats as a no-op (same call, name and partner_unique_id).

A request that keeps failing for no fault of its content (5xx, time-outs, no connection) carries
its tries and last error here, and may be set aside until ``next_attempt_at`` so the rows after it
go on; once it is failed for good, ``gave_up`` tells it from a row the destination refused. The
operator sees those stuck rows with ``sftpctl outbox``, and can retry or drop them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from core.clock import iso, now_iso, parse_iso, utcnow
from core.db import Database
from core.errors import Conflict, NotFound

#: The error of a row the operator gave up on with ``sftpctl outbox drop``.
DROPPED = "dropped by the operator"
# The expected finish of a file is its rows left at the pace of the last this many seconds.
PACE_WINDOW_SECONDS = 60.0
#: Rows a run reads from the outbox at a time (:meth:`Outbox.page`): its memory and each read
#: follow this, not the length of the queue.
PAGE_ROWS = 5000


class OutboxState(StrEnum):
    """Where a queued request is; success is "posted", as in :class:`RowStatus` and reports."""

    PENDING = "pending"
    POSTED = "posted"
    FAILED = "failed"


class RowStatus(StrEnum):
    """A row's outcome as the report shows it."""

    POSTED = "posted"
    FAILED = "failed"
    REJECTED = "rejected"
    PENDING = "pending"


@dataclass(frozen=True)
class Settlement:
    """A queued request's final answer: posted (with the transaction id) or failed (why)."""

    item_id: int
    posted: bool
    status_code: int | None
    transaction_id: str | None
    error: str
    attempts: int
    gave_up: bool = False


@dataclass(frozen=True)
class QueuedRequest:
    """A mapped row ready for the outbox; ``token`` None means the tenant's own API token.

    :class:`OutboxItem` is the same request once stored, with its place in the queue.
    """

    row_number: int
    kind: str
    method: str
    url: str
    token: str | None
    key: str
    #: The JSON body as text, as ``ingest.rows.mapping`` spells it (column ``text`` of the outbox).
    text: str

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body, parsed."""
        return cast(dict[str, Any], json.loads(self.text))


@dataclass
class QueuedRows:
    """A file's mapped requests, a column each, in row order.

    This is how they cross the pipe from the child that parses the file (lists of plain values,
    with repeated texts shared, pickle several times faster than as many request objects:
    ``bench/sandbox_cost.py``) and go into the outbox.
    """

    numbers: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    tokens: list[str | None] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, requests: Iterable[QueuedRequest]) -> QueuedRows:
        rows = cls()
        for request in requests:
            rows.append(request.row_number, request.kind, request.method, request.url, request.token,
                        request.key, request.text)
        return rows

    def append(self, number: int, kind: str, method: str, url: str, token: str | None, key: str,
               text: str) -> None:
        self.numbers.append(number)
        self.kinds.append(kind)
        self.methods.append(method)
        self.urls.append(url)
        self.tokens.append(token)
        self.keys.append(key)
        self.texts.append(text)

    def __len__(self) -> int:
        return len(self.numbers)

    def __iter__(self) -> Iterator[QueuedRequest]:
        for values in zip(self.numbers, self.kinds, self.methods, self.urls, self.tokens, self.keys,
                          self.texts):
            yield QueuedRequest(*values)


@dataclass(frozen=True)
class RejectedRow:
    row_number: int
    error: str


@dataclass(frozen=True, kw_only=True)
class OutboxItem(QueuedRequest):
    """A queued request as stored: which file and run it belongs to, and how far it got."""

    id: int
    run_id: int
    upload_id: int
    tenant: str
    state: str
    attempts: int
    #: When the row was queued (None for rows queued before this column existed).
    queued_at: str | None = None


@dataclass(frozen=True)
class RowOutcome:
    row_number: int
    status: str
    transaction_id: str | None
    error: str


@dataclass(frozen=True)
class StuckItem:
    """A request still pending after failed tries, or failed because delivery gave up."""

    id: int
    tenant: str
    upload_id: int
    file: str
    row: int
    state: str
    attempts: int
    error: str
    queued_at: str | None
    next_attempt_at: str | None

    @property
    def age_seconds(self) -> float:
        """Seconds since the row was queued (0 when unknown)."""
        if not self.queued_at:
            return 0.0
        return max(0.0, (utcnow() - parse_iso(self.queued_at)).total_seconds())


@dataclass(frozen=True)
class RowCounts:
    total: int = 0
    posted: int = 0
    failed: int = 0
    rejected: int = 0
    pending: int = 0


@dataclass(frozen=True)
class Pace:
    """How a set of files' delivery goes: rows settled and left, and how many settled lately."""

    done: int
    left: int
    recent: int
    window_seconds: float

    def finish_at(self, now: datetime) -> datetime | None:
        """When the last row should be settled at the recent pace; None if nothing moved lately."""
        if not self.left:
            return now
        if not self.recent:
            return None
        return now + timedelta(seconds=self.left * self.window_seconds / self.recent)

    def expected_finish(self) -> str | None:
        """:meth:`finish_at` from now, as the ISO text listings show."""
        moment = self.finish_at(utcnow())
        return iso(moment) if moment else None


@dataclass(frozen=True)
class Due:
    """A delivery pass's rows, as :meth:`Outbox.due` counts them at its start."""

    #: The newest row's id (0: none); rows queued after it wait for the next pass.
    last: int
    #: Rows per upload id.
    per_upload: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.per_upload.values())


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def enqueue(
        self, upload_id: int, run_id: int, tenant: str, requests: QueuedRows, rejected: Sequence[RejectedRow],
    ) -> None:
        """Queue a file's requests and rejected rows, all or nothing.

        Call it in the transaction that claims the file, so a file is either claimed and queued
        or neither.
        """
        now = now_iso()
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO ingest_outbox (run_id, upload_id, tenant, row_number, kind, method, url,"
                " token, key, text, updated_at, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, upload_id, tenant, number, kind, method, url, token, key, text, now, now)
                 for number, kind, method, url, token, key, text in zip(
                     requests.numbers, requests.kinds, requests.methods, requests.urls, requests.tokens,
                     requests.keys, requests.texts)],
            )
            conn.executemany(
                "INSERT INTO ingest_rows (upload_id, row_number, status, error) VALUES (?, ?, ?, ?)",
                [(upload_id, r.row_number, RowStatus.REJECTED.value, r.error) for r in rejected],
            )

    def pending(self, tenants: Sequence[str]) -> list[OutboxItem]:
        """Requests to send now for these tenants, oldest first (an interrupted run's first).

        Rows set aside after failing wait until their ``next_attempt_at``. All of them at once,
        bodies included: a run reads them a :meth:`page` at a time instead.
        """
        marks = ", ".join("?" * len(tenants))
        rows = self.db.query(
            f"SELECT * FROM ingest_outbox WHERE state = ? AND tenant IN ({marks})"
            " AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id",
            (OutboxState.PENDING.value, *tenants, now_iso()),
        )
        return [_item(row) for row in rows]

    def due(self, tenants: Sequence[str]) -> Due:
        """The rows :meth:`pending` would give now, counted per file, and the newest one's id: what a
        delivery pass goes through, without reading a body."""
        marks = ", ".join("?" * len(tenants))
        rows = self.db.query(
            f"SELECT upload_id, COUNT(*) AS n, MAX(id) AS last FROM ingest_outbox WHERE state = ?"
            f" AND tenant IN ({marks}) AND (next_attempt_at IS NULL OR next_attempt_at <= ?) GROUP BY upload_id",
            (OutboxState.PENDING.value, *tenants, now_iso()),
        )
        return Due(last=max((row["last"] for row in rows), default=0),
                   per_upload={row["upload_id"]: row["n"] for row in rows})

    def page(
        self, tenants: Sequence[str], after: int = 0, *, upto: int | None = None, limit: int = PAGE_ROWS,
        url_prefix: str | None = None, prefixed: bool = True,
    ) -> list[OutboxItem]:
        """The next ``limit`` rows of :meth:`pending` with an id above ``after`` (and at most
        ``upto``), oldest first: keyset paging on the ``(state, tenant, id)`` index, so a page
        costs the same however long the queue is (for one tenant; several are sorted together).

        With ``url_prefix``, only the rows whose URL starts with it (or, ``prefixed=False``, does
        not): one destination's rows. A row settled meanwhile is not in a later page, a row queued
        meanwhile is, in its place, if ``upto`` lets it.
        """
        marks = ", ".join("?" * len(tenants))
        where = f"state = ? AND tenant IN ({marks}) AND id > ? AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
        params: tuple[object, ...] = (OutboxState.PENDING.value, *tenants, after, now_iso())
        if upto is not None:
            where += " AND id <= ?"
            params += (upto,)
        if url_prefix is not None:
            where += " AND (CASE WHEN substr(url, 1, ?) = ? THEN 1 ELSE 0 END) = ?"
            params += (len(url_prefix), url_prefix, int(prefixed))
        rows = self.db.query(f"SELECT * FROM ingest_outbox WHERE {where} ORDER BY id LIMIT ?", (*params, limit))
        return [_item(row) for row in rows]

    def mark_posted(self, item_id: int, status_code: int, transaction_id: str | None, attempts: int) -> None:
        self.settle([Settlement(item_id, True, status_code, transaction_id, "", attempts)])

    def mark_failed(
        self, item_id: int, status_code: int | None, error: str, attempts: int, gave_up: bool = False
    ) -> None:
        """The row failed: refused by the destination, or ``gave_up`` on after too many tries."""
        self.settle([Settlement(item_id, False, status_code, None, error, attempts, gave_up)])

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record final answers, in one transaction: each row leaves the queue for the results.

        A row already settled (a second answer, a replay) is left as it is.
        """
        if not settlements:
            return
        now = now_iso()
        with self.db.transaction() as conn:
            # The results first, from the rows still pending; then those rows leave the queue.
            conn.executemany(
                "INSERT INTO ingest_rows (upload_id, row_number, status, transaction_id, error)"
                " SELECT upload_id, row_number, ?, ?, ? FROM ingest_outbox WHERE id = ? AND state = ?",
                [((RowStatus.POSTED if s.posted else RowStatus.FAILED).value, s.transaction_id, s.error,
                  s.item_id, OutboxState.PENDING.value) for s in settlements],
            )
            conn.executemany(
                "UPDATE ingest_outbox SET state = ?, status_code = ?, transaction_id = ?, error = ?,"
                " attempts = attempts + ?, updated_at = ?, next_attempt_at = NULL, gave_up = ?"
                " WHERE id = ? AND state = ?",
                [((OutboxState.POSTED if s.posted else OutboxState.FAILED).value, s.status_code,
                  s.transaction_id, s.error, s.attempts, now, int(s.gave_up), s.item_id,
                  OutboxState.PENDING.value) for s in settlements],
            )

    def note_attempts(
        self, item_id: int, status_code: int | None, error: str, attempts: int,
        next_attempt_at: str | None = None,
    ) -> None:
        """Record tries of a request that stays pending (destination down, token refused), set
        aside until ``next_attempt_at`` if given."""
        self.db.execute(
            "UPDATE ingest_outbox SET status_code = ?, error = ?, attempts = attempts + ?, updated_at = ?,"
            " next_attempt_at = ? WHERE id = ? AND state = ?",
            (status_code, error, attempts, now_iso(), next_attempt_at, item_id, OutboxState.PENDING.value),
        )

    def stuck(self, tenant: str | None = None) -> list[StuckItem]:
        """Rows pending after failed tries, and rows failed because delivery gave up; oldest first."""
        where, params = _stuck_clause(tenant)
        rows = self.db.query(
            "SELECT o.id, o.tenant, o.upload_id, s.path, o.row_number, o.state, o.attempts, o.error,"
            " o.queued_at, o.next_attempt_at FROM ingest_outbox o"
            f" JOIN ingest_staged s ON s.upload_id = o.upload_id WHERE {where} ORDER BY o.id",
            params,
        )
        return [StuckItem(*row) for row in rows]

    def retry(
        self, ids: Sequence[int] = (), tenant: str | None = None, *,
        reopen: Callable[[set[int]], None],
    ) -> int:
        """Put rows back to pending, with their tries forgotten; returns how many.

        By id, any row not yet posted; by tenant, its stuck rows. A finished file whose row comes
        back is processing again: ``reopen`` is told, in the same transaction, the uploads whose
        failed rows came back (the run owns the files and their state), so the next run posts the
        row and writes a new report.
        """
        with self.db.transaction() as conn:
            rows = self._chosen(conn, ids, tenant, (OutboxState.PENDING, OutboxState.FAILED))
            conn.executemany(
                "UPDATE ingest_outbox SET state = ?, attempts = 0, error = '', status_code = NULL,"
                " next_attempt_at = NULL, gave_up = 0, updated_at = ? WHERE id = ?",
                [(OutboxState.PENDING.value, now_iso(), row["id"]) for row in rows],
            )
            conn.executemany(
                "DELETE FROM ingest_rows WHERE upload_id = ? AND row_number = ?",
                [(row["upload_id"], row["row_number"]) for row in rows],
            )
            reopen({row["upload_id"] for row in rows if row["state"] == OutboxState.FAILED.value})
        return len(rows)

    def drop(self, ids: Sequence[int] = (), tenant: str | None = None) -> int:
        """Fail rows for good with :data:`DROPPED`; returns how many.

        By id, a pending row or one delivery gave up on; by tenant, its stuck rows. A file left
        with no pending row is finished by the next run, as partly failed.
        """
        with self.db.transaction() as conn:
            rows = self._chosen(conn, ids, tenant, (OutboxState.PENDING,), gave_up_only=True)
            self.settle([Settlement(row["id"], False, None, None, DROPPED, 0)
                         for row in rows if row["state"] == OutboxState.PENDING.value])
            for row in rows:
                if row["state"] == OutboxState.PENDING.value:
                    continue
                conn.execute("UPDATE ingest_outbox SET error = ?, gave_up = 0, updated_at = ? WHERE id = ?",
                             (DROPPED, now_iso(), row["id"]))
                conn.execute("UPDATE ingest_rows SET error = ? WHERE upload_id = ? AND row_number = ?",
                             (DROPPED, row["upload_id"], row["row_number"]))
        return len(rows)

    def _chosen(
        self, conn: sqlite3.Connection, ids: Sequence[int], tenant: str | None,
        states: Sequence[OutboxState], gave_up_only: bool = False,
    ) -> list[sqlite3.Row]:
        """The rows an operator's ``retry`` or ``drop`` names; an id that cannot be is an error."""
        columns = "SELECT id, upload_id, row_number, state, gave_up FROM ingest_outbox"
        if tenant is not None:
            where, params = _stuck_clause(tenant)
            return conn.execute(f"{columns} o WHERE {where} ORDER BY id", params).fetchall()
        rows = []
        for item_id in ids:
            row = conn.execute(f"{columns} WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                raise NotFound(f"no outbox item {item_id}")
            allowed = row["state"] in {state.value for state in states} or (
                row["state"] == OutboxState.FAILED.value and (row["gave_up"] or not gave_up_only))
            if not allowed:
                raise Conflict(f"outbox item {item_id} is {row['state']}"
                               + (" (refused by the destination)" if row["state"] == "failed" else ""))
            rows.append(row)
        return rows

    def counts(self, upload_id: int) -> RowCounts:
        """A file's rows by outcome; ``total`` is the file's row count the run recorded at its claim."""
        rows = self.db.query(
            "SELECT status, COUNT(*) AS n FROM ingest_rows WHERE upload_id = ? GROUP BY status",
            (upload_id,),
        )
        by_status = {row["status"]: row["n"] for row in rows}
        pending = self.db.query_one(
            "SELECT COUNT(*) AS n FROM ingest_outbox WHERE upload_id = ? AND state = ?",
            (upload_id, OutboxState.PENDING.value),
        )
        total = self.db.query_one("SELECT rows_total FROM ingest_staged WHERE upload_id = ?", (upload_id,))
        return RowCounts(
            total=total["rows_total"] if total else 0,
            posted=by_status.get(RowStatus.POSTED.value, 0),
            failed=by_status.get(RowStatus.FAILED.value, 0),
            rejected=by_status.get(RowStatus.REJECTED.value, 0),
            pending=pending["n"] if pending else 0,
        )

    def pace(self, upload_ids: Sequence[int], window_seconds: float = PACE_WINDOW_SECONDS) -> Pace:
        """Rows of these files delivered (posted or failed) and pending, and how many were
        delivered in the last ``window_seconds``, for the expected finish ``sftpctl`` shows."""
        if not upload_ids:
            return Pace(0, 0, 0, window_seconds)
        since = iso(utcnow() - timedelta(seconds=window_seconds))
        marks = ",".join("?" * len(upload_ids))
        row = self.db.query_one(
            "SELECT COALESCE(SUM(CASE WHEN state != ? THEN 1 ELSE 0 END), 0) AS done,"
            " COALESCE(SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), 0) AS waiting,"
            " COALESCE(SUM(CASE WHEN state != ? AND updated_at >= ? THEN 1 ELSE 0 END), 0) AS recent"
            f" FROM ingest_outbox WHERE upload_id IN ({marks})",
            (OutboxState.PENDING.value, OutboxState.PENDING.value, OutboxState.PENDING.value, since,
             *upload_ids),
        )
        assert row is not None
        return Pace(row["done"], row["waiting"], row["recent"], window_seconds)

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

def _item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"], run_id=row["run_id"], upload_id=row["upload_id"], tenant=row["tenant"],
        row_number=row["row_number"], kind=row["kind"], method=row["method"], url=row["url"],
        token=row["token"], key=row["key"], text=row["text"], state=row["state"],
        attempts=row["attempts"], queued_at=row["queued_at"],
    )


def _stuck_clause(tenant: str | None) -> tuple[str, tuple[object, ...]]:
    """Where a row of the ``ingest_outbox o`` is stuck: pending after tries, or given up on."""
    where = "((o.state = ? AND o.attempts > 0) OR (o.state = ? AND o.gave_up = 1))"
    params: tuple[object, ...] = (OutboxState.PENDING.value, OutboxState.FAILED.value)
    if tenant is not None:
        where += " AND o.tenant = ?"
        params += (tenant,)
    return where, params
