"""The client matrix's server and payloads: one real SftpServer per module, files made once.

The server runs its own event loop in a thread, so each test can drive a client the way a
customer's script does (a blocking subprocess, or a blocking library such as paramiko) while the
server keeps serving. The payload sizes sit on the edges customers' clients cut files at: one
byte, one 32 KiB SFTP write, one byte past it, a size that is no multiple of anything, and the
large files that take many writes (the last one short).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest

from core.config import Settings
from core.crypto import AtRest
from core.db import Database
from core.passwords import PasswordHasher
from core.tenants import TenantStore, open_state
from core.uploads import Upload, UploadStore
from sftpd.defender import Defender
from sftpd.hostkeys import load_or_create_host_keys
from sftpd.server import SftpServer
from tests.conftest import TEST_PASSWORD

TENANT = "acme"
# The tenant's one feed folder, as the daemon names feeds to the server: the only sub-folder of
# in/ that uploads (put -r, mirror -R) are accepted in.
FEED = "calls"
HOST = "127.0.0.1"
# Every client invocation gets this long; a hang fails its own case instead of the whole run.
CLIENT_TIMEOUT_SECONDS = 30
SERVER_CALL_TIMEOUT_SECONDS = 30

KiB = 1024
SIZES = {
    "1B": 1,
    "32KiB": 32 * KiB,
    "32KiB+1": 32 * KiB + 1,
    "33000B": 33_000,
    "1MiB": 1024 * KiB,
    "5000000B": 5_000_000,
}

T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    """What one client invocation did."""

    command: str
    returncode: int
    stdout: str
    stderr: str


class ServerThread:
    """A started SftpServer on its own event loop in a daemon thread."""

    def __init__(
        self, settings: Settings, tenants: TenantStore, uploads: UploadStore, db: Database
    ) -> None:
        self.settings = settings
        self.tenants = tenants
        self.uploads = uploads
        self.at_rest = AtRest.load(settings.server.keys_dir, settings.data_dir, create=True)
        self._db = db
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.server = self.call(self._start())

    async def _start(self) -> SftpServer:
        server = SftpServer(
            self.settings, self.tenants, self.uploads, Defender(self._db, self.settings.defender),
            lambda event: None, feed_folders=lambda tenant: [FEED], at_rest=self.at_rest,
        )
        await server.start()
        return server

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(
            SERVER_CALL_TIMEOUT_SECONDS
        )

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def inbox(self) -> Path:
        return self.tenants.folders(TENANT).inbox

    def host_keys(self) -> list[asyncssh.SSHKey]:
        return load_or_create_host_keys(self.settings.server.keys_dir)

    def recorded(self, path: str) -> list[Upload]:
        """The uploads recorded at ``path`` (``in/x.csv``), oldest first, once records settle."""
        self.call(self.server.settled())
        return [upload for upload in reversed(self.uploads.history(TENANT)) if upload.path == path]

    def stop(self) -> None:
        self.call(self.server.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(SERVER_CALL_TIMEOUT_SECONDS)
        self._loop.close()


@pytest.fixture(scope="session")
def host_keys_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Host keys generated once per run (RSA 3072 takes a while), copied for each server."""
    keys_dir = tmp_path_factory.mktemp("client-host-keys")
    load_or_create_host_keys(keys_dir)
    return keys_dir


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, host_keys_template: Path
) -> Iterator[ServerThread]:
    """One server for a client's module, with tenant ``acme`` (password ``TEST_PASSWORD``)."""
    root = tmp_path_factory.mktemp("clients-server")
    shutil.copytree(host_keys_template, root / "keys")
    settings = Settings(data_dir=root / "var").replace(
        server__keys_dir=root / "keys",
        server__listen_port=0,
        defender__failure_delay_seconds=0.05,
    )
    db = open_state(settings.state_location)
    tenants = TenantStore(db, settings.tenants_dir, PasswordHasher(settings.passwords))
    tenants.add(TENANT, "ops@acme.example", TEST_PASSWORD)
    running = ServerThread(settings, tenants, UploadStore(db), db)
    yield running
    running.stop()
    db.close()


@pytest.fixture(scope="session")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per size label, random bytes (so no client can compress its way around a bug)."""
    folder = tmp_path_factory.mktemp("payloads")
    generator = random.Random(13)
    files = {}
    for label, size in SIZES.items():
        path = folder / f"{label}.bin"
        path.write_bytes(generator.randbytes(size))
        files[label] = path
    return files


@pytest.fixture(scope="module")
def known_hosts(server: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OpenSSH known_hosts file pinning the server's host keys (no client trusts blindly)."""
    path = tmp_path_factory.mktemp("known-hosts") / "known_hosts"
    lines = [
        f"[{HOST}]:{server.port} {key.export_public_key('openssh').decode().strip()}\n"
        for key in server.host_keys()
    ]
    path.write_text("".join(lines))
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * KiB):
            digest.update(chunk)
    return digest.hexdigest()
