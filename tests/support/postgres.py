"""A throw-away PostgreSQL server for the tests: Debian's binaries, a private directory, no mocks.

One server per pytest session, started on first use: ``initdb`` into a temporary directory owned
by an unprivileged user (``initdb`` refuses root; as root the server runs as ``postgres``),
listening on a unix socket in that directory only (no TCP port), with ``fsync`` off since the
data is thrown away. Each test that asks gets a fresh database, created from ``template1`` (a
file copy, tens of milliseconds), dropped after it.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from core.db import Location, PostgresLocation

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)  # newest version first
START_TIMEOUT_SECONDS = 60
# Set to "postgresql" to run the tests' state and ledger on PostgreSQL (tests/conftest.py).
ENGINE_SWITCH = "SFTP_INBOX_TEST_DATABASE"


def wanted() -> bool:
    """Whether this test session runs its stores on PostgreSQL."""
    engine = os.environ.get(ENGINE_SWITCH, "sqlite").strip().lower()
    if engine not in ("sqlite", "postgresql"):
        raise RuntimeError(f"{ENGINE_SWITCH}={engine!r}: say sqlite or postgresql")
    return engine == "postgresql"


def config_section(url: str) -> str:
    """The ``[database]`` section of a config file for the daemon or ``sftpctl`` a test starts,
    so the process uses the test's database: empty on SQLite (``url`` empty)."""
    return f"[database]\nurl = {json.dumps(url)}\n" if url else ""


def location_argv(location: Location) -> list[str]:
    """A store's location as two arguments for a test's child process, which reads it back with
    ``PostgresLocation(argv[1], argv[2]) if argv[2] else Path(argv[1])``."""
    if isinstance(location, PostgresLocation):
        return [location.url, location.schema]
    return [str(location), ""]


def _binary(name: str) -> str:
    for directory in BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    raise RuntimeError(f"PostgreSQL's {name} is not installed: apt-get install postgresql")


class PostgresServer:
    """A server in its own directory; :meth:`stop` removes it all."""

    def __init__(self, durable: bool = False) -> None:
        """``durable``: commits survive :meth:`pause` (``synchronous_commit`` on)."""
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="sftp-inbox-pg-"))
        self.data = self.root / "data"
        self._user: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._user = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count(1)
        self._started = False

    @property
    def running(self) -> bool:
        return self._started

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.root}"

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self._user, *command], check=False, capture_output=True, text=True,
                              timeout=START_TIMEOUT_SECONDS)
        if done.returncode:
            log = self.root / "server.log"
            server = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}\n{server}")

    def start(self) -> None:
        self._run(_binary("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        self.resume()

    def resume(self) -> None:
        """Start the server on its data directory (again, after :meth:`pause`)."""
        options = (f"-k {self.root} -c listen_addresses='' -c fsync=off"
                   f" -c synchronous_commit={'on' if self.durable else 'off'}"
                   " -c full_page_writes=off -c max_connections=200")
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", str(START_TIMEOUT_SECONDS), "start")
        self._started = True

    def pause(self) -> None:
        """Stop the server as a crash would (``-m immediate``), keeping its data for :meth:`resume`."""
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self._started = False

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template1")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self._started:
            self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)
