"""The PostgreSQL engine (psycopg 3): state and ledger as two schemas of one database.

What it keeps of SQLite's behaviour, so callers written for SQLite run unchanged:

- ``transaction()`` serialises writers, as ``BEGIN IMMEDIATE`` does: ``BEGIN``, then
  ``pg_advisory_xact_lock`` on a key of the schema, so a read-then-write inside a transaction
  sees no other writer between its read and its write. (A first step: row claims with
  ``FOR UPDATE SKIP LOCKED`` can let writers of different rows run side by side later.)
- ``?`` and ``:name`` placeholders (``core.db.dialect.to_pyformat``); values are bound on the
  client, so an untyped ``?`` compares like SQLite's; a Python ``bool`` is stored as 0/1 and a
  ``numeric`` result (``SUM`` of integers) reads back as ``int``, or ``float`` with a fraction.
- Rows read by name or by index (:class:`PgRow`); ``rowcount``; ``lastrowid`` right after an
  ``INSERT`` into a table with an identity key (``lastval()``), for callers not yet on RETURNING.
- Each store's schema (``search_path``) holds its tables, ``schema_versions`` and a
  case-insensitive collation ``nocase``, so ``COLLATE NOCASE`` means what it means in SQLite
  (``LIKE`` is refused on such a column by PostgreSQL).

Failure is never a hang: connecting gives up after :data:`CONNECT_TIMEOUT_SECONDS`, a lock wait
after :data:`LOCK_TIMEOUT_SECONDS` (SQLite's busy timeout), a statement after
:data:`STATEMENT_TIMEOUT_SECONDS`, and TCP keepalives notice a server gone silent. Each of those
raises :class:`core.db.DatabaseUnavailable`; the next use connects again. A server that could
not be reached is left alone for a few seconds (``core.db.outage``): meanwhile every use is
refused at once, without waiting for the connect timeout again.
"""

from __future__ import annotations

import hashlib
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus

from core.db import Database, DatabaseUnavailable, Location, PostgresLocation, Reader, ReadFailed
from core.db.dialect import Migration, PerEngine, postgres_ddl, statements, to_pyformat
from core.db.outage import outage_of

CONNECT_TIMEOUT_SECONDS = 5
LOCK_TIMEOUT_SECONDS = 30
STATEMENT_TIMEOUT_SECONDS = 300
# A server that stops answering (cable cut, host down) is noticed within about 15 s.
_KEEPALIVES = "keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=3 tcp_user_timeout=15000"

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# A statement that may write (a WITH may hold an INSERT, UPDATE or DELETE).
_WRITE = re.compile(r"\s*(?:INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)


def advisory_key(purpose: str, schema: str = "") -> int:
    """A stable 64-bit advisory lock key: the same on every node for the same purpose and schema."""
    digest = hashlib.sha256(f"sftp-inbox:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class TransactionAborted(RuntimeError):
    """A statement failed inside a transaction and its error was caught: PostgreSQL has
    aborted the transaction, so nothing of it is committed (SQLite would have kept going; use
    a savepoint around a statement that may fail)."""


class PgRow:
    """A row read by column name (as written, or lower case) or by index, like ``sqlite3.Row``."""

    __slots__ = ("_index", "_keys", "_values")

    def __init__(self, values: tuple[Any, ...], index: dict[str, int], keys: list[str]) -> None:
        self._values = values
        self._index = index
        self._keys = keys

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._index[key] if key in self._index else self._index[key.lower()]]
            except KeyError:
                raise IndexError(f"No item with that key: {key!r}") from None
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._keys)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PgRow):
            return self._keys == other._keys and self._values == other._values
        return NotImplemented

    def __hash__(self) -> int:
        return hash((tuple(self._keys), self._values))

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._keys, self._values))!r})"


def _rows(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    """psycopg's row factory for :class:`PgRow`."""
    keys = [column.name for column in cursor.description or ()]
    index: dict[str, int] = {}
    for position, key in enumerate(keys):
        index.setdefault(key, position)
        index.setdefault(key.lower(), position)
    return lambda values: PgRow(tuple(values), index, keys)


class _BoolAsInteger(Dumper):
    """SQLite stores ``True`` as 1; the columns are integers here too."""

    oid = psycopg.postgres.types["int8"].oid

    def dump(self, obj: Any) -> Buffer:
        return b"1" if obj else b"0"

    def quote(self, obj: Any) -> Buffer:
        return self.dump(obj)


class _NumericAsNumber(Loader):
    """``SUM`` of integers is ``numeric`` in PostgreSQL; SQLite gives an int (or a float)."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data).decode()
        return float(text) if any(char in text for char in ".eEnN") else int(text)


class PgCursor:
    """The result of one statement, with the parts of ``sqlite3.Cursor`` callers use."""

    def __init__(self, cursor: psycopg.Cursor[Any], db: PostgresDatabase, serial: int, insert: bool) -> None:
        self._cursor = cursor
        self._db = db
        self._serial = serial
        self._insert = insert

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        """The key an ``INSERT`` just gave its row (``lastval()``): valid only before the next
        statement, and only for a table with an identity key; prefer ``RETURNING id``."""
        if not self._insert:
            return None
        return self._db.last_value(self._serial)

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchone(self) -> PgRow | None:
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def fetchall(self) -> list[PgRow]:
        return self._cursor.fetchall() if self._cursor.description is not None else []

    def fetchmany(self, size: int = 1) -> list[PgRow]:
        return self._cursor.fetchmany(size) if self._cursor.description is not None else []

    def __iter__(self) -> Iterator[PgRow]:
        return iter(self.fetchall())


class PgConnection:
    """What ``transaction()`` yields: ``execute`` and ``executemany`` as on ``sqlite3.Connection``."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        return self._db.run(sql, parameters)

    def executemany(self, sql: str, parameters: Any) -> PgCursor:
        return self._db.run(sql, parameters, many=True)


#: A row if the schema (its ``nocase`` collation) and its ``schema_versions`` exist.
_BOOTSTRAPPED = ("SELECT 1 FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace"
                 " WHERE n.nspname = ? AND c.collname = 'nocase' AND to_regclass(?) IS NOT NULL")


class PostgresDatabase(Database):
    """One connection per process (like the SQLite engine), serialised by a lock."""

    def __init__(self, location: Location) -> None:
        if not isinstance(location, PostgresLocation):
            raise TypeError(f"PostgreSQL needs a PostgresLocation, not {location}")
        if not _SCHEMA_NAME.match(location.schema):
            raise ValueError(f"{location.schema!r} is not a schema name (lower case letters, digits, _)")
        self.path = location
        self._location = location
        self._lock = threading.RLock()
        self._depth = 0
        self._serial = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._adapter = PgConnection(self)
        self._writer_key = advisory_key("writer", location.schema)
        self._outage = outage_of(location.server, _probe(location.url))
        # An existing schema is migrated only where the location allows (docs/postgresql.md: a
        # cluster migrates as a step of its own); a component's new tables are set up anyway.
        self.may_migrate = location.migrate
        with self._lock:
            self._bootstrap()

    # -- connection ------------------------------------------------------------------------

    def _connected(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._depth:
            raise DatabaseUnavailable(f"{self.path}: the connection was lost inside a transaction")
        refusal = self._outage.refusal()
        if refusal is not None:
            raise DatabaseUnavailable(f"{self.path}: {refusal}")
        try:
            conn = self._connect()
        except BaseException as exc:
            self._outage.failed(_first_line(exc.__cause__ or exc))
            raise
        self._outage.recovered()
        self._conn = conn
        return conn

    def _connect(self) -> psycopg.Connection[Any]:
        schema = self._location.schema
        options = (f"-c search_path={schema} -c statement_timeout={STATEMENT_TIMEOUT_SECONDS * 1000}"
                   f" -c lock_timeout={LOCK_TIMEOUT_SECONDS * 1000}")
        try:
            conninfo = psycopg.conninfo.make_conninfo(
                self._location.url, connect_timeout=CONNECT_TIMEOUT_SECONDS, options=options,
                **dict(item.split("=") for item in _KEEPALIVES.split()),
            )
            conn: psycopg.Connection[Any] = psycopg.connect(
                conninfo, autocommit=True, cursor_factory=psycopg.ClientCursor, row_factory=_rows
            )
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"{self.path}: cannot connect: {_first_line(exc)}") from exc
        conn.adapters.register_dumper(bool, _BoolAsInteger)
        conn.adapters.register_loader("numeric", _NumericAsNumber)
        return conn

    def _bootstrap(self) -> None:
        """The schema, its ``nocase`` collation and ``schema_versions``, made once by one node.

        What exists already is left alone, so a role without the right to create schemas works
        in a schema its administrator made for it.
        """
        schema = self._location.schema
        # Read first: a store opened where all of it exists does not take the writer lock.
        if self.query_one(_BOOTSTRAPPED, (schema, f"{schema}.schema_versions")) is not None:
            return
        with self.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (advisory_key("bootstrap"),))
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = ?", (schema,)).fetchone() is None:
                conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(
                f"CREATE COLLATION IF NOT EXISTS {schema}.nocase"
                " (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.schema_versions ("
                " component TEXT PRIMARY KEY, version BIGINT NOT NULL)"
            )

    def _lost(self, exc: psycopg.OperationalError) -> DatabaseUnavailable:
        """The error to raise for ``exc``; a connection that broke is dropped, to connect again."""
        conn = self._conn
        if conn is not None and (conn.broken or conn.closed):
            self._conn = None
            conn.close()
        return DatabaseUnavailable(f"{self.path}: {_first_line(exc)}")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- statements ------------------------------------------------------------------------

    def run(self, sql: str, params: Any, many: bool = False, counted: bool = True) -> PgCursor:
        """Run one statement written for SQLite (placeholders translated). ``counted``: a
        statement of the caller's, after which an earlier cursor's ``lastrowid`` is stale."""
        if self._conn is None and not self._depth:
            # Not under the lock: while another thread tries the server again (up to the
            # connect timeout), a server known down refuses this caller at once.
            refusal = self._outage.refusing()
            if refusal is not None:
                raise DatabaseUnavailable(f"{self.path}: {refusal}")
        with self._lock:
            conn = self._connected()
            cursor = conn.cursor()
            self._serial += counted
            try:
                if many:
                    cursor.executemany(to_pyformat(sql), params)
                else:
                    cursor.execute(to_pyformat(sql), params)
            except psycopg.OperationalError as exc:
                raise self._lost(exc) from exc
            return PgCursor(cursor, self, self._serial, sql.lstrip()[:6].upper() == "INSERT")

    def last_value(self, serial: int) -> int | None:
        """``lastval()``, if no statement ran since statement ``serial``."""
        with self._lock:
            if serial != self._serial:
                raise RuntimeError("lastrowid read after another statement ran; use RETURNING")
            row = self.run("SELECT lastval()", (), counted=False).fetchone()
            return None if row is None else int(row[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN`` and the schema's writer lock ... ``COMMIT``; nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield cast(sqlite3.Connection, self._adapter)
                finally:
                    self._depth -= 1
                return
            self.run("BEGIN", (), counted=False)
            self._depth = 1
            try:
                self.run("SELECT pg_advisory_xact_lock(?)", (self._writer_key,), counted=False)
                yield cast(sqlite3.Connection, self._adapter)
                if self._status() == TransactionStatus.INERROR:
                    raise TransactionAborted(f"{self.path}: a statement failed inside the transaction;"
                                             " nothing of it was committed")
            except BaseException:
                self._rollback()
                raise
            else:
                self.run("COMMIT", (), counted=False)
            finally:
                self._depth = 0

    def _status(self) -> TransactionStatus:
        conn = self._conn
        return TransactionStatus.UNKNOWN if conn is None else conn.info.transaction_status

    def _rollback(self) -> None:
        """Roll back, unless the connection is gone (then the server has rolled back already)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = None
            return
        try:
            self._conn.execute("ROLLBACK")
        except psycopg.OperationalError:
            self._conn.close()
            self._conn = None

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        return cast(sqlite3.Cursor, self._statement(sql, params))

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return cast(list[sqlite3.Row], self._statement(sql, params).fetchall())

    def query_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        return cast(sqlite3.Row | None, self._statement(sql, params).fetchone())

    def _statement(self, sql: str, params: Any) -> PgCursor:
        """One statement outside ``transaction()``: a write takes the writer lock, as a write
        waits for ``BEGIN IMMEDIATE`` on SQLite, so it never lands between another transaction's
        read and write. (Its rows are read on the client, so they outlive the commit.)"""
        with self._lock:
            if self._depth or _WRITE.match(sql) is None:
                return self.run(sql, params)
            with self.transaction():
                return self.run(sql, params)

    def _migration_statements(self, step: Migration) -> Iterator[str]:
        if isinstance(step, PerEngine):
            yield from statements(step.postgresql)
            return
        for statement in statements(step):
            yield postgres_ddl(statement)

    def beside(self, location: Location) -> Database | None:
        if (isinstance(location, PostgresLocation) and location.url == self._location.url
                and location.schema != self._location.schema):
            return _Beside(self, location)
        return None


class _Beside(PostgresDatabase):
    """Another schema of ``host``'s database, on host's connection (:meth:`Database.beside`).

    Each transaction joins host's (or opens one of host's), takes this schema's writer lock and
    names this schema's tables (``SET LOCAL search_path``) until it ends; host's are named again
    after it, within the same commit.
    """

    def __new__(cls, host: PostgresDatabase, location: PostgresLocation) -> _Beside:  # noqa: PYI034
        return object.__new__(cls)

    def __init__(self, host: PostgresDatabase, location: PostgresLocation) -> None:
        if not _SCHEMA_NAME.match(location.schema):
            raise ValueError(f"{location.schema!r} is not a schema name (lower case letters, digits, _)")
        self.path = location
        self._location = location
        self._host = host
        self._writer_key = advisory_key("writer", location.schema)
        self._inside = 0
        self.may_migrate = False

    def close(self) -> None:
        """Nothing of its own to close: the connection is host's."""

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        host = self._host
        with host.transaction() as conn:
            if not self._inside:
                conn.execute("SELECT pg_advisory_xact_lock(?)", (self._writer_key,))
                conn.execute(f"SET LOCAL search_path TO {self._location.schema}")
            self._inside += 1
            try:
                yield conn
            finally:
                self._inside -= 1
                if not self._inside and host._status() != TransactionStatus.INERROR:
                    conn.execute(f"SET LOCAL search_path TO {host._location.schema}")

    def _statement(self, sql: str, params: Any) -> PgCursor:
        with self.transaction() as conn:
            return cast(PgCursor, conn.execute(sql, params))

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        raise TypeError(f"{self.path} is written beside another schema: migrate it through its own Database")


class _ReadConnection:
    """What :meth:`PostgresReader.read` yields: each statement gets what is left of the read's
    time as its ``statement_timeout``, and none starts past the deadline."""

    def __init__(self, reader: PostgresReader) -> None:
        self._reader = reader

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> psycopg.Cursor[Any]:
        return self._reader.statement(sql, parameters)


class PostgresReader(Reader):
    """A connection of its own whose transactions are ``READ ONLY`` and ``REPEATABLE READ`` (one
    snapshot for the whole read), its statements cut off at the read's deadline."""

    def __init__(self, location: Location, timeout_seconds: float) -> None:
        if not isinstance(location, PostgresLocation):
            raise TypeError(f"PostgreSQL needs a PostgresLocation, not {location}")
        if not _SCHEMA_NAME.match(location.schema):
            raise ValueError(f"{location.schema!r} is not a schema name (lower case letters, digits, _)")
        self.location = self._location = location
        self._timeout = timeout_seconds
        self._deadline = 0.0
        self._conn: psycopg.Connection[Any] | None = None
        self._adapter = _ReadConnection(self)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        self._deadline = time.monotonic() + self._timeout
        self.statement("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", ())
        try:
            yield cast(sqlite3.Connection, self._adapter)
        finally:
            self._rollback()

    def tables(self) -> set[str]:
        rows = self._catalogue("SELECT table_name FROM information_schema.tables"
                               " WHERE table_schema = current_schema()", ())
        return {row[0] for row in rows}

    def columns(self, table: str) -> set[str]:
        rows = self._catalogue("SELECT column_name FROM information_schema.columns"
                               " WHERE table_schema = current_schema() AND table_name = ?", (table,))
        return {row[0] for row in rows}

    def ping(self) -> None:
        self._deadline = time.monotonic() + self._timeout
        self.statement("SELECT 1", ()).fetchone()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _catalogue(self, sql: str, params: Sequence[Any]) -> list[PgRow]:
        conn = self._conn
        if conn is None or conn.info.transaction_status != TransactionStatus.INTRANS:
            self._deadline = time.monotonic() + self._timeout  # outside a read: a deadline of its own
        return self.statement(sql, params).fetchall()

    def statement(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> psycopg.Cursor[Any]:
        """Run ``sql`` with what is left of the deadline; raises as :class:`~core.db.Reader` says."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DatabaseUnavailable(f"{self.location}: the read took longer than {self._timeout:g} s")
        try:
            conn = self._connected(left)
            in_read = conn.info.transaction_status == TransactionStatus.INTRANS
            timeout = max(1, math.ceil((self._deadline - time.monotonic()) * 1000))
            conn.execute(f"SET{' LOCAL' if in_read else ''} statement_timeout = {timeout}")
            return conn.cursor().execute(to_pyformat(sql), params)
        except psycopg.OperationalError as exc:  # unreachable, gone, cancelled at its timeout
            self._drop_if_broken()
            raise DatabaseUnavailable(f"{self.location}: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise ReadFailed(f"{self.location}: {_first_line(exc)}") from None

    def _connected(self, left: float) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        options = f"-c search_path={self._location.schema} -c default_transaction_read_only=on"
        conninfo = psycopg.conninfo.make_conninfo(
            self._location.url, connect_timeout=max(2, math.ceil(left)), options=options,
            **dict(item.split("=") for item in _KEEPALIVES.split()),
        )
        conn: psycopg.Connection[Any] = psycopg.connect(
            conninfo, autocommit=True, cursor_factory=psycopg.ClientCursor, row_factory=_rows
        )
        conn.adapters.register_dumper(bool, _BoolAsInteger)
        conn.adapters.register_loader("numeric", _NumericAsNumber)
        self._conn = conn
        return conn

    def _drop_if_broken(self) -> None:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn.close()
            self._conn = None

    def _rollback(self) -> None:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._conn = None
            return
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            conn.close()
            self._conn = None


def _probe(url: str) -> Callable[[], None]:
    """Connects to the server of ``url`` and hangs up: how an outage tries the server again."""
    def probe() -> None:
        conninfo = psycopg.conninfo.make_conninfo(
            url, connect_timeout=CONNECT_TIMEOUT_SECONDS, **dict(item.split("=") for item in _KEEPALIVES.split()))
        psycopg.connect(conninfo, autocommit=True).close()

    return probe


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
