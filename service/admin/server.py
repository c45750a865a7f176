"""The admin listener, served by uvicorn inside the daemon's event loop, as the embedded API is
(``ledger.serving``: signals stay the daemon's, and it stops at once)."""

from __future__ import annotations

from collections.abc import Callable

from core.config import ConfigError, Settings
from core.logs import get_logger
from ledger.serving import InLoopServer
from service.admin.access import exposure_problem
from service.admin.app import AdminState, create_app
from service.admin.live import Live
from service.admin.snapshot import SnapshotReader

log = get_logger("service.admin")

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
        self._reader = SnapshotReader(settings.state_location, settings.admin.read_timeout_seconds)
        self._state = AdminState(settings, self._reader, live, ssh_port, listeners)
        self._serving = InLoopServer("admin server", LISTEN_BACKLOG)

    @property
    def port(self) -> int:
        return self._serving.port

    @property
    def url(self) -> str:
        return self._serving.url(self._settings.admin.listen_host)

    async def start(self) -> None:
        admin = self._settings.admin
        self._serving.bind(admin.listen_host, admin.listen_port)
        try:
            await self._serving.serve(create_app(self._state), lifespan="off")
        except BaseException:
            await self.close()
            raise
        log.info("admin.started", host=admin.listen_host, port=self.port)

    async def close(self) -> None:
        if await self._serving.stop():
            log.info("admin.stopped")
        await self._reader.call(self._state.carry.save)
        await self._reader.close()
