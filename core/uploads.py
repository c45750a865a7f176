"""The upload history: every completed upload, kept for as long as the tenant exists.

The front door writes a ``received`` record when a client finishes a file; the pipeline moves it
through its states (staged, superseded, processing, posted, partly failed, failed, rejected). This table is
the one owner of an upload's state: the pipeline's own tables hold what it did with the file, never a
second copy of where the file is, and read the state from here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from core.clock import now_iso
from core.db import Database


class UploadState(StrEnum):
    """Where an upload is; the words operators read in ``sftpctl uploads``."""

    RECEIVED = "received"
    STAGED = "staged"
    SUPERSEDED = "superseded"
    PROCESSING = "processing"
    POSTED = "posted"
    PARTLY_FAILED = "partly failed"
    FAILED = "failed"  # read and queued, but not one row was posted
    REJECTED = "rejected"


#: The states a file's processing ends in (``sftpctl outbox retry`` may reopen one).
FINAL_STATES = frozenset({UploadState.POSTED, UploadState.PARTLY_FAILED, UploadState.FAILED,
                          UploadState.REJECTED})


@dataclass(frozen=True)
class Upload:
    id: int
    tenant: str
    path: str
    size: int
    sha256: str
    received_at: str
    source: str
    state: str
    detail: str


class UploadStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, tenant: str, path: str, size: int, sha256: str, source: str = "sftp") -> Upload:
        with self.db.transaction() as conn:
            row = conn.execute(
                "INSERT INTO uploads (tenant, path, size, sha256, received_at, source)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                (tenant, path, size, sha256, now_iso(), source),
            ).fetchone()
        return _upload(row)

    def get(self, upload_id: int) -> Upload | None:
        row = self.db.query_one("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        return _upload(row) if row else None

    def history(self, tenant: str, limit: int | None = None) -> list[Upload]:
        sql = "SELECT * FROM uploads WHERE tenant = ? ORDER BY id DESC"
        params: tuple[object, ...] = (tenant,)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return [_upload(row) for row in self.db.query(sql, params)]

    def last_of_path(self, tenant: str, path: str) -> Upload | None:
        """The latest upload of ``path`` (index ``uploads_by_path``: one lookup, whatever the history)."""
        row = self.db.query_one(
            "SELECT * FROM uploads WHERE tenant = ? AND path = ? ORDER BY id DESC LIMIT 1", (tenant, path)
        )
        return _upload(row) if row else None

    def received_before(self, moment: str) -> dict[str, set[str]]:
        """The paths, per tenant, of uploads recorded before ``moment`` (ISO) and still
        ``received``: their front door died, or failed, between recording and staging them
        (index ``uploads_by_state``: uploads wait in this state for milliseconds)."""
        paths: dict[str, set[str]] = {}
        for row in self.db.query("SELECT tenant, path FROM uploads WHERE state = ? AND received_at < ?",
                                 (UploadState.RECEIVED.value, moment)):
            paths.setdefault(row["tenant"], set()).add(row["path"])
        return paths

    def set_state(self, upload_id: int, state: UploadState, detail: str = "") -> None:
        self.db.execute(
            "UPDATE uploads SET state = ?, detail = ? WHERE id = ?", (state.value, detail, upload_id)
        )

    def move(
        self, upload_id: int, state: UploadState, detail: str, *, only_from: Collection[UploadState]
    ) -> bool:
        """Set the state only if the upload is in one of ``only_from``; True if it moved.

        A claim: of two processes racing for the same transition, one wins.
        """
        marks = ", ".join("?" * len(only_from))
        cursor = self.db.execute(
            f"UPDATE uploads SET state = ?, detail = ? WHERE id = ? AND state IN ({marks})",
            (state.value, detail, upload_id, *(other.value for other in only_from)),
        )
        return cursor.rowcount == 1


def _upload(row: sqlite3.Row) -> Upload:
    return Upload(**{key: row[key] for key in row.keys()})  # noqa: SIM118 - a Row iterates its values
