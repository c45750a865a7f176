"""``sftpd serve`` as a user starts it: a real process, the demo tenant, a real OpenSSH client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port
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


def test_second_start_keeps_tenants_and_prints_no_password(tmp_path: Path) -> None:
    port, api_port = free_port(), free_port()
    start_daemon(tmp_path, port, api_port).stop()
    daemon = start_daemon(tmp_path, port, api_port)
    try:
        assert daemon.demo_password is None
    finally:
        daemon.stop()


def test_no_demo_flag(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, None, None, "--no-demo")
    daemon.stop()
    assert daemon.demo_password is None


def test_bad_listen_address_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.daemon", "serve", "--listen", "nonsense"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=project_env(),
    )
    assert result.returncode == 2 and "expected HOST:PORT" in result.stderr
