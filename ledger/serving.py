"""An ASGI app served by uvicorn inside the caller's event loop: the embedded API, the admin
listener.

The socket is bound first, before uvicorn starts, so a busy port is an ``OSError`` for the
caller rather than uvicorn's ``sys.exit``; port 0 picks a free port, see :attr:`InLoopServer.port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, Literal

import uvicorn

from ledger.uvicorn_compat import EmbeddedServer

STARTUP_POLL_SECONDS = 0.01


class InLoopServer:
    """``bind()``, then ``await serve(app)``; ``await stop()`` stops serving and closes the
    socket. ``what`` names it in errors."""

    def __init__(self, what: str, backlog: int) -> None:
        self.what = what
        self.backlog = backlog
        self._socket: socket.socket | None = None
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError(f"the {self.what} is not started")
        return int(self._socket.getsockname()[1])

    def url(self, host: str) -> str:
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def bind(self, host: str, port: int) -> None:
        self._socket = listening_socket(host, port, self.backlog)

    async def serve(self, app: Any, lifespan: Literal["on", "off"]) -> None:
        """Serve ``app`` on the bound socket; returns once uvicorn has started."""
        assert self._socket is not None, "bind() first"
        config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False,
                                lifespan=lifespan)
        self._server = EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                raise RuntimeError(f"the {self.what} stopped while starting")
            await asyncio.sleep(STARTUP_POLL_SECONDS)

    async def stop(self) -> bool:
        """Stop accepting and let requests in flight finish; True if it was serving."""
        served = self._server is not None and self._task is not None
        if self._server is not None and self._task is not None:
            self._server.stop()
            with contextlib.suppress(Exception):
                await self._task
        if self._socket is not None:
            self._socket.close()
        self._server = self._task = self._socket = None
        return served


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A bound, listening TCP socket.

    It is created with ``IPPROTO_TCP`` explicitly: asyncio only sets ``TCP_NODELAY`` on
    connections accepted from such a socket, and without it Nagle's algorithm holds each response
    body until the client's delayed ACK, about 40 ms per request.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
