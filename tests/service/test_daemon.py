"""``sftpd serve`` as a user starts it: a real process, the demo tenant, a real OpenSSH client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from core.config import Settings
from core.crypto.keys import write_key_file
from tests.conftest import free_port
from tests.support import postgres
from tests.support.clients import OpenSSHClient, output_lines
from tests.support.daemon import project_env, start_daemon


async def test_first_start_creates_demo_tenant_that_can_log_in(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path)
    try:
        assert daemon.demo_password, daemon.output
        client = OpenSSHClient(tmp_path, daemon.port)
        result = await client.run("demo", daemon.demo_password, ["ls -1"])
        assert result.returncode == 0, result.stderr
        assert output_lines(result) == ["in", "out"]
        assert (tmp_path / "keys").is_dir() and (tmp_path / "var" / "state.db").is_file()
    finally:
        assert daemon.stop() == 0


def database(tmp_path: Path, settings: Settings) -> tuple[str, ...]:
    """On PostgreSQL, ``--config`` of a file naming the test's database; nothing on SQLite."""
    if not settings.database.url:
        return ()
    config = tmp_path / "database.toml"
    config.write_text(postgres.config_section(settings.database.url))
    return ("--config", str(config))


def test_second_start_keeps_tenants_and_prints_no_password(tmp_path: Path, settings: Settings) -> None:
    port, api_port = free_port(), free_port()
    start_daemon(tmp_path, port, api_port, *database(tmp_path, settings)).stop()
    daemon = start_daemon(tmp_path, port, api_port, *database(tmp_path, settings))
    try:
        assert daemon.demo_password is None
    finally:
        daemon.stop()


def test_no_demo_flag(tmp_path: Path, settings: Settings) -> None:
    daemon = start_daemon(tmp_path, None, None, "--no-demo", *database(tmp_path, settings))
    daemon.stop()
    assert daemon.demo_password is None


def test_a_first_start_makes_the_master_key_and_a_lost_or_wrong_one_stops_the_next(
    tmp_path: Path, settings: Settings,
) -> None:
    """Once files may have been sealed (the data dir's marker), a missing master key is never
    replaced by a new one, and another key is not taken for it: the daemon does not start, says
    in one line which file to restore, and touches nothing."""
    start_daemon(tmp_path, None, None, "--no-demo", *database(tmp_path, settings)).stop()
    key = tmp_path / "keys" / "master.key"
    assert key.is_file() and (tmp_path / "var" / "encrypted-at-rest").is_file()
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "var").rglob("*")}

    def start() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.daemon", "serve", "--no-demo", "--listen",
             f"127.0.0.1:{free_port()}", "--api-listen", f"127.0.0.1:{free_port()}", *database(tmp_path, settings)],
            check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=project_env(),
        )

    key.unlink()
    result = start()
    assert result.returncode == 2 and "listening" not in result.stdout
    assert result.stderr.startswith("sftpd: cannot start: master key keys/master.key is missing")
    assert "backup" in result.stderr and "Traceback" not in result.stderr
    assert not key.exists()
    write_key_file(key, os.urandom(32))  # a valid key, but not this data dir's
    result = start()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("sftpd: cannot start: master key keys/master.key is not the key")
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "var").rglob("*")} == before


def test_bad_listen_address_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.daemon", "serve", "--listen", "nonsense"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=project_env(),
    )
    assert result.returncode == 2 and "expected HOST:PORT" in result.stderr


def test_the_daemon_prunes_what_is_due_when_it_starts(tmp_path: Path, settings: Settings) -> None:
    from service.sftpctl import main as sftpctl

    config = tmp_path / "prepare.toml"
    # The daemon below runs in tmp_path, where its default keys dir (keys) is this one.
    config.write_text(f'data_dir = "{tmp_path / "var"}"\n[server]\nkeys_dir = "{tmp_path / "keys"}"\n'
                      f"[api]\nlisten_port = {free_port()}\n[schedule]\nstable_seconds = 0.0\n"
                      + postgres.config_section(settings.database.url))
    cli = ["--config", str(config)]
    assert sftpctl([*cli, "tenant", "add", "acme", "--email", "ops@acme.example"]) == 0
    assert sftpctl([*cli, "tenant", "retention", "acme", "--upload-days", "0"]) == 0
    upload = tmp_path / "var" / "tenants" / "acme" / "in" / "calls" / "calls.csv"
    upload.parent.mkdir()
    upload.write_text("customer_id,call_start,call_end,calling_phone_number,agent_queue_assigned\n"
                      "cust-001,2026-11-20T18:02:13Z,2026-11-20T18:12:13Z,+1 8885551212,Wireless Sales\n")
    assert sftpctl([*cli, "run"]) == 0 and upload.exists()
    daemon = start_daemon(tmp_path, None, None, "--no-demo", "--config", str(config))
    try:
        deadline = time.monotonic() + 20
        while upload.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not upload.exists() and upload.parent.is_dir()
    finally:
        assert daemon.stop() == 0
