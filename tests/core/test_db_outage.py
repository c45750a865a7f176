"""core.db.outage with a real PostgreSQL server stopped as a crash stops it, then started again.

The server here is the module's own (not the session's), so stopping it disturbs no other test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from core.db import Database, DatabaseUnavailable, PostgresLocation
from core.db.outage import PROBE_SECONDS, Outage
from tests.support.postgres import PostgresServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    return [getattr(record, "fields", {}) for record in caplog.records if record.getMessage() == name]


# -- the down state, alone ----------------------------------------------------------------------


def test_a_failed_connect_refuses_the_others_until_one_tries_again() -> None:
    clock = Clock()
    outage = Outage("postgresql://node/db", clock)
    assert outage.refusal() is None and not outage.down  # not down: nobody is refused
    outage.failed("connection refused")
    message = outage.refusing()
    assert message is not None and "unreachable since" in message and "connection refused" in message
    assert outage.refusal() is not None  # nobody tries before PROBE_SECONDS
    clock.now += PROBE_SECONDS
    assert outage.refusing() is None
    assert outage.refusal() is None  # this caller tries the server again...
    assert outage.refusal() is not None  # ...and every other caller meanwhile is refused
    assert outage.refusing() is not None
    outage.failed("connection refused")  # still down: the next try waits again
    assert outage.refusal() is not None
    clock.now += PROBE_SECONDS
    assert outage.refusal() is None
    outage.recovered()
    assert not outage.down and outage.refusal() is None and outage.refusal() is None


def test_with_a_probe_every_caller_is_refused_and_the_server_is_tried_in_the_background() -> None:
    clock = Clock()
    answers: list[Exception | None] = [OSError("connection refused"), None]
    tries: list[str] = []

    def probe() -> None:
        tries.append("tried")
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    outage = Outage("postgresql://node/db", clock, probe)
    outage.failed("timeout expired")
    assert outage.refusal() is not None and tries == []  # not before its time
    clock.now += PROBE_SECONDS
    assert outage.refusal() is not None  # due: the probe starts, and this caller is refused all the same
    outage.settled(10)
    assert tries == ["tried"] and outage.down  # refused again: still down, the next try later
    assert outage.refusal() is not None and tries == ["tried"]
    clock.now += PROBE_SECONDS
    assert outage.refusal() is not None
    outage.settled(10)
    assert tries == ["tried", "tried"] and not outage.down
    assert outage.refusal() is None  # the next caller connects


def test_the_log_says_once_when_an_outage_begins_and_once_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    outage = Outage("postgresql://node/db", clock)
    for _ in range(3):
        outage.failed("timeout expired")
        clock.now += PROBE_SECONDS
    outage.recovered()
    outage.recovered()
    assert [entry["reason"] for entry in events(caplog, "database.unavailable")] == ["timeout expired"]
    assert [entry["down_seconds"] for entry in events(caplog, "database.available")] == [3 * PROBE_SECONDS]


# -- a real server that goes away and comes back ------------------------------------------------


@pytest.fixture
def database(stoppable_postgres: PostgresServer) -> Iterator[Database]:
    url = stoppable_postgres.create_database()
    db = Database(PostgresLocation(url, "state"))
    db.migrate("test", ["CREATE TABLE items (name TEXT PRIMARY KEY)"])
    yield db
    db.close()
    stoppable_postgres.drop_database(url)


def test_a_server_stopped_then_started_again(
    stoppable_postgres: PostgresServer, database: Database, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    database.execute("INSERT INTO items VALUES ('before')")
    outage = database._outage  # type: ignore[attr-defined]
    clock = Clock()
    monkeypatch.setattr(outage, "_clock", clock)
    stoppable_postgres.pause()
    try:
        with pytest.raises(DatabaseUnavailable), database.transaction() as conn:  # lost mid-way
            conn.execute("INSERT INTO items VALUES ('half')")
        with pytest.raises(DatabaseUnavailable, match="cannot connect"):  # the first connect fails...
            database.query("SELECT name FROM items")
        assert outage.down
        for _ in range(3):  # ...and the next uses are refused without trying the server again
            with pytest.raises(DatabaseUnavailable, match="unreachable since"):
                database.query("SELECT name FROM items")
        clock.now += PROBE_SECONDS
        with pytest.raises(DatabaseUnavailable, match="unreachable since"):  # tried in the background...
            database.query("SELECT name FROM items")
        outage.settled(30)
        assert outage.down  # ...and still down
    finally:
        stoppable_postgres.resume()
    with pytest.raises(DatabaseUnavailable, match="unreachable since"):  # not before its time
        database.query("SELECT name FROM items")
    clock.now += PROBE_SECONDS
    with pytest.raises(DatabaseUnavailable, match="unreachable since"):  # the try that finds it back
        database.query("SELECT name FROM items")
    outage.settled(30)
    assert not outage.down
    assert [row["name"] for row in database.query("SELECT name FROM items")] == ["before"]  # nothing half-written
    assert not outage.down
    database.execute("INSERT INTO items VALUES ('after')")
    assert len(database.query("SELECT name FROM items")) == 2
    assert len(events(caplog, "database.unavailable")) == 1
    assert len(events(caplog, "database.available")) == 1


def test_every_store_on_the_server_shares_its_down_state(
    stoppable_postgres: PostgresServer, database: Database,
) -> None:
    other = Database(PostgresLocation(database.path.url, "ledger"))  # type: ignore[union-attr]
    try:
        assert other._outage is database._outage  # type: ignore[attr-defined]
        stoppable_postgres.pause()
        try:
            with pytest.raises(DatabaseUnavailable):
                database.query("SELECT 1")
            with pytest.raises(DatabaseUnavailable):
                database.query("SELECT 1")  # the connect that finds the server down
            with pytest.raises(DatabaseUnavailable, match="closed the connection"):
                other.query("SELECT 1")  # its own connection was lost too...
            with pytest.raises(DatabaseUnavailable, match="unreachable since"):
                other.query("SELECT 1")  # ...and it does not try the server: refused at once
        finally:
            stoppable_postgres.resume()
    finally:
        other._outage.recovered()  # type: ignore[attr-defined]
        other.close()
