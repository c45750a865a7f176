"""The daemon through a minute without its PostgreSQL server, as a user runs it.

A real ``sftpd serve`` process on a server of this module's own, which the test stops as a crash
would (``pg_ctl stop -m immediate``) and starts again on the same data; real SSH clients.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from core.db import Database, PostgresLocation
from sftpd.auth import UNAVAILABLE
from tests.conftest import free_port
from tests.support.clients import asyncssh_connect, paramiko_sftp
from tests.support.daemon import DEMO_PASSWORD, project_env, until_listening
from tests.support.postgres import PostgresServer

WAIT_SECONDS = 60.0


@pytest.fixture
def url(stoppable_postgres: PostgresServer) -> Iterator[str]:
    url = stoppable_postgres.create_database()
    yield url
    if not stoppable_postgres.running:
        stoppable_postgres.resume()
    stoppable_postgres.drop_database(url)


def log_events(log: Path, name: str) -> list[dict[str, object]]:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry.get("event") == name]


async def refused_login(port: int) -> float:
    began = time.monotonic()
    with pytest.raises(asyncssh.DisconnectError) as refused:
        async with asyncssh_connect(port, "demo", "not-checked"):
            pass
    assert (refused.value.code, refused.value.reason) == (asyncssh.DISC_SERVICE_NOT_AVAILABLE, UNAVAILABLE)
    return time.monotonic() - began


def test_logins_are_refused_at_once_uploads_kept_and_service_resumes_by_itself(
    stoppable_postgres: PostgresServer, url: str, tmp_path: Path,
) -> None:
    config = tmp_path / "sftpd.toml"
    config.write_text(f'data_dir = "{tmp_path / "var"}"\n[api]\nenabled = false\n[admin]\nlisten_port = 0\n'
                      f'[database]\nurl = "{url}"\n')
    port = free_port()
    log = tmp_path / "daemon.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.daemon", "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr, text=True, env=project_env())
    try:
        output = until_listening(process, log.read_text)
        match = DEMO_PASSWORD.search(output)
        assert match is not None
        password = match.group(1)
        body = b"id,amount\n" + b"1,2\n" * 100_000
        with paramiko_sftp(port, "demo", password) as sftp, sftp.open("in/during.csv", "wb") as upload:
            upload.write(body[:4096])
            stoppable_postgres.pause()
            took = asyncio.run(_refusals(port))
            print(f"refused logins while the database was down: {[f'{t:.3f}' for t in took]} s")
            upload.write(body[4096:])
        # closed while the database is down: kept, and the daemon is still serving
        assert process.poll() is None
        assert (tmp_path / "var" / "tenants" / "demo" / "in" / "during.csv").exists()
        stoppable_postgres.resume()
        deadline = time.monotonic() + WAIT_SECONDS
        while True:  # logins come back by themselves, no restart
            try:
                with paramiko_sftp(port, "demo", password) as sftp:
                    assert sftp.stat("in/during.csv").st_size == len(body)
                break
            except Exception:  # noqa: BLE001 - refused until the next try of the server
                assert time.monotonic() < deadline, "logins did not come back"
                time.sleep(0.5)
        db = Database(PostgresLocation(url, "state"))
        try:
            while True:
                rows = db.query("SELECT path, size, source FROM uploads WHERE tenant = 'demo'")
                if rows:
                    break
                assert time.monotonic() < deadline, "the upload was never recorded"
                time.sleep(0.2)
            assert [(row["path"], row["size"]) for row in rows] == [("in/during.csv", len(body))]
        finally:
            db.close()
        assert process.poll() is None
    finally:
        if process.poll() is None:
            process.terminate()
        code = process.wait(timeout=60)
    assert code == 0
    assert len(log_events(log, "database.unavailable")) == 1
    assert len(log_events(log, "database.available")) == 1
    assert len(log_events(log, "auth.unavailable")) >= 3  # and those refused until the next try
    assert log_events(log, "auth.failed") == []


async def _refusals(port: int) -> list[float]:
    return [await refused_login(port) for _ in range(3)]
