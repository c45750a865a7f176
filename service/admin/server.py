"""The admin listener, served by uvicorn inside the daemon's event loop, as the embedded API is
(``ledger.uvicorn_compat.EmbeddedServer``: signals stay the daemon's, and it stops at once)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import uvicorn

from core.config import ConfigError, Settings
from core.logs import get_logger
from ledger.uvicorn_compat import EmbeddedServer
from service.admin.access import exposure_problem
from service.admin.app import AdminState, create_app
from service.admin.live import Live
from service.admin.snapshot import SnapshotReader

log = get_logger("service.admin")

STARTUP_POLL_SECONDS = 0.01
LISTEN_BACKLOG = 128


class AdminServer:
    """``await start()`` binds ``[admin] listen_host:listen_port`` (an ``OSError`` if it cannot),
    ``await close()`` stops it. ``ssh_port`` and ``listeners`` are asked at each request."""

    def __init__(self, settings: Settings, live: Live, ssh_port: Callable[[], int | None],
                 listeners: Callable[[], dict[str, str]]) -> None:
        problem = exposure_problem(settings.admin)
        if problem:  # the daemon's main() says so before anything starts; this is the last guard
            raise ConfigError(problem)
        self._settings = settings
        self._reader = SnapshotReader(settings.state_db, settings.admin.read_timeout_seconds)
        self._state = AdminState(settings, self._reader, live, ssh_port, listeners)
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the admin server is not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = self._settings.admin.listen_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def start(self) -> None:
        admin = self._settings.admin
        self._socket = _listening_socket(admin.listen_host, admin.listen_port)
        config = uvicorn.Config(create_app(self._state), log_config=None, access_log=False,
                                server_header=False, lifespan="off")
        self._server = EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                await self.close()
                raise RuntimeError("the admin server stopped while starting")
            await asyncio.sleep(STARTUP_POLL_SECONDS)
        log.info("admin.started", host=admin.listen_host, port=self.port)

    async def close(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.stop()
            with contextlib.suppress(Exception):
                await self._task
            log.info("admin.stopped")
        if self._socket is not None:
            self._socket.close()
        await self._reader.call(self._state.carry.save)
        await self._reader.close()
        self._server = self._task = self._socket = None


def _listening_socket(host: str, port: int) -> socket.socket:
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
