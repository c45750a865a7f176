"""Shared fixtures: settings in a private temporary data dir, the state store, free ports."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.db import Database
from core.passwords import PasswordHasher
from core.tenants import TenantStore, open_state
from core.uploads import UploadStore
from tests.support import postgres

TEST_PASSWORD = "correct-horse-battery"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, below the kernel's range of
    ports for outgoing connections and never handed out before in this session.

    A port the kernel picked (bind to 0) is one it may give next to any outgoing connection (to
    PostgreSQL, through HAProxy, an SSH client's), so a server started a moment later, or started
    again after a kill, found it taken now and then (the cluster test's admin listener did).
    """
    low, high = _ephemeral_ports()
    start, end = (PORTS_FROM, low) if low - PORTS_FROM >= 1000 else (high + 1, 65536)
    for _ in range(1000):
        port = _ports.randrange(start, end)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port between {start} and {end}")


#: Ports handed out by :func:`free_port` start here: above the well-known and most services' own.
PORTS_FROM = 20000
_ports = random.Random()
_handed_out: set[int] = set()


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default if unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """One throw-away PostgreSQL server for the session, started by the first test that asks."""
    server = postgres.PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stoppable_postgres() -> Iterator[postgres.PostgresServer]:
    """A durable PostgreSQL server of the module's own, which its tests stop (``pause``) and start
    again (``resume``) to play an outage, while the session's server stays up for the others."""
    server = postgres.PostgresServer(durable=True)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: postgres.PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database of the test's own."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(scope="module")
def module_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """For a daemon a module's tests share: ``[database] url`` of a fresh PostgreSQL database
    when ``SFTP_INBOX_TEST_DATABASE=postgresql``, else empty (SQLite in the data dir)."""
    if not postgres.wanted():
        yield ""
        return
    server: postgres.PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Embedded defaults, with every path and port private to the test; the stores on a fresh
    PostgreSQL database when ``SFTP_INBOX_TEST_DATABASE=postgresql``."""
    settings = Settings(data_dir=tmp_path / "var").replace(
        server__keys_dir=tmp_path / "keys",
        server__listen_port=free_port(),
        api__listen_port=free_port(),
    )
    if postgres.wanted():
        settings = settings.replace(database__url=request.getfixturevalue("postgres_url"))
    return settings


@pytest.fixture
def state_db(settings: Settings) -> Database:
    db = open_state(settings.state_location)
    yield db
    db.close()


@pytest.fixture
def hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(settings.passwords)


@pytest.fixture
def tenants(state_db: Database, settings: Settings, hasher: PasswordHasher) -> TenantStore:
    return TenantStore(state_db, settings.tenants_dir, hasher)


@pytest.fixture
def uploads(state_db: Database) -> UploadStore:
    return UploadStore(state_db)
