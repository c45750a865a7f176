"""Make sure the embedded API answers while ``sftpctl run`` posts to it.

The daemon normally serves it; when the daemon is not running, the CLI serves it for the length
of the run, so an operator can process files with nothing else started. Only a run that posts to
it over HTTP needs it (``[post] embedded_in_process = false``): by default the run writes those
rows into the ledger in process, and serves nothing. It does so on a free
loopback port, never on the configured one, so the daemon can start whatever the CLI is doing;
the run's requests for the configured address are routed there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.config import EMBEDDED_API_VERSION, Settings
from core.tenants import TenantStore

PROBE_TIMEOUT_SECONDS = 1.0
LOOPBACK = "127.0.0.1"


async def _answers(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT_SECONDS)
    except (TimeoutError, OSError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


def serving_note(settings: Settings, base: str) -> str:
    """What ``sftpctl run`` tells the operator when it serves the API itself (``base``)."""
    api = settings.api
    return (f"the daemon is not running (nothing answers on {api.listen_host}:{api.listen_port}):"
            f" this run serves the API itself, on {base.split('/api/')[0]}, until it ends")


@asynccontextmanager
async def embedded_api_running(settings: Settings, tenants: TenantStore) -> AsyncIterator[str | None]:
    """Where the embedded API answers during the block: None for its configured address (the
    daemon serves it, it is turned off, or the run writes in process), else the base URL of the
    one served here."""
    if (not settings.api.enabled or settings.post.embedded_in_process
            or await _answers(settings.api.listen_host, settings.api.listen_port)):
        yield None
        return
    # Imported here, as the daemon does: ledger.server checks uvicorn's internals when imported
    # (IncompatibleDependency), which should stop a run that serves the API, not every command.
    from ledger.server import ApiServer

    server = ApiServer(settings.replace(api__listen_host=LOOPBACK, api__listen_port=0), tenants)
    await server.start()
    try:
        yield f"{server.url}/api/{EMBEDDED_API_VERSION}"
    finally:
        await server.close()
