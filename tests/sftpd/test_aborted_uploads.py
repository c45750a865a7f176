"""A transfer that breaks off never becomes an upload, and leaves no partial file behind.

asyncssh closes the handles of a session that ended exactly as it closes handles the client
closed, so these tests break real transfers off in the middle, the ways it happens in practice.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from core.crypto import AtRest
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import TENANT, RunningServer, ServerFactory
from tests.support.clients import OpenSSHClient, asyncssh_connect, kill_group

POLL_SECONDS = 0.02
WAIT_LIMIT_SECONDS = 15.0
# sftp -l: 400 Kbit/s, so a 1 MiB file takes about 20 seconds and is surely cut off mid-way.
OPENSSH_RATE_LIMIT_KBIT = "400"


async def wait_until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_SECONDS
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(POLL_SECONDS)


def in_flight_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_size for path in folder.iterdir())


def in_flight_is_empty(folder: Path) -> bool:
    return not folder.is_dir() or not any(folder.iterdir())


async def assert_no_upload(server: RunningServer) -> None:
    assert list(server.inbox().iterdir()) == []
    assert in_flight_is_empty(server.in_flight())
    assert await server.recorded() == []
    assert await server.completed() == []


@pytest.mark.parametrize("victim", ["sftp", "sftp and ssh"])
async def test_killed_openssh_client_leaves_no_upload(
    server: RunningServer, openssh: OpenSSHClient, victim: str
) -> None:
    (openssh.work_dir / "calls.csv").write_bytes(os.urandom(1024 * 1024))
    process = await openssh.start(
        TENANT, TEST_PASSWORD, ["put calls.csv in/"], extra=["-l", OPENSSH_RATE_LIMIT_KBIT]
    )
    try:
        await wait_until(lambda: in_flight_bytes(server.in_flight()) >= 64 * 1024, "bytes arrive")
    finally:
        if victim == "sftp":
            # ssh sees its stdin close and sends EOF: the session ends in good order, handle open.
            os.kill(process.pid, signal.SIGKILL)
        else:
            # The TCP connection drops without a word.
            kill_group(process)
        await process.wait()

    await wait_until(lambda: in_flight_is_empty(server.in_flight()), "the partial file is removed")
    await assert_no_upload(server)


@pytest.mark.parametrize("ending", ["abort", "close"])
async def test_asyncssh_connection_ended_mid_write_leaves_no_upload(
    server: RunningServer, ending: str
) -> None:
    async with asyncssh_connect(server.port, TENANT, TEST_PASSWORD) as conn:
        sftp = await conn.start_sftp_client()
        remote = await sftp.open("/in/calls.csv", "wb")
        await remote.write(b"call_record_id,name\n" * 5000)
        assert in_flight_bytes(server.in_flight()) > 0
        if ending == "abort":
            conn.abort()
        else:
            conn.close()
        await conn.wait_closed()

    await wait_until(lambda: in_flight_is_empty(server.in_flight()), "the partial file is removed")
    await assert_no_upload(server)


async def test_server_shutdown_discards_open_uploads(make_server: ServerFactory) -> None:
    server = await make_server()
    async with asyncssh_connect(server.port, TENANT, TEST_PASSWORD) as conn:
        sftp = await conn.start_sftp_client()
        remote = await sftp.open("/in/calls.csv", "wb")
        await remote.write(b"1,2\n" * 1000)
        await server.server.close()

    await assert_no_upload(server)


async def test_leftovers_of_a_crash_are_removed_at_start(make_server: ServerFactory) -> None:
    first = await make_server()
    await first.server.close()
    first.in_flight().mkdir()
    (first.in_flight() / "0123abcd.part").write_bytes(b"half a file")

    await make_server()

    assert in_flight_is_empty(first.in_flight())


@pytest.mark.parametrize("ending", ["disconnect", "channel eof"])
async def test_close_sent_just_before_the_connection_ends_still_counts(
    server: RunningServer, ending: str
) -> None:
    """The client asked to close the finished file; that it quit without waiting changes nothing."""
    async with asyncssh_connect(server.port, TENANT, TEST_PASSWORD) as conn:
        sftp = await conn.start_sftp_client()
        remote = await sftp.open("/in/calls.csv", "wb")
        await remote.write(b"1,2\n" * 1000)
        closing = asyncio.ensure_future(remote.close())
        await asyncio.sleep(0)
        if ending == "disconnect":
            conn.close()
        else:
            sftp.exit()
        await asyncio.gather(closing, return_exceptions=True)

    await wait_until(lambda: len(server.uploads.history(TENANT)) == 1, "the upload is recorded")
    assert AtRest.size(server.inbox() / "calls.csv") == 4000
