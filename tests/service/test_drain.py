"""SIGTERM drains ``sftpd serve`` (service/daemon.py, ``SftpServer.drain``).

A real daemon process, the asyncssh client over loopback, the daemon's own catch-up run into the
embedded ledger and ``sftpctl run`` as a separate process. Each case reads the daemon's JSON log
(its stderr) and its databases after it exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from core.config import Settings, load_settings
from core.crypto import AtRest
from core.db import Location, Reader
from core.passwords import PasswordHasher
from core.tenants import TenantStore, open_state
from tests.conftest import TEST_PASSWORD, free_port
from tests.support import postgres
from tests.support.clients import HOST, asyncssh_connect
from tests.support.daemon import DEMO_PASSWORD, project_env, until_listening

FIRST = b"customer_id,call_start,call_end\n"
SECOND = b"cust-1,2026-11-20T18:02:13Z,2026-11-20T18:12:13Z\n"
EXIT_TIMEOUT_SECONDS = 30


@dataclass
class Daemon:
    process: subprocess.Popen[str]
    port: int
    config: Path
    log: Path
    output: str

    @property
    def demo_password(self) -> str:
        match = DEMO_PASSWORD.search(self.output)
        assert match, self.output
        return match.group(1)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self) -> int:
        return self.process.wait(timeout=EXIT_TIMEOUT_SECONDS)

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = self.log.read_text(encoding="utf-8").splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return [entry for entry in entries if entry["event"] == name]

    def until_logged(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            found = self.events(name)
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"the daemon never logged {name!r}")


def write_config(settings: Settings, drain_seconds: float, extra: str = "", api: str = "") -> Path:
    """For the test's ``settings`` (data dir and, on PostgreSQL, database), with absolute paths,
    so the test process opens the daemon's databases too; ``extra`` holds further sections,
    ``api`` further [api] settings."""
    tmp_path = settings.data_dir.parent
    config = tmp_path / "sftpd.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "var"}"\n'
        f'[server]\nlisten_port = {free_port()}\nkeys_dir = "{tmp_path / "keys"}"\n'
        f"drain_seconds = {drain_seconds}\n"
        f"[api]\nlisten_port = {free_port()}\n{api}[admin]\nlisten_port = 0\n{extra}"
        + postgres.config_section(settings.database.url)
    )
    return config


def start(tmp_path: Path, config: Path, *args: str) -> Daemon:
    log = tmp_path / "daemon.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "service.daemon", "serve", "--config", str(config), *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=project_env(),
    )
    output = until_listening(process, log.read_text)
    return Daemon(process, load_settings(config).server.listen_port, config, log, output)


@contextlib.contextmanager
def stopped_at_exit(daemon: Daemon) -> Iterator[Daemon]:
    try:
        yield daemon
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


def query(db: Location, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of a read-only read of ``db``: the state or the ledger, on either engine."""
    with contextlib.closing(Reader(db, timeout_seconds=30.0)) as reader, reader.read() as conn:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]


async def test_an_upload_closed_within_the_window_is_published_and_recorded(tmp_path: Path, settings: Settings) -> None:
    """Also: during the drain no new connection is accepted, one not logged in yet is closed at
    once, and a logged-in one opens no working SFTP session; the process exits 0 and its last
    line names the upload drained."""
    with stopped_at_exit(start(tmp_path, write_config(settings, drain_seconds=20))) as daemon:
        async with asyncssh_connect(daemon.port, "demo", daemon.demo_password) as conn:
            not_logged_in, _ = await asyncio.open_connection(HOST, daemon.port)
            assert (await not_logged_in.readline()).startswith(b"SSH-2.0-")
            async with conn.start_sftp_client() as sftp:
                upload = await sftp.open("/in/late.csv", "wb")
                await upload.write(FIRST)
                daemon.signal()
                daemon.until_logged("sftpd.draining")
                with pytest.raises(OSError):
                    async with asyncssh_connect(daemon.port, "demo", daemon.demo_password):
                        pass
                async with conn.start_sftp_client() as late:
                    with pytest.raises(asyncssh.SFTPFailure, match="shutting down"):
                        await late.listdir("/in")
                await asyncio.wait_for(not_logged_in.read(), 5)  # its KEXINIT, then the end
                assert not_logged_in.at_eof()
                await upload.write(SECOND, len(FIRST))
                await upload.close()
        assert daemon.wait() == 0
    drained = daemon.events("daemon.drained")
    assert [(d["uploads_finished"], d["uploads_discarded"]) for d in drained] == [
        (["demo:/in/late.csv"], [])
    ]
    at_rest = AtRest.load(tmp_path / "keys", tmp_path / "var", create=False)
    assert at_rest.read_bytes(tmp_path / "var/tenants/demo/in/late.csv") == FIRST + SECOND
    # Recorded, and handed to the ingest side before the process ended: staged for the next run.
    recorded = query(settings.state_location, "SELECT tenant, path, size, state FROM uploads")
    assert recorded == [("demo", "in/late.csv", len(FIRST + SECOND), "staged")]


async def test_an_upload_still_open_at_the_end_of_the_window_is_discarded(tmp_path: Path, settings: Settings) -> None:
    with stopped_at_exit(start(tmp_path, write_config(settings, drain_seconds=1))) as daemon:
        async with asyncssh_connect(daemon.port, "demo", daemon.demo_password) as conn, \
                conn.start_sftp_client() as sftp:
            upload = await sftp.open("/in/cut.csv", "wb")
            await upload.write(FIRST)
            daemon.signal()
            assert daemon.wait() == 0
            with pytest.raises((asyncssh.Error, OSError)):
                await upload.write(SECOND, len(FIRST))
    drained = daemon.events("daemon.drained")
    assert [(d["uploads_finished"], d["uploads_discarded"]) for d in drained] == [
        ([], ["demo:/in/cut.csv"])
    ]
    tenant = tmp_path / "var/tenants/demo"
    assert [p.name for p in tenant.rglob("*") if p.is_file()] == []
    assert query(settings.state_location, "SELECT * FROM uploads") == []


async def test_a_second_signal_ends_the_process_at_once(tmp_path: Path, settings: Settings) -> None:
    with stopped_at_exit(start(tmp_path, write_config(settings, drain_seconds=60))) as daemon:
        async with asyncssh_connect(daemon.port, "demo", daemon.demo_password) as conn, \
                conn.start_sftp_client() as sftp:
            upload = await sftp.open("/in/cut.csv", "wb")
            await upload.write(FIRST)
            daemon.signal()
            daemon.until_logged("sftpd.draining")
            daemon.signal(signal.SIGINT)
            assert daemon.wait() == -signal.SIGINT
    assert daemon.events("daemon.stop_forced")
    assert not (tmp_path / "var/tenants/demo/in/cut.csv").exists()
    assert query(settings.state_location, "SELECT * FROM uploads") == []


CALLS_HEADER = "customer_id,call_start,call_end,calling_phone_number,agent_queue_assigned\n"
SCHEDULE = "[schedule]\nstable_seconds = 0.0\nscan_interval_seconds = 3600.0\n"
# Over HTTP through the daemon's own API, with limits that let it end in seconds.
POST_OVER_HTTP = "[post]\nembedded_in_process = false\nrate_limit_requests = 100000\n"
UNLIMITED_API = "rate_limit_requests = 100000\n"


def calls_file(rows: int) -> str:
    lines = [
        f"cust-{i:05d},2026-11-20T18:{i // 60 % 60:02d}:{i % 60:02d}Z,2026-11-20T19:00:00Z,"
        f"+1 888555{i:04d},Sales\n"
        for i in range(rows)
    ]
    return CALLS_HEADER + "".join(lines)


def stop_during_a_run(tmp_path: Path, settings: Settings, rows: int, extra: str = "", api: str = "") -> Path:
    """Start the daemon on a data dir holding a file of ``rows`` calls; SIGTERM it once its
    catch-up run has delivered some; assert it exits 0 mid-delivery. The config's path."""
    config = write_config(settings, drain_seconds=5, extra=SCHEDULE + extra, api=api)
    settings = load_settings(config)
    db = open_state(settings.state_location)
    try:
        TenantStore(db, settings.tenants_dir, PasswordHasher(settings.passwords)).add(
            "acme", "ops@example.com", TEST_PASSWORD)
    finally:
        db.close()
    feed = settings.tenants_dir / "acme/in/calls"
    feed.mkdir()
    (feed / "calls.csv").write_text(calls_file(rows))
    with stopped_at_exit(start(tmp_path, config, "--no-demo")) as daemon:
        deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
        while not posted(settings.state_location) and time.monotonic() < deadline:
            time.sleep(0.01)
        daemon.signal()
        assert daemon.wait() == 0
    assert 0 < posted(settings.state_location) < rows, "SIGTERM came before or after the delivery"
    assert query(settings.state_location, "SELECT status FROM ingest_runs") == [("interrupted",)]
    return config


def posted(state: Location) -> int:
    return int(query(state, "SELECT count(*) FROM ingest_outbox WHERE state = 'posted'")[0][0])


def run_again_and_count(config: Path, rows: int) -> None:
    """``sftpctl run`` finishes the delivery: every row posted, each in the ledger once."""
    settings = load_settings(config)
    rerun = subprocess.run(
        [sys.executable, "-m", "service.sftpctl", "--config", str(config), "run"],
        check=False, cwd=config.parent, capture_output=True, text=True, timeout=120,
        env=project_env(),
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    state, ledger = settings.state_location, settings.ledger_location
    assert query(state, "SELECT state, count(*) FROM ingest_outbox GROUP BY state") == [
        ("posted", rows)
    ]
    assert query(ledger, "SELECT count(*), count(DISTINCT complete_call_id) FROM calls") == [
        (rows, rows)
    ]
    assert query(ledger, "SELECT count(*) FROM transactions")[0][0] == rows


def test_a_run_stopped_by_sigterm_is_finished_by_the_next_with_every_row_once(
    tmp_path: Path, settings: Settings,
) -> None:
    """The daemon's catch-up run is writing a file into the embedded ledger in process (1,000
    rows a batch) when SIGTERM comes: the batch under way commits with its outbox marks (the
    ledger's remembered answers and the outbox's posted rows agree), the run is recorded
    interrupted, and a later ``sftpctl run`` delivers the rest: each row in the ledger once."""
    rows = 6000
    config = stop_during_a_run(tmp_path, settings, rows)
    settings = load_settings(config)
    remembered = "SELECT count(*) FROM delivered_requests"
    assert query(settings.ledger_location, remembered)[0][0] == posted(settings.state_location)
    run_again_and_count(config, rows)
    assert query(settings.ledger_location, remembered)[0][0] == rows


def test_a_run_posting_over_http_stopped_by_sigterm_loses_and_doubles_nothing(
    tmp_path: Path, settings: Settings,
) -> None:
    """The same through the poster (the daemon's own API over HTTP, as a remote destination):
    a request whose answer the stop cut off stays pending and is sent again, and the ledger
    answers such a replay without writing a second row."""
    rows = 300
    config = stop_during_a_run(tmp_path, settings, rows, POST_OVER_HTTP, UNLIMITED_API)
    run_again_and_count(config, rows)
