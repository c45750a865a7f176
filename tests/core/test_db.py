"""core.db: one face over SQLite and PostgreSQL; each behaviour is checked on both engines.

PostgreSQL is a real server (tests/support/postgres.py), started once for the session.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import core.tenants
import ingest.claims
import ingest.retention
import ingest.store
import ledger.migrations
import sftpd.defender
from core.db import Database, DatabaseUnavailable, Location, PerEngine, PostgresLocation, SchemaTooNew
from core.db.dialect import Untranslatable, postgres_ddl, statements, to_pyformat
from core.db.postgres import TransactionAborted
from core.db.sqlite import use_wal
from tests.core.conftest import Locate

WAIT_SECONDS = 30.0


@pytest.fixture
def db(locate: Locate) -> Iterator[Database]:
    database = _items_store(locate("state"))
    yield database
    database.close()


# -- statements and rows ----------------------------------------------------------------------


def test_placeholders_named_and_positional_and_literal_percent_and_question_mark(db: Database) -> None:
    db.execute("INSERT INTO items (name, size) VALUES (?, ?)", ("50% off?", 3))
    db.execute("INSERT INTO items (name, size) VALUES (:name, :size)", {"name": "plain", "size": 4})
    rows = db.query("SELECT name, '?%' AS mark FROM items WHERE name LIKE '%off%' AND size = ?", (3,))
    assert [(row["name"], row["mark"]) for row in rows] == [("50% off?", "?%")]
    assert db.query_one("SELECT size FROM items WHERE name = :name", {"name": "plain"})["size"] == 4  # type: ignore[index]


def test_rows_read_by_name_and_index_and_as_a_dict(db: Database) -> None:
    db.execute("INSERT INTO items (name, size, flag, body) VALUES (?, ?, ?, ?)", ("a", 2**40, True, b"\x00\xff"))
    row = db.query_one("SELECT id, name, size, flag, body FROM items")
    assert row is not None
    assert (row[1], row["name"], row["NAME"]) == ("a", "a", "a")
    assert (row["size"], row["flag"], row["body"]) == (2**40, 1, b"\x00\xff")
    assert row.keys() == ["id", "name", "size", "flag", "body"] and len(row) == 5
    assert dict(row) == {"id": row[0], "name": "a", "size": 2**40, "flag": 1, "body": b"\x00\xff"}
    assert db.query_one("SELECT name FROM items WHERE name = 'none'") is None


def test_rowcount_lastrowid_executemany_and_sums(db: Database) -> None:
    with db.transaction() as conn:
        first = conn.execute("INSERT INTO items (name, size) VALUES ('a', 1)").lastrowid
        conn.executemany("INSERT INTO items (name, size) VALUES (?, ?)", [("b", 2), ("c", 3)])
        returned = conn.execute("INSERT INTO items (name, size) VALUES ('d', 4) RETURNING id").fetchone()[0]
        assert conn.execute("UPDATE items SET size = size + 1 WHERE size > ?", (1,)).rowcount == 3
    assert db.query_one("SELECT name FROM items WHERE id = ?", (first,))["name"] == "a"  # type: ignore[index]
    assert db.query_one("SELECT name FROM items WHERE id = ?", (returned,))["name"] == "d"  # type: ignore[index]
    alone = db.execute("INSERT INTO items (name, size) VALUES ('e', 0)")  # outside a transaction
    assert db.query_one("SELECT name FROM items WHERE id = ?", (alone.lastrowid,))["name"] == "e"  # type: ignore[index]
    totals = db.query_one("SELECT SUM(size) AS total, COUNT(*) AS n, AVG(size) AS mean FROM items")
    assert totals is not None and (totals["total"], totals["n"], totals["mean"]) == (13, 5, 2.6)
    assert type(totals["total"]) is int


# -- transactions -----------------------------------------------------------------------------


def test_an_error_rolls_the_transaction_back_and_a_nested_one_joins_the_outer(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO items (name) VALUES ('outer')")
        with db.transaction() as inner:
            inner.execute("INSERT INTO items (name) VALUES ('inner')")
        raise RuntimeError("after the nested block")
    assert db.query("SELECT name FROM items") == []
    with db.transaction() as conn, db.transaction() as inner:
        inner.execute("INSERT INTO items (name) VALUES ('kept')")
    assert [row["name"] for row in db.query("SELECT name FROM items")] == ["kept"]


def test_a_savepoint_rolled_back_undoes_its_statements_only(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (name) VALUES ('before')")
        conn.execute("SAVEPOINT request")
        conn.execute("INSERT INTO items (name) VALUES ('undone')")
        with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
            conn.execute("INSERT INTO items (name) VALUES ('before')")  # refused: UNIQUE
        conn.execute("ROLLBACK TO request")
        conn.execute("RELEASE request")
        conn.execute("INSERT INTO items (name) VALUES ('after')")
    assert [row["name"] for row in db.query("SELECT name FROM items ORDER BY id")] == ["before", "after"]


@pytest.mark.parametrize("second_writer", ["transaction", "statement"])
def test_writers_are_serialised_across_connections(db: Database, locate: Locate, second_writer: str) -> None:
    """Read-then-write inside a transaction loses no update while another connection writes,
    in a transaction of its own or by a single statement."""
    db.execute("INSERT INTO items (name, size) VALUES ('counter', 0)")
    other = Database(locate("state"))
    errors: list[BaseException] = []

    def increment() -> None:
        try:
            if second_writer == "statement":
                other.execute("UPDATE items SET size = size + 1 WHERE name = 'counter'")
                return
            with other.transaction() as conn:
                value = conn.execute("SELECT size FROM items WHERE name = 'counter'").fetchone()[0]
                conn.execute("UPDATE items SET size = ? WHERE name = 'counter'", (value + 1,))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    second = threading.Thread(target=increment)
    try:
        with db.transaction() as conn:
            value = conn.execute("SELECT size FROM items WHERE name = 'counter'").fetchone()[0]
            second.start()
            if isinstance(db.path, PostgresLocation):
                _until_a_writer_waits(db.path.url)  # the other connection is queued on the lock
            second.join(0.5)
            assert second.is_alive(), "a second writer ran inside the first one's transaction"
            conn.execute("UPDATE items SET size = ? WHERE name = 'counter'", (value + 1,))
        second.join(WAIT_SECONDS)
    finally:
        other.close()
    assert errors == []
    assert db.query_one("SELECT size FROM items WHERE name = 'counter'")["size"] == 2  # type: ignore[index]


def _until_a_writer_waits(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as watcher:
        for _ in range(int(WAIT_SECONDS / 0.05)):
            waiting = watcher.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            if waiting.fetchone() == (1,):
                return
            threading.Event().wait(0.05)
    raise AssertionError("the second writer never waited for the lock")


# -- migrations -------------------------------------------------------------------------------


def test_two_concurrent_migrators_apply_each_step_once(locate: Locate) -> None:
    steps = ["CREATE TABLE applied (step INTEGER)", "INSERT INTO applied (step) VALUES (2)"]
    first, second = Database(locate("state")), Database(locate("state"))
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def migrate(database: Database) -> None:
        start.wait()
        try:
            outcomes.append(database.migrate("test", steps))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes.append(exc)

    threads = [threading.Thread(target=migrate, args=(database,)) for database in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    try:
        assert outcomes == [2, 2]
        assert [tuple(row) for row in first.query("SELECT step FROM applied")] == [(2,)]
    finally:
        first.close()
        second.close()


def test_a_store_on_an_up_to_date_schema_opens_while_a_writer_holds_its_transaction(
    db: Database, locate: Locate
) -> None:
    """Opening learns the schema's version without the writer lock: a writer child or a command
    does not wait for a long batch of another process to learn there is nothing to migrate."""
    opened: list[Database] = []
    opener = threading.Thread(target=lambda: opened.append(_items_store(locate("state"))))
    with db.transaction() as conn:
        conn.execute("INSERT INTO items (name) VALUES ('held')")
        opener.start()
        opener.join(WAIT_SECONDS / 3)
        assert opened, "opening the store waited for the writer"
    opened[0].close()


def _items_store(location: Location) -> Database:
    database = Database(location)
    database.migrate("test", [
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, size INTEGER, flag INTEGER, body BLOB)"
    ])
    return database


def test_a_schema_newer_than_the_program_is_refused(db: Database) -> None:
    with pytest.raises(SchemaTooNew, match=r"schema of 'test' is version 1, newer than this program \(0\)"):
        db.migrate("test", [])
    assert db.migrate("test", ["CREATE TABLE unused (x INTEGER)"]) == 1  # same version: nothing to do


def test_a_per_engine_step_runs_its_engines_sql(db: Database) -> None:
    db.migrate("variant", [PerEngine(sqlite="CREATE TABLE v AS SELECT 'sqlite' AS engine",
                                     postgresql="CREATE TABLE v AS SELECT 'postgresql' AS engine")])
    expected = "postgresql" if isinstance(db.path, PostgresLocation) else "sqlite"
    assert db.query_one("SELECT engine FROM v")["engine"] == expected  # type: ignore[index]


def test_every_components_migrations_apply(locate: Locate) -> None:
    """The product's own schema, written for SQLite, on each engine (PostgreSQL through the dialect)."""
    state, ledger_db = Database(locate("state")), Database(locate("ledger"))
    try:
        for component, module in [("core", core.tenants), (sftpd.defender.COMPONENT, sftpd.defender),
                                  (ingest.claims.COMPONENT, ingest.claims), (ingest.store.COMPONENT, ingest.store),
                                  (ingest.retention.COMPONENT, ingest.retention)]:
            assert state.migrate(component, module.MIGRATIONS) == len(module.MIGRATIONS)
        assert ledger_db.migrate("ledger", ledger.migrations.MIGRATIONS) == len(ledger.migrations.MIGRATIONS)
        # One database, two schemas on PostgreSQL: each store sees its own tables only.
        assert state.query_one("SELECT version FROM schema_versions WHERE component = 'ledger'") is None
        # COLLATE NOCASE keeps its meaning: one field, whatever its case.
        state.execute("INSERT INTO tenants (name, email, api_token, created_at, updated_at)"
                      " VALUES ('acme', 'a@b', 't', 'x', 'x')")
        state.execute("INSERT INTO data_dictionary (tenant, field) VALUES ('acme', 'Score')")
        with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
            state.execute("INSERT INTO data_dictionary (tenant, field) VALUES ('acme', 'SCORE')")
    finally:
        state.close()
        ledger_db.close()


# -- PostgreSQL: failures are errors, not hangs -----------------------------------------------


def test_a_refused_connection_is_a_clear_error() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: refused at once
        location = PostgresLocation(f"postgresql://someone:secret@127.0.0.1:{port}/inbox", "state")
        with pytest.raises(DatabaseUnavailable, match=r"cannot connect") as refused:
            Database(location)
    assert "secret" not in str(refused.value) and "someone@127.0.0.1" in str(refused.value)
    assert "secret" not in repr(location)


def test_a_server_that_never_answers_is_given_up_on() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts (the kernel does) and never says a word
        port = silent.getsockname()[1]
        with pytest.raises(DatabaseUnavailable, match=r"cannot connect"):
            Database(PostgresLocation(f"postgresql://someone@127.0.0.1:{port}/inbox", "state"))


def test_a_lost_connection_fails_the_statement_and_the_next_use_connects_again(postgres_url: str) -> None:
    db = Database(PostgresLocation(postgres_url, "state"))
    try:
        db.migrate("test", ["CREATE TABLE items (name TEXT)"])
        with pytest.raises(DatabaseUnavailable), db.transaction() as conn:
            conn.execute("INSERT INTO items (name) VALUES ('lost')")
            _terminate_backends(postgres_url)
            conn.execute("INSERT INTO items (name) VALUES ('never')")
        assert db.query("SELECT name FROM items") == []
    finally:
        db.close()


def test_a_caught_error_inside_a_transaction_commits_nothing(postgres_url: str) -> None:
    """PostgreSQL aborts the transaction at a failed statement; committing it is refused, not faked."""
    db = Database(PostgresLocation(postgres_url, "state"))
    try:
        db.migrate("test", ["CREATE TABLE items (name TEXT UNIQUE)"])
        with pytest.raises(TransactionAborted), db.transaction() as conn:
            conn.execute("INSERT INTO items (name) VALUES ('a')")
            with pytest.raises(psycopg.IntegrityError):
                conn.execute("INSERT INTO items (name) VALUES ('a')")
        assert db.query("SELECT name FROM items") == []
    finally:
        db.close()


def test_a_store_beside_another_commits_with_it_in_one_transaction(locate: Locate) -> None:
    """Two schemas of one PostgreSQL database, each with a table of the same name: written in one
    of the ledger's transactions, both commit together or neither does, each statement names its
    own schema's table, and the state's writer lock is held until the commit. SQLite files (and
    a store beside itself) cannot: None."""
    ledger, state = Database(locate("ledger")), Database(locate("state"))
    try:
        for db in (ledger, state):
            db.migrate("test", ["CREATE TABLE items (name TEXT)"])
        beside = ledger.beside(state.path)
        assert ledger.beside(ledger.path) is None
        if not isinstance(state.path, PostgresLocation):
            assert beside is None
            return
        assert beside is not None
        with ledger.transaction() as conn:
            conn.execute("INSERT INTO items (name) VALUES ('ledger row')")
            with beside.transaction() as inner:
                inner.execute("INSERT INTO items (name) VALUES ('state row')")
                assert _held_elsewhere(state.path)
            beside.execute("UPDATE items SET name = 'state row, marked' WHERE name = 'state row'")
            conn.execute("INSERT INTO items (name) VALUES ('ledger row 2')")
            assert state.query("SELECT name FROM items") == []  # not committed yet
        assert [tuple(row) for row in ledger.query("SELECT name FROM items ORDER BY name")] == [
            ("ledger row",), ("ledger row 2",)]
        assert [tuple(row) for row in state.query("SELECT name FROM items")] == [("state row, marked",)]
        assert not _held_elsewhere(state.path)

        with pytest.raises(RuntimeError), ledger.transaction() as conn:
            conn.execute("INSERT INTO items (name) VALUES ('rolled back')")
            beside.execute("INSERT INTO items (name) VALUES ('rolled back')")
            raise RuntimeError("a fault before the commit")
        assert ledger.query_one("SELECT count(*) FROM items")[0] == 2  # type: ignore[index]
        assert state.query_one("SELECT count(*) FROM items")[0] == 1  # type: ignore[index]
    finally:
        ledger.close()
        state.close()


def _held_elsewhere(location: PostgresLocation) -> bool:
    """True if the writer lock of ``location``'s schema is held by another session."""
    from core.db.postgres import advisory_key

    with psycopg.connect(location.url, autocommit=True) as other:
        row = other.execute("SELECT pg_try_advisory_lock(%s)", (advisory_key("writer", location.schema),)).fetchone()
        assert row is not None
        if row[0]:
            other.execute("SELECT pg_advisory_unlock(%s)", (advisory_key("writer", location.schema),))
        return not row[0]


def _terminate_backends(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = current_database() AND pid <> pg_backend_pid()")


# -- the dialect --------------------------------------------------------------------------------


def test_placeholders_become_psycopgs_outside_quotes_and_comments() -> None:
    assert to_pyformat("SELECT '?', \"a?\", x::int FROM t WHERE a = ? AND b = :name -- ?\n") == (
        "SELECT '?', \"a?\", x::int FROM t WHERE a = %s AND b = %(name)s -- ?\n"
    )
    assert to_pyformat("SELECT 'it''s 5%' WHERE a LIKE ? || '%'") == "SELECT 'it''s 5%%' WHERE a LIKE %s || '%%'"


def test_ddl_translation() -> None:
    assert postgres_ddl("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER, r REAL, b BLOB)") == (
        "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT, r DOUBLE PRECISION, b BYTEA)"
    )
    assert postgres_ddl("CREATE TABLE k (a TEXT, PRIMARY KEY (a)) WITHOUT ROWID;\n") == (
        "CREATE TABLE k (a TEXT, PRIMARY KEY (a));"
    )
    assert postgres_ddl("INSERT OR IGNORE INTO t (n) VALUES (1);") == (
        "INSERT INTO t (n) VALUES (1) ON CONFLICT DO NOTHING"
    )
    assert postgres_ddl("CREATE INDEX i ON t (n) WHERE n > 0") == "CREATE INDEX i ON t (n) WHERE n > 0"


@pytest.mark.parametrize("statement", [
    "PRAGMA foreign_keys = ON",
    "INSERT OR REPLACE INTO t VALUES (1)",
    "CREATE TABLE t (at TEXT DEFAULT (strftime('%s', 'now')))",
    "CREATE TABLE t (a INTEGER) STRICT",
    "SELECT rowid FROM t",
])
def test_sqlite_only_ddl_is_refused_by_name(statement: str) -> None:
    with pytest.raises(Untranslatable, match="PerEngine"):
        postgres_ddl(statement)


def test_a_script_splits_into_statements_at_semicolons_outside_quotes() -> None:
    assert [s.strip() for s in statements("CREATE TABLE a (x TEXT DEFAULT ';');\nINSERT INTO a VALUES ('b');\n")] == [
        "CREATE TABLE a (x TEXT DEFAULT ';');", "INSERT INTO a VALUES ('b');"
    ]


# -- SQLite's WAL mode ------------------------------------------------------------------------
def test_wal_mode_is_set_once_the_file_is_free_and_a_file_busy_for_too_long_is_an_error(tmp_path: Path) -> None:
    """SQLite may answer SQLITE_BUSY at once, without its busy handler, when a new connection sets
    the mode: a connection with no busy timeout gets exactly that while another holds the file."""
    path = tmp_path / "state.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    opener = sqlite3.connect(path, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        use_wal(opener, 0.2)
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    use_wal(opener, WAIT_SECONDS)
    release.join()
    assert opener.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_commit_of_thousands_of_pages_leaves_them_in_the_wal_until_it_is_large(tmp_path: Path) -> None:
    """SQLite's default copied the WAL into the file in any commit past 1,000 pages; ours waits
    for 16,384 (a page written by many batches is copied once), then copies and starts again."""
    from core.db.sqlite import CHECKPOINT_PAGES

    path = tmp_path / "bulk.db"
    db = Database(path)
    try:
        db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        page = db.query_one("PRAGMA page_size")[0]  # type: ignore[index]
        empty = path.stat().st_size
        with db.transaction() as conn:
            conn.executemany("INSERT INTO blobs (body) VALUES (?)", [(bytes(page),)] * 2_000)
        assert path.stat().st_size == empty  # 2,000 pages and more, all still in the WAL
        rows = CHECKPOINT_PAGES // 2
        for _ in range(3):
            with db.transaction() as conn:
                conn.executemany("INSERT INTO blobs (body) VALUES (?)", [(bytes(page),)] * rows)
        assert path.stat().st_size > CHECKPOINT_PAGES * page  # copied in once past the threshold
    finally:
        db.close()
