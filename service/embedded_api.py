"""Make sure the embedded API answers while ``sftpctl run`` posts to it.

The daemon normally serves it; when the daemon is not running, the CLI serves it for the length
of the run, so an operator can process files with nothing else started.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.config import Settings
from core.tenants import TenantStore
from ledger.server import ApiServer

PROBE_TIMEOUT_SECONDS = 1.0


async def _answers(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT_SECONDS)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


@asynccontextmanager
async def embedded_api_running(settings: Settings, tenants: TenantStore) -> AsyncIterator[None]:
    if not settings.api.enabled or await _answers(settings.api.listen_host, settings.api.listen_port):
        yield
        return
    server = ApiServer(settings, tenants)
    await server.start()
    try:
        yield
    finally:
        await server.close()
