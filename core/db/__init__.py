"""The state and ledger databases: one face, :class:`Database`, over two engines.

``Database(location)`` opens SQLite (``location`` a file path: the embedded default, WAL mode,
``core.db.sqlite``) or PostgreSQL (``location`` a :class:`PostgresLocation`: a server's URL and
the schema the store lives in, ``core.db.postgres``). Callers see the same methods and the same
guarantees on both: statements written with SQLite's ``?``/``:name`` placeholders, rows read by
name or index, ``transaction()`` serialising writers (SQLite's ``BEGIN IMMEDIATE``; a PostgreSQL
advisory lock per schema), nested transactions joining the outer one, savepoints.

Each part of the product owns its tables and registers its migrations under its own component
name (``core``, ``sftpd``, ``ingest``, ``ledger``), so no part edits another's schema; a
migration is SQL in SQLite's dialect, translated for PostgreSQL by ``core.db.dialect``, or a
:class:`~core.db.dialect.PerEngine` pair. docs/postgresql.md says what the engine does.

Typing: ``transaction()`` yields what callers annotate as ``sqlite3.Connection`` (and rows as
``sqlite3.Row``). On PostgreSQL these are adapters with the same methods callers use
(``execute``, ``executemany``, ``fetchone``, ``fetchall``, ``rowcount``, ``lastrowid``, rows by
name and index), presented under SQLite's types until the callers' annotations move to
:class:`Connection` and :class:`Row`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from core.db.dialect import Migration, PerEngine
from core.errors import SftpInboxError

_Face = TypeVar("_Face")

__all__ = [
    "Connection",
    "Database",
    "DatabaseUnavailable",
    "Location",
    "Migration",
    "PerEngine",
    "PostgresLocation",
    "ReadFailed",
    "Reader",
    "Row",
    "SchemaTooNew",
    "SchemaTooOld",
]


class DatabaseUnavailable(SftpInboxError):
    """The database server cannot be reached, or did not answer in time; nothing was committed
    by the statement that failed. The next use connects again."""


class ReadFailed(SftpInboxError):
    """A :class:`Reader`'s read failed for another reason than time or reach (a file that is not
    a database, a statement the database refuses)."""


class SchemaTooNew(RuntimeError, SftpInboxError):
    """The database was migrated by a newer program: refused rather than silently misread."""


class SchemaTooOld(RuntimeError, SftpInboxError):
    """The database's schema is older than the program and may not be migrated by this opener
    (PostgreSQL's default: ``sftpctl migrate`` is a cluster's explicit step)."""


#: What the operator is told to do about a schema older than the program.
MIGRATE_HINT = 'run `sftpctl migrate` first (or set [database] migrate = "at-start")'


@dataclass(frozen=True, repr=False)
class PostgresLocation:
    """Where a store lives on PostgreSQL: the server's URL and the store's own schema."""

    url: str
    schema: str
    #: Whether opening it may migrate a schema older than the program (``Database.migrate``);
    #: the tables of a component not set up yet (a new database) are made either way.
    migrate: bool = True

    def __repr__(self) -> str:
        return f"PostgresLocation({str(self)!r})"

    def __str__(self) -> str:
        """The URL without its password, and the schema: for messages and logs."""
        return f"{self.server} (schema {self.schema})"

    @property
    def server(self) -> str:
        """The URL without its password: the server (and database), whatever the schema."""
        parts = urlsplit(self.url)
        netloc = parts.netloc
        if "@" in netloc:
            credentials, host = netloc.rsplit("@", 1)
            netloc = f"{credentials.split(':', 1)[0]}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))


#: A database's identity: a SQLite file, or a schema of a PostgreSQL database.
Location = Path | PostgresLocation


class Row(Protocol):
    """A result row, read by column name or index (``sqlite3.Row`` and the PostgreSQL rows)."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def keys(self) -> list[str]: ...
    def __len__(self) -> int: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    @property
    def lastrowid(self) -> int | None: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What ``transaction()`` yields, on either engine."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...
    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


class Database:
    """One connection shared by the threads of a process, serialised by a lock.

    ``Database(path)`` is SQLite, ``Database(PostgresLocation(...))`` PostgreSQL: the class
    picks the engine, so callers never name one. Statements here are short; long work (hashing,
    file I/O) happens outside a transaction.
    """

    path: Location
    #: Whether :meth:`migrate` may take a component's existing tables to a newer version (see
    #: :attr:`PostgresLocation.migrate`); a component not set up yet is set up anyway.
    may_migrate: bool = True

    # The face picks the engine's class, so it does not return cls itself.
    def __new__(cls, location: Location) -> Database:  # noqa: PYI034
        if cls is Database:
            return super().__new__(_engine_class(Database, location, "PostgresDatabase", "SqliteDatabase"))
        return super().__new__(cls)

    def close(self) -> None:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction; nested calls join the outer one. Writers are serialised."""
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def query_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        raise NotImplementedError

    def beside(self, location: Location) -> Database | None:
        """The store at ``location`` written in this store's transactions, so that one commit
        holds both: possible where both are schemas of one PostgreSQL database; None elsewhere
        (SQLite files, two servers). Its writer lock is taken, after this store's, in each
        transaction that writes it; it needs no closing."""
        return None

    def _migration_statements(self, step: Migration) -> Iterator[str]:
        """The statements of one migration step, in this engine's dialect."""
        raise NotImplementedError

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the migrations of ``component`` not yet applied; returns the schema version.

        ``migrations[i]`` takes the schema from version ``i`` to ``i + 1``, all in one
        transaction, which serialises migrators: a second node waits, then finds the work done;
        a step that fails leaves the schema at its old version, nothing of it applied.
        A database newer than this code is refused rather than silently misread, and one older
        too unless :attr:`may_migrate` (:class:`SchemaTooOld`): a component's first version
        (its tables made in a new database) is always applied, since no node can be using them.
        """
        # Read first, outside a transaction: a store opened on an up-to-date schema (every
        # command, every writer child) then never takes the writer lock to learn it.
        row = self.query_one("SELECT version FROM schema_versions WHERE component = ?", (component,))
        if row is not None and row["version"] == len(migrations):
            return len(migrations)
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (component,)
            ).fetchone()
            current = row["version"] if row else 0
            if current > len(migrations):
                raise SchemaTooNew(
                    f"{self.path}: schema of {component!r} is version {current}, "
                    f"newer than this program ({len(migrations)}); upgrade the program"
                )
            if 0 < current < len(migrations) and not self.may_migrate:
                raise SchemaTooOld(
                    f"{self.path}: schema of {component!r} is version {current}, "
                    f"older than this program ({len(migrations)}); {MIGRATE_HINT}"
                )
            for step in migrations[current:]:
                for statement in self._migration_statements(step):
                    conn.execute(statement)
            if current < len(migrations):
                conn.execute(
                    "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
                    " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, len(migrations)),
                )
        return len(migrations)


class Reader:
    """A read-only connection of its own, for an observer (the admin listener) that must never
    wait on the store's writers nor hold them up: ``Reader(location, timeout_seconds)``.

    Each :meth:`read` is one read transaction (its figures agree with each other) cut off
    ``timeout_seconds`` after it began; :meth:`tables` and :meth:`columns` say what the store
    holds, inside a read or not. Not thread-safe: one thread uses it. A read past its deadline,
    or a database that cannot be reached or does not exist, raises :class:`DatabaseUnavailable`;
    any other failure :class:`ReadFailed`. The engine-specific parts (SQLite's ``query_only``
    and progress handler, PostgreSQL's read-only transactions and ``statement_timeout``, each
    engine's catalogue) live in the engine's module.
    """

    location: Location

    # The face picks the engine's class, as Database does.
    def __new__(cls, location: Location, timeout_seconds: float) -> Reader:  # noqa: PYI034
        if cls is Reader:
            return super().__new__(_engine_class(Reader, location, "PostgresReader", "SqliteReader"))
        return super().__new__(cls)

    def read(self) -> AbstractContextManager[sqlite3.Connection]:
        """One read transaction, rolled back at its end; raises as the class says."""
        raise NotImplementedError

    def tables(self) -> set[str]:
        """The names of the store's tables (a component's appear once it first opened the store)."""
        raise NotImplementedError

    def columns(self, table: str) -> set[str]:
        """The names of ``table``'s columns (none if it does not exist)."""
        raise NotImplementedError

    def ping(self) -> None:
        """Return if the database answers a trivial query within the timeout, else raise."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _engine_class(face: type[_Face], location: Location, postgres: str, sqlite: str) -> type[_Face]:
    """``face``'s class named ``postgres`` in ``core.db.postgres`` for a :class:`PostgresLocation`,
    else the one named ``sqlite`` in ``core.db.sqlite``; each engine's module is imported when
    first needed (psycopg only where PostgreSQL is used)."""
    if isinstance(location, PostgresLocation):
        try:
            from core.db import postgres as engine
        except ImportError as exc:
            raise DatabaseUnavailable(
                f"{location}: PostgreSQL needs psycopg ({exc}): pip install 'sftp-inbox[postgresql]'"
            ) from exc
        return cast(type[_Face], getattr(engine, postgres))
    from core.db import sqlite as sqlite_engine

    return cast(type[_Face], getattr(sqlite_engine, sqlite))
