"""The SQLite engine: the embedded default, one file in WAL mode.

The file is created with mode 0600: it holds password hashes and API tokens. Several processes
(the daemon and ``sftpctl``) may open the same file: WAL and the busy timeout make that safe.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.db import Database, DatabaseUnavailable, Location, Reader, ReadFailed
from core.db.dialect import Migration, PerEngine, statements

BUSY_TIMEOUT_SECONDS = 30.0
#: Each connection's page cache at most (SQLite's default: 2 MiB). A 5 MB signal file's run read
#: 237,000 pages from the files with the default, 66,000 with 16 MiB, 47,000 with 64 MiB.
CACHE_KIB = 16 * 1024
#: The WAL is copied into the file by the commit that takes it past this many pages (64 MiB of
#: 4 KiB pages; SQLite's default: 1,000), so a page written by many batches is copied once.
CHECKPOINT_PAGES = 16_384
#: What a WAL file keeps of its size once copied in and started again (SQLite keeps all of it).
WAL_KEPT_BYTES = 64 * 1024 * 1024
# A reader's progress handler runs every this many virtual-machine instructions.
_PROGRESS_STEPS = 10_000
# A reader's errors that mean "not now" rather than "never": busy, locked, interrupted at its
# deadline, an I/O error, cannot open (and a file that does not exist, which has no code).
_UNAVAILABLE = {5, 6, 9, 10, 14}


class SqliteDatabase(Database):
    """``transaction()`` is ``BEGIN IMMEDIATE``: one writer at a time, across processes."""

    def __init__(self, location: Location) -> None:
        if not isinstance(location, Path):
            raise TypeError(f"SQLite needs a file path, not {location}")
        path = location
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self._conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        use_wal(self._conn, BUSY_TIMEOUT_SECONDS)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # Sized for the batches written here (thousands of rows a transaction, each touching a few
        # hundred pages of indexes): with SQLite's defaults (2 MiB of cache, a checkpoint in the
        # commit that takes the WAL past 1,000 pages) a ledger-writer child re-read most of a
        # batch's pages from the file, one pread each, and copied the WAL into the file about
        # every other commit. The cache grows only as pages are used.
        self._conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self._conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
        self._conn.execute(f"PRAGMA journal_size_limit={WAL_KEPT_BYTES}")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions ("
            " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; nested calls join the outer transaction."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
            return row

    def _migration_statements(self, step: Migration) -> Iterator[str]:
        return statements(step.sqlite if isinstance(step, PerEngine) else step)


def use_wal(conn: sqlite3.Connection, timeout_seconds: float) -> None:
    """Put the file in WAL mode unless it is already, waiting up to ``timeout_seconds`` while it
    is busy.

    SQLite does not always call the busy handler here: a new connection does not know the file's
    mode until it reads the header, so ``PRAGMA journal_mode=WAL`` may try to change it, and can
    get SQLITE_BUSY at once while another process writes (seen about once in 40 runs of a writer
    child opening the ledger while the child before it committed). So the mode is read first and
    set only where it differs, and a busy file is tried again.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class SqliteReader(Reader):
    """A ``query_only`` connection; a read past its deadline is interrupted by the progress handler."""

    def __init__(self, location: Location, timeout_seconds: float) -> None:
        if not isinstance(location, Path):
            raise TypeError(f"SQLite needs a file path, not {location}")
        self.location = self._path = location
        self._timeout = timeout_seconds
        self._deadline = 0.0
        self._conn: sqlite3.Connection | None = None

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._errors():
            conn = self._begin()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    def tables(self) -> set[str]:
        with self._errors():
            rows = self._connection().execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {row["name"] for row in rows}

    def columns(self, table: str) -> set[str]:
        with self._errors():
            rows = self._connection().execute("SELECT name FROM pragma_table_info(?)", (table,))
            return {row["name"] for row in rows}

    def ping(self) -> None:
        with self._errors():
            self._begin().execute("SELECT COUNT(*) FROM sqlite_master").fetchone()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _begin(self) -> sqlite3.Connection:
        """The connection, with a fresh deadline."""
        self._deadline = time.monotonic() + self._timeout
        return self._connection()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self._path.exists():
                raise sqlite3.OperationalError("does not exist")
            conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = ON")
            conn.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)
            self._conn = conn
        return self._conn

    def _past_deadline(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if code is None or code & 0xFF in _UNAVAILABLE:
                raise DatabaseUnavailable(f"{self._path}: {exc}") from None
            raise ReadFailed(f"{self._path}: {exc}") from None
