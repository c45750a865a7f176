"""Connection limits: no address, tenant or session can take the front door from the others."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncssh
import pytest

from core.config import ServerSettings
from core.db import Database
from sftpd.limits import ConnectionLimits, Refused, source_of
from sftpd.sessions import Sessions
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import OTHER_TENANT, TENANT, RunningServer, ServerFactory
from tests.support.clients import HOST, OpenSSHClient, asyncssh_connect, asyncssh_sftp

# Another loopback address (all of 127/8 is loopback on Linux): the flood's source address.
FLOOD_SOURCE = "127.0.0.2"
FLOOD_SOCKETS = 300
# A folder this large took the old front door 0.3 s of event loop to list; hard links are made
# quickly, and a file may have at most 65,000 of them on ext4.
LISTED_FILES = 60_000
LINKS_PER_FILE = 20_000


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def raw_flood(port: int, count: int) -> AsyncIterator[list[asyncio.StreamWriter]]:
    """``count`` TCP connections from :data:`FLOOD_SOURCE` that never say a word."""
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(count):
            _, writer = await asyncio.open_connection(HOST, port, local_addr=(FLOOD_SOURCE, 0))
            writers.append(writer)
        yield writers
    finally:
        for writer in writers:
            writer.close()


def openssh_client(tmp_path: Path, server: RunningServer) -> OpenSSHClient:
    work_dir = tmp_path / "client"
    work_dir.mkdir(exist_ok=True)
    return OpenSSHClient(work_dir, server.port)


async def test_a_flood_of_silent_connections_leaves_room_for_a_real_client(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    # Without the per-address limit, the flood alone would fill the global cap 6 times over.
    server = await make_server(server__max_connections=50, server__max_prelogin_per_source=5)
    client = openssh_client(tmp_path, server)
    (client.work_dir / "calls.csv").write_text("a,b\n1,2\n")
    async with raw_flood(server.port, FLOOD_SOCKETS):
        counters = server.server.limit_counters
        await wait_until(
            lambda: counters.snapshot().get("max_prelogin_per_source", 0) == FLOOD_SOCKETS - 5
        )
        assert server.server.connection_count == 5
        run = await client.run(TENANT, TEST_PASSWORD, ["put calls.csv in/calls.csv"])
        assert run.returncode == 0, run.stderr
    assert [u.path for u in await server.recorded()] == ["in/calls.csv"]


async def test_connections_per_address_are_limited_logged_in_or_not(
    make_server: ServerFactory,
) -> None:
    server = await make_server(server__max_connections_per_source=2)
    async with (
        asyncssh_connect(server.port, TENANT, TEST_PASSWORD),
        asyncssh_connect(server.port, OTHER_TENANT, TEST_PASSWORD),
    ):
        # Refused before the SSH handshake: the reason is in the server's log, not the client's.
        with pytest.raises((asyncssh.Error, OSError)):
            async with asyncssh_connect(server.port, OTHER_TENANT, TEST_PASSWORD):
                pass
        async with (
            asyncssh_connect(server.port, OTHER_TENANT, TEST_PASSWORD,
                             local_addr=(FLOOD_SOURCE, 0)) as conn,
            conn.start_sftp_client() as sftp,
        ):
            assert await sftp.listdir("/in") == []
    assert server.server.limit_counters.snapshot() == {"max_connections_per_source": 1}


async def test_a_tenant_at_its_session_cap_is_refused_and_no_one_is_dropped(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = await make_server(server__max_sessions_per_tenant=2)
    async with (
        asyncssh_connect(server.port, TENANT, TEST_PASSWORD) as first,
        asyncssh_connect(server.port, TENANT, TEST_PASSWORD) as second,
    ):
        with pytest.raises(asyncssh.DisconnectError, match=f"{TENANT} already has 2 sessions"):
            async with asyncssh_connect(server.port, TENANT, TEST_PASSWORD):
                pass
        # OpenSSH's sftp shows the reason too.
        run = await openssh_client(tmp_path, server).run(TENANT, TEST_PASSWORD, ["ls /"])
        assert run.returncode != 0
        assert "already has 2 sessions open" in run.stderr
        # The sessions already open go on, and another tenant still logs in.
        for conn in (first, second):
            async with conn.start_sftp_client() as sftp:
                assert sorted(await sftp.listdir("/")) == ["in", "out"]
        other = await openssh_client(tmp_path, server).run(OTHER_TENANT, TEST_PASSWORD, ["ls /"])
        assert other.returncode == 0, other.stderr
    # Places are given back when sessions end.
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        assert await sftp.listdir("/in") == []
    assert server.server.limit_counters.snapshot() == {"max_sessions_per_tenant": 2}


async def test_idle_sessions_are_closed_and_busy_ones_are_not(make_server: ServerFactory) -> None:
    timeout = 0.3
    server = await make_server(server__idle_timeout_seconds=timeout)
    async with (
        asyncssh_connect(server.port, TENANT, TEST_PASSWORD) as idle_sftp,
        asyncssh_connect(server.port, TENANT, TEST_PASSWORD) as no_channel,
        asyncssh_connect(server.port, OTHER_TENANT, TEST_PASSWORD) as busy,
    ):
        async with idle_sftp.start_sftp_client() as sftp:
            assert await sftp.listdir("/in") == []
        async with busy.start_sftp_client() as sftp:
            started = time.monotonic()
            while time.monotonic() - started < 3 * timeout:
                await sftp.stat("/in")
                await asyncio.sleep(timeout / 5)
            for conn in (idle_sftp, no_channel):
                await asyncio.wait_for(conn.wait_closed(), 2 * timeout)
            assert await sftp.listdir("/in") == []
    assert server.server.limit_counters.snapshot() == {"idle_timeout": 2}


async def test_a_slow_drip_upload_is_cut_off_and_never_recorded(
    make_server: ServerFactory,
) -> None:
    window = 0.5
    server = await make_server(
        server__min_upload_bytes_per_second=1024, server__upload_rate_window_seconds=window
    )
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        drip = await sftp.open("/in/drip.csv", "wb")
        started = time.monotonic()
        with pytest.raises(asyncssh.SFTPFailure, match=r"upload aborted: .* below the minimum"):
            for offset in range(100):
                await drip.write(b"a", offset)
                await asyncio.sleep(window / 10)
        assert time.monotonic() - started < 3 * window
        with pytest.raises(asyncssh.SFTPFailure, match="upload aborted"):
            await drip.close()
        # A brisk upload on the same session is not troubled.
        async with sftp.open("/in/brisk.csv", "wb") as brisk:
            await brisk.write(b"a,b\n" * 4096)
        assert await sftp.listdir("/in") == ["brisk.csv"]
    assert [u.path for u in await server.recorded()] == ["in/brisk.csv"]
    assert os.listdir(server.in_flight()) == []
    assert server.server.limit_counters.snapshot() == {"min_upload_bytes_per_second": 1}


async def test_open_files_per_session_are_capped(make_server: ServerFactory) -> None:
    server = await make_server(server__max_handles_per_session=3)
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        handles = [await sftp.open(f"/in/{n}.csv", "wb") for n in range(3)]
        with pytest.raises(asyncssh.SFTPFailure, match=r"too many open files .*3 at most"):
            await sftp.open("/in/3.csv", "wb")
        # A folder listing holds the folder open while it is read, so it counts too.
        with pytest.raises(asyncssh.SFTPFailure, match="too many open files"):
            await sftp.listdir("/in")
        # Another session, even of the same tenant, has its own allowance.
        async with (
            asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as other,
            other.open("/in/other.csv", "wb") as f,
        ):
            await f.write(b"1,2\n")
        await handles.pop().close()
        async with sftp.open("/in/3.csv", "wb") as f:
            await f.write(b"1,2\n")
        for handle in handles:
            await handle.close()
        assert len(await sftp.listdir("/in")) == 5
    assert server.server.limit_counters.snapshot() == {"max_handles_per_session": 2}


async def test_a_huge_listing_does_not_hold_up_another_tenant(
    server: RunningServer, tmp_path: Path
) -> None:
    count = LISTED_FILES
    inbox = server.inbox()
    sources = [tmp_path / f"{n}.csv" for n in range(count // LINKS_PER_FILE + 1)]
    for n in range(count):
        source = sources[n // LINKS_PER_FILE]
        if n % LINKS_PER_FILE == 0:
            source.write_text("a,b\n")
        os.link(source, inbox / f"f{n:05d}.csv")
    latencies: list[float] = []
    async with asyncssh_sftp(server.port, OTHER_TENANT, TEST_PASSWORD) as sftp:
        lister = await openssh_client(tmp_path, server).start(
            TENANT, TEST_PASSWORD, ["ls -1 /in"]
        )
        listed = asyncio.ensure_future(lister.communicate())
        while not listed.done():
            started = time.perf_counter()
            await sftp.stat("/in")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)
    stdout, stderr = await listed
    assert lister.returncode == 0, stderr
    names = [line for line in stdout.decode().split() if line.endswith(".csv")]
    assert len(names) == count
    assert max(latencies) < 0.2, sorted(latencies)[-5:]


@pytest.mark.parametrize(
    ("address", "source"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("not an address", "not an address"),
    ],
)
def test_an_ipv6_source_is_its_network(address: str, source: str) -> None:
    assert source_of(address, 64) == source


def test_addresses_of_one_ipv6_network_share_its_limits(state_db: Database) -> None:
    """2**64 addresses of one subscriber are one source, or per-address limits would not bind."""
    limits = ConnectionLimits(ServerSettings(max_prelogin_per_source=2), Sessions(state_db))
    closed: list[str] = []

    def disconnect(code: int, reason: str) -> None:
        closed.append(reason)

    limits.admit("2001:db8::1", disconnect)
    limits.admit("2001:db8::2", disconnect)
    with pytest.raises(Refused, match="waiting to log in"):
        limits.admit("2001:db8::ffff:3", disconnect)
    limits.admit("2001:db8:0:1::1", disconnect)  # the next /64 is another source
    assert limits.counters.snapshot() == {"max_prelogin_per_source": 1}
