"""The TCP listener under asyncssh: every event reaches the SSH connection's protocol."""

from __future__ import annotations

import asyncio

from sftpd.tcp import QuickAckListener


class Recording(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[object] = []
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.events.append(data)
        assert isinstance(self.transport, asyncio.Transport)
        self.transport.write(data.upper())

    def eof_received(self) -> bool:
        self.events.append("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.closed.set_result(None)


async def test_the_listener_passes_every_event_on_and_answers_through_the_inner_protocol() -> None:
    made: list[tuple[Recording, str, int]] = []

    def factory(host: str, port: int) -> Recording:
        protocol = Recording()
        made.append((protocol, host, port))
        return protocol

    server = await QuickAckListener(backlog=8).create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ssh-2.0-probe\r\n")
        assert await reader.readexactly(15) == b"SSH-2.0-PROBE\r\n"
        writer.write_eof()
        [(protocol, host, listen_port)] = made
        await asyncio.wait_for(protocol.closed, 5)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert (host, listen_port) == ("127.0.0.1", 0)
    assert protocol.events == ["made", b"ssh-2.0-probe\r\n", "eof", "lost"]
