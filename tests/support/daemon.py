"""``sftpd serve`` started as a user starts it: a real process in a private working directory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

PROJECT_ROOT = Path(__file__).parents[2]
READY = re.compile(r"sftpd: listening on")
DEMO_PASSWORD = re.compile(r"Created tenant 'demo' with password (\S+)")
START_TIMEOUT_SECONDS = 60


@dataclass
class Daemon:
    process: subprocess.Popen[str]
    output: str
    port: int
    api_port: int

    @property
    def demo_password(self) -> str | None:
        match = DEMO_PASSWORD.search(self.output)
        return match.group(1) if match else None

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def project_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}


def start_daemon(cwd: Path, port: int | None = None, api_port: int | None = None, *args: str) -> Daemon:
    """Start the daemon in ``cwd`` (keys/ and var/ land there) and wait until it listens."""
    port, api_port = port or free_port(), api_port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service.daemon", "serve", "--listen", f"127.0.0.1:{port}",
         "--api-listen", f"127.0.0.1:{api_port}", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=project_env(),
    )
    return Daemon(process, until_listening(process), port, api_port)


def until_listening(process: subprocess.Popen[str], more: Callable[[], str] = lambda: "") -> str:
    """The daemon's standard output up to its ready line; the test fails (with that output and
    ``more()``, e.g. its log) if the line never comes."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if READY.search(line):
            return "".join(lines)
    process.kill()
    pytest.fail(f"daemon did not start: {''.join(lines)} {more()}")
