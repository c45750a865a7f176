"""The TCP listener under asyncssh, with quick ACKs: no 40 ms stalls in an SSH handshake.

OpenSSH's client leaves Nagle's algorithm on for SFTP sessions, so it holds a small packet back
until its previous one is acknowledged. During the handshake it sends two small packets in a
row twice (KEXINIT then KEX_ECDH_INIT, NEWKEYS then SERVICE_REQUEST), and Linux delays the
server's acknowledgement of the first by 40 ms, hoping to send it with data that the server does
not have yet. Measured on loopback, those two stalls were two thirds of an ``sftp`` login: 120 ms
against 40 ms without them. OpenSSH's own server sees the second one too.

``TCP_QUICKACK`` asks Linux to acknowledge at once, but only until its heuristics switch back,
so it is set again after every read. asyncssh has no hook for that; it does accept a *tunnel*
that creates its listener (any object with ``create_server``, the protocol asyncssh types as
``_TunnelListenerProtocol``), and :class:`QuickAckListener` is such a listener on plain TCP that
puts a thin protocol in front of each connection. A *front* (``[server] proxy_protocol``:
:func:`sftpd.proxy_protocol.reader_for`) may stand between the two: it makes the SSH
connection's protocol itself, when it is ready to hand the connection on.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

__all__ = ["Front", "QuickAckListener"]

Front = Callable[[Callable[[], asyncio.Protocol]], asyncio.Protocol]
"""Given how to make the SSH connection's protocol, the protocol to put in front of it."""

# Linux only; elsewhere the listener is plain TCP.
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class QuickAckListener:
    """Listens on TCP for asyncssh (pass it as ``tunnel=``), acknowledging every read at once."""

    def __init__(self, backlog: int, front: Front | None = None, reuse_port: bool = False) -> None:
        """``reuse_port``: bind with ``SO_REUSEPORT``, so that several processes listen on the
        port and the kernel spreads new connections over them (``[server] workers``)."""
        self._backlog = backlog
        self._front = front
        self._reuse_port = reuse_port

    async def create_server(
        self,
        session_factory: Callable[[str, int], asyncio.Protocol],
        listen_host: str,
        listen_port: int,
    ) -> asyncio.Server:
        """What asyncssh calls to listen; ``session_factory`` makes its connection protocol."""

        def session() -> asyncio.Protocol:
            return session_factory(listen_host, listen_port)

        def protocol() -> asyncio.Protocol:
            return _QuickAck(session() if self._front is None else self._front(session))

        return await asyncio.get_running_loop().create_server(
            protocol, listen_host, listen_port, backlog=self._backlog, reuse_address=True,
            reuse_port=self._reuse_port or None,
        )

    def close(self) -> None:
        """Part of asyncssh's tunnel protocol; the server asyncssh holds is closed by asyncssh."""

    async def wait_closed(self) -> None:
        """Part of asyncssh's tunnel protocol; nothing of its own to wait for."""


class _QuickAck(asyncio.Protocol):
    """Passes every event on to the SSH connection, re-arming ``TCP_QUICKACK`` on each read."""

    def __init__(self, inner: asyncio.Protocol) -> None:
        self._inner = inner
        self._socket: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if _QUICKACK is not None and sock is not None and sock.family != socket.AF_UNIX:
            self._socket = sock
            self._quick_ack()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._quick_ack()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._socket = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _quick_ack(self) -> None:
        if self._socket is not None:
            try:
                self._socket.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)  # type: ignore[arg-type]
            except OSError:
                self._socket = None
