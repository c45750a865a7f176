"""``GET /healthz``: is the front door accepting, does the database answer, is there disk room?

Each check is bounded in time; the answer names every check that failed, so a monitor's alert
says what to look at.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.config import Settings
from service.admin.figures import disk_free
from service.admin.snapshot import SnapshotError, SnapshotReader

SSH_BANNER_PREFIX = b"SSH-"


@dataclass(frozen=True)
class Health:
    ok: bool
    checks: dict[str, str]

    def body(self) -> dict[str, object]:
        return {"status": "ok" if self.ok else "failing", "checks": self.checks}


class HealthCheck:
    def __init__(self, settings: Settings, reader: SnapshotReader, ssh_port: Callable[[], int | None]) -> None:
        self._settings = settings
        self._reader = reader
        self._ssh_port = ssh_port

    async def check(self) -> Health:
        checks = dict(zip(("ssh", "database", "disk"), await asyncio.gather(
            self._guard(self._ssh()), self._guard(self._database()), self._guard(self._disk()))))
        return Health(all(value == "ok" for value in checks.values()), checks)

    async def _guard(self, check: Awaitable[str]) -> str:
        try:
            return await asyncio.wait_for(check, self._settings.admin.read_timeout_seconds)
        except TimeoutError:
            return f"no answer within {self._settings.admin.read_timeout_seconds:g} s"
        except (OSError, SnapshotError) as exc:
            return str(exc) or type(exc).__name__

    async def _ssh(self) -> str:
        """Connect as a client would and read the server's SSH banner."""
        port = self._ssh_port()
        if port is None:
            return "the SSH listener is not running"
        host = _reachable(self._settings.server.listen_host)
        reader, writer = await asyncio.open_connection(host, port)
        try:
            banner = await reader.readline()
        finally:
            writer.close()
        if not banner.startswith(SSH_BANNER_PREFIX):
            return f"the SSH listener on port {port} answered {banner[:40]!r}, not an SSH banner"
        return "ok"

    async def _database(self) -> str:
        await self._reader.ping()
        return "ok"

    async def _disk(self) -> str:
        free = await self._reader.call(lambda: disk_free(self._settings))
        needed = self._settings.admin.min_free_disk_bytes
        if free < needed:
            return f"{free} bytes free on the data dir's file system, below min_free_disk_bytes = {needed}"
        return "ok"


def _reachable(host: str) -> str:
    """Where to connect to a listener bound to ``host`` (a wildcard is reached on loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
