"""A real SftpServer on a free loopback port, with two tenants, for the front-door tests."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.config import Settings
from core.crypto import AtRest
from core.db import Database
from core.tenants import TenantStore
from core.uploads import Upload, UploadStore
from sftpd.defender import Defender
from sftpd.events import FeedFolders, UploadCompleted
from sftpd.hostkeys import load_or_create_host_keys
from sftpd.server import SftpServer
from tests.conftest import TEST_PASSWORD
from tests.support.clients import OpenSSHClient

TENANT = "acme"
OTHER_TENANT = "globex"
FAST_FAILURE_DELAY_SECONDS = 0.05


@pytest.fixture(scope="session")
def host_keys_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Host keys generated once per run (RSA 3072 takes a while), copied into each test."""
    keys_dir = tmp_path_factory.mktemp("host-keys")
    load_or_create_host_keys(keys_dir)
    return keys_dir


@pytest.fixture
def settings(settings: Settings, host_keys_template: Path) -> Settings:
    """The shared settings, listening on port 0, with pre-made host keys and a short delay."""
    shutil.copytree(host_keys_template, settings.server.keys_dir)
    return settings.replace(
        server__listen_port=0, defender__failure_delay_seconds=FAST_FAILURE_DELAY_SECONDS
    )


@dataclass
class RunningServer:
    server: SftpServer
    settings: Settings
    tenants: TenantStore
    uploads: UploadStore
    defender: Defender
    at_rest: AtRest
    events: list[UploadCompleted] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def inbox(self, tenant: str = TENANT) -> Path:
        return self.tenants.folders(tenant).inbox

    def reports_dir(self, tenant: str = TENANT) -> Path:
        return self.tenants.folders(tenant).reports_dir

    def in_flight(self, tenant: str = TENANT) -> Path:
        return self.tenants.folders(tenant).root / ".incoming"

    def stored(self, path: Path) -> bytes:
        """The plaintext of the stored file at ``path`` (the server seals what it stores)."""
        return self.at_rest.read_bytes(path)

    async def recorded(self, tenant: str = TENANT) -> list[Upload]:
        """The uploads recorded so far, oldest first, once the records under way are written."""
        await self.server.settled()
        return list(reversed(self.uploads.history(tenant)))

    async def completed(self) -> list[UploadCompleted]:
        """The listener's events so far, once the records under way are written."""
        await self.server.settled()
        return self.events


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
def at_rest(settings: Settings) -> AtRest:
    """The master key of the test's keys dir (0700, outside the data dir), made for the test."""
    return AtRest.load(settings.server.keys_dir, settings.data_dir, create=True)


@pytest.fixture
async def make_server(
    settings: Settings, tenants: TenantStore, uploads: UploadStore, state_db: Database,
    at_rest: AtRest,
) -> AsyncIterator[ServerFactory]:
    """Start servers with changed settings: ``await make_server(server__max_upload_bytes=10)``,
    and the tenants' feed folders if given (``feed_folders=...``).

    Both tenants exist with ``TEST_PASSWORD``; every server started is closed after the test.
    """
    started: list[SftpServer] = []

    async def make(feed_folders: FeedFolders | None = None, **changes: object) -> RunningServer:
        for name in (TENANT, OTHER_TENANT):
            if tenants.find(name) is None:
                tenants.add(name, f"ops@{name}.example", TEST_PASSWORD)
        changed = settings.replace(**changes)
        events: list[UploadCompleted] = []
        defender = Defender(state_db, changed.defender)
        server = SftpServer(changed, tenants, uploads, defender, events.append, feed_folders,
                            at_rest=at_rest)
        await server.start()
        started.append(server)
        return RunningServer(server, changed, tenants, uploads, defender, at_rest, events)

    yield make
    for server in started:
        await server.close()


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    return await make_server()


@pytest.fixture
def openssh(tmp_path: Path, server: RunningServer) -> OpenSSHClient:
    work_dir = tmp_path / "client"
    work_dir.mkdir()
    return OpenSSHClient(work_dir, server.port)
