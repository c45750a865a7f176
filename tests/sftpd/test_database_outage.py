"""The front door while its PostgreSQL server is unreachable, with real SSH clients.

The state lives on a server of this module's own, which the tests stop as a crash would
(``pg_ctl stop -m immediate``) and start again on the same data: logins are refused at once
with a plain message, a session already open keeps its upload, which is recorded once the
database is back, and everything resumes without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import asyncssh
import pytest

from core.config import Settings
from core.db.outage import PROBE_SECONDS
from sftpd.auth import UNAVAILABLE
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import TENANT, RunningServer, ServerFactory
from tests.support.clients import asyncssh_connect, asyncssh_sftp
from tests.support.postgres import PostgresServer

WAIT_SECONDS = 30.0


@pytest.fixture
def settings(settings: Settings, stoppable_postgres: PostgresServer) -> Iterator[Settings]:
    """The front door's settings with its state on the module's own server, whatever engine the
    session runs on."""
    url = stoppable_postgres.create_database()
    yield settings.replace(database__url=url)
    if not stoppable_postgres.running:  # a test that failed while it was stopped
        stoppable_postgres.resume()
    stoppable_postgres.drop_database(url)


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, object]]:
    return [getattr(record, "fields", {}) for record in caplog.records if record.getMessage() == event]


async def refused_login(port: int) -> float:
    """Try to log in; the refusal must name the outage. Returns how long it took."""
    began = time.monotonic()
    with pytest.raises(asyncssh.DisconnectError) as refused:
        async with asyncssh_connect(port, TENANT, TEST_PASSWORD):
            pass
    assert refused.value.code == asyncssh.DISC_SERVICE_NOT_AVAILABLE
    assert refused.value.reason == UNAVAILABLE
    return time.monotonic() - began


async def until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_an_outage_refuses_logins_keeps_the_open_upload_and_ends_by_itself(
    make_server: ServerFactory, stoppable_postgres: PostgresServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    running: RunningServer = await make_server()
    body = b"id,amount\n" + b"1,2\n" * 50_000
    async with asyncssh_sftp(running.port, TENANT, TEST_PASSWORD) as sftp:
        async with sftp.open("in/during.csv", "wb") as upload:
            await upload.write(body[:1000])
            stoppable_postgres.pause()
            took = [await refused_login(running.port) for _ in range(3)]
            print(f"refused logins while the database was down took {[round(t, 3) for t in took]} s")
            await upload.write(body[1000:])
        # Closed while the database is still down: published under its name, its record waiting.
        assert (await sftp.stat("in/during.csv")).size == len(body)
        assert (running.inbox() / "during.csv").exists()
        assert running.events == []
        await until(lambda: logged(caplog, "upload.record_waiting"), "the record to wait")
        stoppable_postgres.resume()
        # The session opened before the outage goes on; the record lands once the server is back.
        await until(lambda: running.events, "the upload to be recorded")
        assert [name async for name in sftp.scandir("in")]  # still served
    assert [(event.upload.path, event.upload.size, event.upload.source) for event in running.events] == [
        ("in/during.csv", len(body), "sftp")]
    assert [(u.path, u.source) for u in running.uploads.history(TENANT)] == [("in/during.csv", "sftp")]
    # New logins work again without a restart.
    await asyncio.sleep(PROBE_SECONDS)
    async with asyncssh_sftp(running.port, TENANT, TEST_PASSWORD) as sftp:
        assert await sftp.exists("in/during.csv")
    assert len(logged(caplog, "database.unavailable")) == 1
    assert len(logged(caplog, "database.available")) == 1
    refusals = logged(caplog, "auth.unavailable")
    assert len(refusals) == 3 and all(entry["user"] == TENANT for entry in refusals)
    assert logged(caplog, "auth.failed") == []  # an outage is no failed password: nothing locks out
    assert running.defender.lockout_for(TENANT, "127.0.0.1") is None


async def test_a_server_stopping_while_the_database_is_down_leaves_the_upload_to_the_scan(
    make_server: ServerFactory, stoppable_postgres: PostgresServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    running: RunningServer = await make_server()
    async with asyncssh_sftp(running.port, TENANT, TEST_PASSWORD) as sftp:
        stoppable_postgres.pause()
        try:
            await sftp.put(__file__, "in/late.csv")
            await until(lambda: logged(caplog, "upload.record_waiting"), "the record to wait")
            await asyncio.wait_for(running.server.close(), WAIT_SECONDS)  # no hang on the record
        finally:
            stoppable_postgres.resume()
    assert (running.inbox() / "late.csv").exists()  # kept, for the next scan to find
    assert running.events == []
    [not_recorded] = logged(caplog, "upload.not_recorded")
    assert "next scan" in str(not_recorded["reason"])
