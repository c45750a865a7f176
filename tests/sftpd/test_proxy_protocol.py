"""PROXY protocol v2: the parser under hypothesis, the reader on real sockets, and a real HAProxy
(Debian's package, ``send-proxy-v2``) in front of the daemon with OpenSSH's ``sftp`` behind it.

Addresses: the client connects from 127.0.0.3, HAProxy connects to the daemon from 127.0.0.2
(the only trusted proxy), so the daemon can tell the address the header names from the proxy's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.config import ConfigError, ServerSettings
from sftpd.proxy_protocol import (
    MAX_HEADER_BYTES,
    SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderReader,
    TrustedProxies,
    build,
    parse,
)
from sftpd.tcp import QuickAckListener
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import TENANT, RunningServer, ServerFactory
from tests.support.clients import OpenSSHClient

PROXY = "127.0.0.2"
CLIENT = "127.0.0.3"
WRONG_PASSWORD = "not-the-password"


# --- the parser -----------------------------------------------------------------------------

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda ip: ip.ipv4_mapped is None).map(str)
ports = st.integers(0, 65535)
tlvs = st.binary(max_size=300)


def parse_or_error(data: bytes) -> ProxyHeader | ProxyHeaderError | None:
    try:
        return parse(data)
    except ProxyHeaderError as error:
        return error


@given(st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=400).map(lambda tail: SIGNATURE + tail),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 65535),
              st.binary(max_size=400)).map(
        lambda t: SIGNATURE + bytes([0x20 | (t[0] & 0x0F), t[1]]) + t[2].to_bytes(2, "big") + t[3]),
))
def test_any_bytes_give_a_header_a_wait_or_the_modules_own_error(data: bytes) -> None:
    outcome = parse_or_error(data)
    if isinstance(outcome, ProxyHeader):
        assert data.startswith(SIGNATURE)
        assert 16 <= outcome.length <= min(len(data), MAX_HEADER_BYTES)
        assert (outcome.source is None) == (outcome.command == "LOCAL")
    elif outcome is None:
        assert SIGNATURE.startswith(data[:12])


@given(st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)), ports, ports, tlvs,
       st.binary(max_size=50))
def test_a_built_proxy_header_round_trips_whatever_follows_it(
    ips: tuple[str, str], source_port: int, destination_port: int, extra: bytes, after: bytes
) -> None:
    header = build("PROXY", (ips[0], source_port), (ips[1], destination_port), extra)
    parsed = parse(header + after)
    assert parsed == ProxyHeader("PROXY", (ips[0], source_port), (ips[1], destination_port),
                                 len(header))
    # Every beginning of it is a header still arriving, never an error.
    assert all(parse(header[:cut]) is None for cut in range(len(header)))


@given(tlvs)
def test_a_local_header_names_no_one(extra: bytes) -> None:
    header = build("LOCAL", tlvs=extra)
    assert parse(header) == ProxyHeader("LOCAL", None, None, len(header))


def test_an_ipv4_mapped_client_is_given_as_ipv4() -> None:
    header = build("PROXY", ("::ffff:192.0.2.7", 40000), ("::ffff:198.51.100.1", 22))
    parsed = parse(header)
    assert parsed is not None and parsed.source == ("192.0.2.7", 40000)


@pytest.mark.parametrize(("data", "reason"), [
    (b"SSH-2.0-OpenSSH_9.2p1\r\n", "no PROXY protocol v2 signature"),
    (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n", "no PROXY protocol v2 signature"),
    (SIGNATURE + b"\x11", "PROXY protocol version 1, expected 2"),
    (SIGNATURE + b"\x2f", "unknown PROXY protocol command 0xf"),
    (SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12), "family/transport 0x12, not TCP"),
    (SIGNATURE + b"\x21\x31\x00\xd8" + bytes(216), "family/transport 0x31, not TCP"),
    (SIGNATURE + b"\x21\x00\x00\x00", "family/transport 0x00, not TCP"),
    (SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12), "addresses cut short (12 bytes)"),
    (SIGNATURE + b"\x21\x11\xff\xff", "PROXY header of 65551 bytes, more than 4096"),
])
def test_what_is_refused_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(ProxyHeaderError, match=re.escape(reason)):
        parse(data)


def test_trusted_proxies_are_addresses_and_networks() -> None:
    trusted = TrustedProxies(["10.0.0.5", "192.168.4.0/24", "2001:db8::/32"])
    assert "10.0.0.5" in trusted and "192.168.4.200" in trusted and "2001:db8::1" in trusted
    assert "::ffff:10.0.0.5" in trusted
    assert "10.0.0.6" not in trusted and "192.168.5.1" not in trusted and "unknown" not in trusted


def test_the_settings_refuse_a_bad_network_and_an_empty_trust_list() -> None:
    with pytest.raises(ConfigError, match=re.escape("'10.0.0.300' is not an IP address or network")):
        ServerSettings(trusted_proxies=("10.0.0.300",))
    with pytest.raises(ConfigError, match="trusted_proxies is empty"):
        ServerSettings(proxy_protocol=True)
    assert ServerSettings(proxy_protocol=True, trusted_proxies=("10.0.0.0/8",)).proxy_protocol


# --- the reader, on real sockets ------------------------------------------------------------

class Session(asyncio.Protocol):
    """Stands for asyncssh's connection: records the peer it was given and what it read."""

    def __init__(self) -> None:
        self.peer: object = None
        self.proxy: object = None
        self.received = b""
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.peer = transport.get_extra_info("peername")[0]
        self.proxy = transport.get_extra_info("proxy_peername")
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"SSH-2.0-test\r\n")

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[Session]]]:
    """A listener trusting 127.0.0.2, with a short header timeout: (port, sessions made)."""
    sessions: list[Session] = []

    def factory(host: str, port: int) -> Session:
        sessions.append(Session())
        return sessions[-1]

    trusted = TrustedProxies([PROXY])

    def front(make: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        return ProxyHeaderReader(make, trusted, timeout=0.3)

    server = await QuickAckListener(8, front).create_server(factory, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], sessions
    finally:
        server.close()
        await server.wait_closed()


async def connect(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 5)


async def test_a_trusted_proxy_names_the_client_even_in_pieces(
    listener: tuple[int, list[Session]]
) -> None:
    port, sessions = listener
    reader, writer = await connect(port, PROXY)
    header = build("PROXY", ("203.0.113.9", 51000), ("127.0.0.1", port), tlvs=b"\x04\x00\x01x")
    for piece in (header[:5], header[5:14], header[14:-1]):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.02)
    assert sessions == []  # nothing is handed on before the whole header
    writer.write(header[-1:] + b"SSH-2.0-client\r\n")
    assert await reader.readline() == b"SSH-2.0-test\r\n"
    writer.close()
    [session] = sessions
    await asyncio.wait_for(session.closed, 5)
    assert (session.peer, session.received) == ("203.0.113.9", b"SSH-2.0-client\r\n")
    assert session.proxy is not None and session.proxy[0] == PROXY


async def test_bytes_after_the_header_in_one_segment_reach_the_session(
    listener: tuple[int, list[Session]]
) -> None:
    port, sessions = listener
    reader, writer = await connect(port, PROXY)
    writer.write(build("PROXY", ("2001:db8::7", 1), ("::1", 2)) + b"SSH-2.0-client\r\n")
    assert await reader.readline() == b"SSH-2.0-test\r\n"
    writer.close()
    await asyncio.wait_for(sessions[0].closed, 5)
    assert (sessions[0].peer, sessions[0].received) == ("2001:db8::7", b"SSH-2.0-client\r\n")


async def test_a_local_header_keeps_the_proxys_own_address(
    listener: tuple[int, list[Session]]
) -> None:
    port, sessions = listener
    reader, writer = await connect(port, PROXY)
    writer.write(build("LOCAL"))
    assert await reader.readline() == b"SSH-2.0-test\r\n"
    writer.close()
    assert sessions[0].peer == PROXY and sessions[0].proxy is None


@pytest.mark.parametrize(("sent", "reason"), [
    (b"SSH-2.0-OpenSSH_9.2p1\r\n", "no PROXY protocol v2 signature"),
    (SIGNATURE + b"\x21\x31\x00\x00", "not TCP over IPv4 or IPv6"),
    (SIGNATURE[:7], "the connection ended before a whole PROXY header"),
    (b"", "no whole PROXY header within 0.3 seconds"),
])
async def test_a_trusted_proxy_without_a_valid_header_is_closed_and_logged(
    listener: tuple[int, list[Session]], caplog: pytest.LogCaptureFixture, sent: bytes,
    reason: str
) -> None:
    caplog.set_level(logging.WARNING)
    port, sessions = listener
    reader, writer = await connect(port, PROXY)
    writer.write(sent)
    if sent == SIGNATURE[:7]:
        writer.write_eof()
    assert await until_closed(reader) == b""  # not even a banner
    writer.close()
    assert sessions == []
    logged = [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == "proxy.bad_header"]
    assert len(logged) == 1 and logged[0]["proxy"] == PROXY and reason in str(logged[0]["reason"])


async def test_an_untrusted_source_is_direct_and_may_not_send_a_header(
    listener: tuple[int, list[Session]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    port, sessions = listener
    # Direct: served at once under its own address, its bytes untouched, even those that begin
    # like the signature.
    reader, writer = await connect(port, "127.0.0.1")
    assert await reader.readline() == b"SSH-2.0-test\r\n"
    writer.write(SIGNATURE[:4] + b"SSH-2.0-client\r\n")
    writer.close()
    await asyncio.wait_for(sessions[0].closed, 5)
    assert (sessions[0].peer, sessions[0].received) == ("127.0.0.1",
                                                        SIGNATURE[:4] + b"SSH-2.0-client\r\n")
    # A header from it names no one: the connection is closed before a byte reaches SSH.
    reader, writer = await connect(port, "127.0.0.1")
    writer.write(build("PROXY", ("10.9.9.9", 5555), ("127.0.0.1", port)) + b"SSH-2.0-x\r\n")
    assert await until_closed(reader) == b"SSH-2.0-test\r\n"
    writer.close()
    assert sessions[1].received == b"" and sessions[1].peer == "127.0.0.1"
    logged = [getattr(r, "fields", {}) for r in caplog.records
              if r.getMessage() == "proxy.untrusted_header"]
    assert [entry["source"] for entry in logged] == ["127.0.0.1"]


# --- a real HAProxy in front of the daemon ---------------------------------------------------

HAPROXY_CONFIG = """\
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend sftp
    bind {client_side}:{front_port}
    default_backend daemons
backend daemons
    # The health check docs/load-balancer.md shows: a LOCAL header, then the SSH banner.
    option tcp-check
    tcp-check expect string SSH-2.0-
    server node1 127.0.0.1:{daemon_port} send-proxy-v2 source {proxy} check check-send-proxy inter 200ms
"""


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


async def start_haproxy(work_dir: Path, daemon_port: int) -> tuple[asyncio.subprocess.Process, int]:
    haproxy = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if haproxy is None:
        pytest.fail("Debian's haproxy is needed (scripts/test.sh installs it)")
    front_port = free_port("127.0.0.1")
    config = work_dir / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(client_side="127.0.0.1", front_port=front_port,
                                            daemon_port=daemon_port, proxy=PROXY))
    process = await asyncio.create_subprocess_exec(
        haproxy, "-db", "-f", str(config), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=(work_dir / "haproxy.log").open("wb"))
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", front_port)
        except OSError:
            if process.returncode is not None:
                pytest.fail(f"haproxy exited: {(work_dir / 'haproxy.log').read_text()}")
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return process, front_port
    pytest.fail("haproxy did not listen within 10 seconds")


@pytest.fixture
async def behind_haproxy(
    make_server: ServerFactory, tmp_path: Path
) -> AsyncIterator[tuple[RunningServer, OpenSSHClient]]:
    """The daemon trusting only 127.0.0.2, HAProxy connecting from there, and an ``sftp``
    client of HAProxy's port."""
    server = await make_server(server__proxy_protocol=True, server__trusted_proxies=(PROXY,),
                               defender__pair_max_failures=2)
    process, front_port = await start_haproxy(tmp_path, server.port)
    work_dir = tmp_path / "client"
    work_dir.mkdir()
    try:
        yield server, OpenSSHClient(work_dir, front_port)
    finally:
        process.terminate()
        await process.wait()


def fields_of(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, object]]:
    return [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == event]


async def test_through_haproxy_the_daemon_sees_the_client_not_the_proxy(
    behind_haproxy: tuple[RunningServer, OpenSSHClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="sftpd.proxy_protocol")
    server, client = behind_haproxy
    bind = ("-o", f"BindAddress={CLIENT}")
    run = await client.run(TENANT, TEST_PASSWORD, ["ls /"], extra=bind)
    assert run.returncode == 0, run.stderr
    assert [entry["source"] for entry in fields_of(caplog, "auth.ok")] == [CLIENT]
    assert server.defender.is_known(TENANT, CLIENT)
    assert not server.defender.is_known(TENANT, PROXY)

    # Failed logins count against the client's address, not HAProxy's.
    run = await client.run(TENANT, WRONG_PASSWORD, ["ls /"], extra=bind)
    assert run.returncode != 0 and "Permission denied" in run.stderr
    assert {entry["source"] for entry in fields_of(caplog, "auth.failed")} == {CLIENT}
    lockout = server.defender.lockout_for(TENANT, CLIENT)
    assert lockout is not None and (lockout.kind, lockout.source) == ("pair", CLIENT)
    assert server.defender.lockout_for(TENANT, PROXY) is None
    # Another client behind the same proxy is not caught by that lockout.
    run = await client.run(TENANT, TEST_PASSWORD, ["ls /"], extra=("-o", "BindAddress=127.0.0.4"))
    assert run.returncode == 0, run.stderr
    assert fields_of(caplog, "proxy.bad_header") == []
    # HAProxy's health checks arrive as LOCAL headers, under its own address.
    headers = {(entry["command"], entry["client"]) for entry in fields_of(caplog, "proxy.header")}
    # (the fixture's probe of HAProxy's port, from 127.0.0.1, may have been forwarded too).
    assert headers - {("PROXY", "127.0.0.1")} == {("LOCAL", PROXY), ("PROXY", CLIENT),
                                                  ("PROXY", "127.0.0.4")}


async def test_beside_haproxy_a_direct_client_is_itself_and_a_header_from_it_is_refused(
    behind_haproxy: tuple[RunningServer, OpenSSHClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server, haproxied = behind_haproxy
    direct = OpenSSHClient(haproxied.work_dir, server.port)
    run = await direct.run(TENANT, TEST_PASSWORD, ["ls /"], extra=("-o", f"BindAddress={CLIENT}"))
    assert run.returncode == 0, run.stderr
    assert [entry["source"] for entry in fields_of(caplog, "auth.ok")] == [CLIENT]

    reader, writer = await connect(server.port, CLIENT)
    writer.write(build("PROXY", ("10.9.9.9", 5555), ("127.0.0.1", server.port)))
    assert (await until_closed(reader)).startswith(b"SSH-2.0-")
    writer.close()
    assert [entry["source"] for entry in fields_of(caplog, "proxy.untrusted_header")] == [CLIENT]
    assert not server.defender.is_known(TENANT, "10.9.9.9")


async def test_a_trusted_proxy_sending_garbage_is_closed_and_the_daemon_carries_on(
    behind_haproxy: tuple[RunningServer, OpenSSHClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server, client = behind_haproxy
    reader, writer = await connect(server.port, PROXY)
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    assert await until_closed(reader) == b""
    writer.close()
    [refused] = fields_of(caplog, "proxy.bad_header")
    assert refused["proxy"] == PROXY and "no PROXY protocol v2 signature" in str(refused["reason"])
    run = await client.run(TENANT, TEST_PASSWORD, ["ls /"])
    assert run.returncode == 0, run.stderr

