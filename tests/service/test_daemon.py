"""``sftpd serve`` as a user starts it: a real process, the demo tenant, a real OpenSSH client."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.openssh import output_lines, sftp_batch

READY = re.compile(r"sftpd: listening on")
DEMO_PASSWORD = re.compile(r"Created tenant 'demo' with password (\S+)")


def start_daemon(cwd: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "service.daemon", "serve", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if READY.search(line):
            return process, lines
    process.kill()
    pytest.fail(f"daemon did not start: {''.join(lines)}")


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def test_first_start_creates_demo_tenant_that_can_log_in(tmp_path: Path) -> None:
    port, api_port = free_port(), free_port()
    process, lines = start_daemon(tmp_path, "--listen", f"127.0.0.1:{port}",
                                  "--api-listen", f"127.0.0.1:{api_port}")
    try:
        match = DEMO_PASSWORD.search("".join(lines))
        assert match, lines
        result = sftp_batch(port, "demo", match.group(1), ["ls -1"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert output_lines(result) == ["in", "out"]
        assert (tmp_path / "keys").is_dir() and (tmp_path / "var" / "state.db").is_file()
    finally:
        assert stop(process) == 0


def test_second_start_keeps_tenants_and_prints_no_password(tmp_path: Path) -> None:
    port, api_port = free_port(), free_port()
    args = ("--listen", f"127.0.0.1:{port}", "--api-listen", f"127.0.0.1:{api_port}")
    process, _ = start_daemon(tmp_path, *args)
    stop(process)
    process, lines = start_daemon(tmp_path, *args)
    try:
        assert not DEMO_PASSWORD.search("".join(lines))
    finally:
        stop(process)


def test_bad_listen_address_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.daemon", "serve", "--listen", "nonsense"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert result.returncode == 2 and "expected HOST:PORT" in result.stderr
