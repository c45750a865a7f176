"""sftpd.sessions: a tenant's sessions counted across processes, on the state database, and
ended by an operator wherever they are served.

Other processes are real ones (a child holding sessions, then killed); another host is a
:class:`Sessions` whose host name says so. The outage is a real PostgreSQL server stopped as a
crash would stop it. An ended session is a real client's, on a real server.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.db import Database, DatabaseUnavailable, Location, PostgresLocation
from core.tenants import open_state
from sftpd.sessions import END_POLL_SECONDS, Sessions, SessionsFull, end_sessions, live_sessions
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import OTHER_TENANT, TENANT, ServerFactory
from tests.support import postgres
from tests.support.clients import OpenSSHClient, asyncssh_sftp

HOLD = """
import sys
from pathlib import Path
from core.db import Database, PostgresLocation
from sftpd.sessions import Sessions
location = PostgresLocation(sys.argv[1], sys.argv[2]) if sys.argv[2] else Path(sys.argv[1])
sessions = Sessions(Database(location))
for _ in range(int(sys.argv[4])):
    sessions.open(sys.argv[3], "198.51.100.7", 100)
print("held", flush=True)
sys.stdin.read()
"""


def hold_in_another_process(db: Location, tenant: str, count: int) -> subprocess.Popen[str]:
    """A process holding ``count`` sessions of ``tenant`` until its stdin closes (or it is killed)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, *postgres.location_argv(db), tenant, str(count)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def rows(db: Database, tenant: str) -> int:
    return int(db.query("SELECT count(*) FROM sftpd_sessions WHERE tenant = ?", (tenant,))[0][0])


def test_the_cap_counts_every_process_and_a_killed_ones_places_are_free_at_once(state_db: Database) -> None:
    sessions = Sessions(state_db)
    holder = hold_in_another_process(state_db.path, "acme", 2)
    try:
        sessions.open("acme", "203.0.113.9", 3)
        with pytest.raises(SessionsFull) as full:
            sessions.open("acme", "203.0.113.9", 3)
        assert full.value.held == 3
        sessions.open("beta", "203.0.113.9", 3)  # another tenant's places are its own
        holder.kill()
        holder.wait()
        # Its process is gone: its rows hold nothing, and the next login removes them.
        assert sessions.held("acme") == 1
        sessions.open("acme", "203.0.113.9", 3)
        sessions.open("acme", "203.0.113.9", 3)
        assert rows(state_db, "acme") == 3
    finally:
        holder.kill()
        holder.wait()


def test_a_place_given_back_is_free_at_once_and_its_row_goes(state_db: Database) -> None:
    sessions = Sessions(state_db)
    first = sessions.open("acme", "203.0.113.9", 2)
    sessions.open("acme", "203.0.113.9", 2)
    with pytest.raises(SessionsFull):
        sessions.open("acme", "203.0.113.9", 2)
    sessions.close(first)
    sessions.open("acme", "203.0.113.9", 2)
    assert rows(state_db, "acme") == 2
    sessions.close_all()
    assert rows(state_db, "acme") == 0


def test_another_hosts_sessions_count_while_their_lease_is_renewed(state_db: Database) -> None:
    here = Sessions(state_db)
    there = Sessions(state_db, lease_seconds=0.5)
    there.host = "node-b"
    there.open("acme", "203.0.113.9", 2)
    there.open("acme", "203.0.113.9", 2)
    for _ in range(3):  # three leases' time, renewed within each
        time.sleep(0.25)
        there.renew()
        with pytest.raises(SessionsFull):
            here.open("acme", "203.0.113.9", 2)
    time.sleep(0.6)  # node-b stopped renewing: died, or lost the database
    assert here.held("acme") == 0
    here.open("acme", "203.0.113.9", 2)
    assert rows(state_db, "acme") == 1


def test_a_previous_process_with_our_pid_holds_nothing(state_db: Database) -> None:
    """A daemon restarted in a container is pid 1 again: the old one's rows are not ours."""
    before = Sessions(state_db)
    before.open("acme", "203.0.113.9", 1)
    after = Sessions(state_db)
    after.open("acme", "203.0.113.9", 1)
    assert rows(state_db, "acme") == 1


def test_a_place_given_back_during_an_outage_is_removed_by_the_next_renewal(
    stoppable_postgres: postgres.PostgresServer,
) -> None:
    url = stoppable_postgres.create_database()
    db = open_state(PostgresLocation(url, "state"))
    try:
        sessions = Sessions(db)
        session = sessions.open("acme", "203.0.113.9", 1)
        stoppable_postgres.pause()
        try:
            with pytest.raises(DatabaseUnavailable):
                sessions.close(session)
        finally:
            stoppable_postgres.resume()
        deadline = time.monotonic() + 30
        while True:  # the connection comes back once its outage probe lets it
            try:
                sessions.renew()
                break
            except DatabaseUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert rows(db, "acme") == 0
        sessions.open("acme", "203.0.113.9", 1)
    finally:
        db.close()
        stoppable_postgres.drop_database(url)


def test_an_operator_ends_a_tenants_sessions_and_their_processes_learn_which(state_db: Database) -> None:
    sessions = Sessions(state_db)
    first = sessions.open("acme", "203.0.113.9", 5)
    second = sessions.open("acme", "203.0.113.10", 5)
    other = sessions.open("beta", "203.0.113.9", 5)
    assert sessions.to_end() == []
    assert [session.id for session in end_sessions(state_db, "disabled", tenant="acme")] == [first, second]
    assert sorted(sessions.to_end()) == [(first, "disabled"), (second, "disabled")]
    assert [session.id for session in end_sessions(state_db, "by id", ids=[other])] == [other]
    sessions.close(first)  # the connection is gone: nothing more to end
    assert sorted(sessions.to_end()) == [(second, "disabled"), (other, "by id")]
    assert end_sessions(state_db, "nobody", tenant="gamma") == []


async def test_an_ended_session_is_closed_with_the_reason_and_the_others_go_on(
    make_server: ServerFactory, state_db: Database, tmp_path: Path,
) -> None:
    """OpenSSH's sftp, reading its commands from a pipe kept open, shows why it was cut off."""
    running = await make_server()
    client = OpenSSHClient(tmp_path, running.port)
    sftp = await asyncio.create_subprocess_exec(
        *client.command(TENANT, Path("-")), env=client.environment(TEST_PASSWORD),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert sftp.stdin is not None and sftp.stderr is not None
    try:
        async with asyncssh_sftp(running.port, OTHER_TENANT, TEST_PASSWORD) as other:
            deadline = time.monotonic() + 10
            while not live_sessions(state_db, TENANT):  # sftp logged in, waiting for commands
                assert time.monotonic() < deadline and sftp.returncode is None
                await asyncio.sleep(0.05)
            assert {session.tenant for session in live_sessions(state_db)} == {TENANT, OTHER_TENANT}
            began = time.monotonic()
            [session] = end_sessions(state_db, "the account was disabled", tenant=TENANT)
            assert session.tenant == TENANT
            # ssh says it as it is cut off: within a poll of the server's, with room for a busy machine
            said = await asyncio.wait_for(sftp.stderr.readline(), 3 * END_POLL_SECONDS)
            print(f"closed {time.monotonic() - began:.2f} s after it was ended")
            assert "Received disconnect" in said.decode() and "the account was disabled" in said.decode()
            sftp.stdin.close()  # its batch ends: it has nothing left to say
            await asyncio.wait_for(sftp.wait(), 10)
            assert await other.listdir("/in") == []  # another tenant's session is not touched
    finally:
        if sftp.returncode is None:
            sftp.kill()
            await sftp.wait()
    while live_sessions(state_db, TENANT):  # its row goes as the server sees the connection end
        assert time.monotonic() < deadline + 10
        await asyncio.sleep(0.05)
