"""core.db.Reader: the observer's read-only connection, checked on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from core.db import Database, DatabaseUnavailable, Location, PostgresLocation, Reader, ReadFailed


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if request.param == "sqlite":
        return tmp_path / "state.db"
    return PostgresLocation(request.getfixturevalue("postgres_url"), "state")


@pytest.fixture
def db(location: Location) -> Iterator[Database]:
    database = Database(location)
    database.migrate("test", ["CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, flag INTEGER)"])
    database.execute("INSERT INTO items (name, flag) VALUES ('a', ?), ('b', ?)", (True, False))
    yield database
    database.close()


@pytest.fixture
def reader(db: Database) -> Iterator[Reader]:
    reader = Reader(db.path, timeout_seconds=10.0)
    yield reader
    reader.close()


def test_a_read_sees_the_rows_the_tables_and_their_columns(reader: Reader) -> None:
    with reader.read() as conn:
        rows = conn.execute("SELECT name, flag, name = ? AS is_a FROM items ORDER BY id", ("a",)).fetchall()
        assert [(row["name"], row["flag"], bool(row["is_a"])) for row in rows] == [("a", 1, True), ("b", 0, False)]
        assert {"items", "schema_versions"} <= reader.tables()
    assert reader.columns("items") == {"id", "name", "flag"}
    assert reader.columns("nothing") == set()
    reader.ping()


def test_a_read_is_one_snapshot_while_a_writer_commits(db: Database, reader: Reader) -> None:
    with reader.read() as conn:
        before = conn.execute("SELECT COUNT(*) AS n FROM items").fetchone()["n"]
        db.execute("INSERT INTO items (name, flag) VALUES ('c', 0)")  # the writer is never held up
        assert conn.execute("SELECT COUNT(*) AS n FROM items").fetchone()["n"] == before == 2
    with reader.read() as conn:
        assert conn.execute("SELECT COUNT(*) AS n FROM items").fetchone()["n"] == 3


def test_a_reader_never_writes(db: Database, reader: Reader) -> None:
    with pytest.raises(ReadFailed, match=r"read-?only"), reader.read() as conn:
        conn.execute("DELETE FROM items")
    with pytest.raises(ReadFailed), reader.read() as conn:
        conn.execute("SELECT * FROM no_such_table")
    assert db.query_one("SELECT COUNT(*) AS n FROM items")["n"] == 2  # type: ignore[index]
    with reader.read() as conn:  # the reader goes on after a failed read
        assert conn.execute("SELECT COUNT(*) AS n FROM items").fetchone()["n"] == 2


def test_a_read_past_its_deadline_is_cut_off(db: Database) -> None:
    slow = Reader(db.path, timeout_seconds=0.05)
    # Counting a large cross join takes seconds on either engine.
    cross = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)"
             " SELECT COUNT(*) FROM n a, n b")
    try:
        with pytest.raises(DatabaseUnavailable), slow.read() as conn:
            conn.execute(cross).fetchone()
        with slow.read() as conn:  # the next read has a deadline of its own
            assert conn.execute("SELECT COUNT(*) AS n FROM items").fetchone()["n"] == 2
    finally:
        slow.close()


def test_a_database_that_is_not_there_is_unavailable(tmp_path: Path, location: Location) -> None:
    if isinstance(location, PostgresLocation):
        missing: Location = PostgresLocation(urlunsplit(urlsplit(location.url)._replace(path="/nowhere")), "state")
    else:
        missing = tmp_path / "missing.db"
    reader = Reader(missing, timeout_seconds=5.0)
    try:
        with pytest.raises(DatabaseUnavailable, match="does not exist"):
            reader.ping()
    finally:
        reader.close()
