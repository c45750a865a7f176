"""Serve the API with uvicorn inside the caller's event loop (the daemon, ``sftpctl run``, tests)."""

from __future__ import annotations

from core.config import Settings
from core.logs import get_logger
from core.tenants import TenantStore
from ledger.app import create_app
from ledger.serving import InLoopServer
from ledger.store import LedgerStore

log = get_logger("ledger.server")

LISTEN_BACKLOG = 2048


class ApiServer:
    """The Signal API + Transactions API on ``settings.api.listen_host:listen_port``.

    The socket is bound first (``ledger.serving``), so a busy port is an ``OSError`` for the
    caller; port 0 picks a free port, see :attr:`port`.
    """

    def __init__(self, settings: Settings, tenants: TenantStore) -> None:
        self._settings = settings
        self._tenants = tenants
        self._store: LedgerStore | None = None
        self._serving = InLoopServer("API server", LISTEN_BACKLOG)

    @property
    def port(self) -> int:
        return self._serving.port

    @property
    def url(self) -> str:
        return self._serving.url(self._settings.api.listen_host)

    async def start(self) -> None:
        api = self._settings.api
        self._serving.bind(api.listen_host, api.listen_port)
        self._store = LedgerStore.open(self._settings.ledger_location)
        try:
            await self._serving.serve(create_app(self._settings, self._tenants, self._store), lifespan="on")
        except BaseException:
            await self.close()
            raise
        log.info("api.started", host=api.listen_host, port=self.port)

    async def close(self) -> None:
        """Stop accepting, let requests in flight finish, then close the ledger."""
        if await self._serving.stop():
            log.info("api.stopped")
        if self._store is not None:
            self._store.close()
        self._store = None
