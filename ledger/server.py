"""Serve the API with uvicorn inside the caller's event loop (the daemon, ``sftpctl run``, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn

from core.config import Settings
from core.logs import get_logger
from core.tenants import TenantStore
from ledger.app import create_app
from ledger.store import LedgerStore
from ledger.uvicorn_compat import EmbeddedServer

log = get_logger("ledger.server")

STARTUP_POLL_SECONDS = 0.01
LISTEN_BACKLOG = 2048


class ApiServer:
    """The Signal API + Transactions API on ``settings.api.listen_host:listen_port``.

    The socket is bound here, before uvicorn starts, so a busy port is an ``OSError`` for the
    caller rather than uvicorn's ``sys.exit``; port 0 picks a free port, see :attr:`port`.
    """

    def __init__(self, settings: Settings, tenants: TenantStore) -> None:
        self._settings = settings
        self._tenants = tenants
        self._store: LedgerStore | None = None
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the API server is not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = self._settings.api.listen_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def start(self) -> None:
        api = self._settings.api
        self._socket = _listening_socket(api.listen_host, api.listen_port)
        self._store = LedgerStore.open(self._settings.ledger_db)
        config = uvicorn.Config(
            create_app(self._settings, self._tenants, self._store),
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
        )
        self._server = EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                await self.close()
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(STARTUP_POLL_SECONDS)
        log.info("api.started", host=api.listen_host, port=self.port)

    async def close(self) -> None:
        """Stop accepting, let requests in flight finish, then close the ledger."""
        if self._server is not None and self._task is not None:
            self._server.stop()
            with contextlib.suppress(Exception):
                await self._task
            log.info("api.stopped")
        if self._socket is not None:
            self._socket.close()
        if self._store is not None:
            self._store.close()
        self._server = self._task = self._socket = self._store = None


def _listening_socket(host: str, port: int) -> socket.socket:
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
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock
