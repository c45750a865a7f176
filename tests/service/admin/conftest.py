"""A real daemon with its admin listener on a private port, shared by a module's tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.config import load_settings
from core.db import Location
from tests.conftest import free_port
from tests.support import postgres
from tests.support.daemon import Daemon, project_env, start_daemon


@dataclass
class AdminDaemon:
    daemon: Daemon
    config: Path
    admin_url: str

    @property
    def state(self) -> Location:
        """The daemon's state store (its data dir is ``var`` beside the config)."""
        return load_settings(self.config).replace(data_dir=self.config.parent / "var").state_location

    def sftpctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.sftpctl", "--config", str(self.config), *args],
            check=False, cwd=self.config.parent, capture_output=True, text=True, timeout=120, env=project_env(),
        )

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(f"{self.admin_url}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]

    async def caught_up(self) -> None:
        """The daemon's catch-up run at start-up has ended (a manual run would skip its tenants)."""
        for _ in range(600):
            runs = json.loads(self.sftpctl("--json", "runs").stdout)
            if runs and runs[-1]["status"] != "running":
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the daemon's catch-up run never finished")


@pytest.fixture(scope="module")
def admin_daemon(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[AdminDaemon]:
    root = tmp_path_factory.mktemp("admin")
    port, api_port, admin_port = free_port(), free_port(), free_port()
    config = root / "sftpd.toml"
    config.write_text(f"[server]\nlisten_port = {port}\n[api]\nlisten_port = {api_port}\n"
                      f"[admin]\nlisten_port = {admin_port}\n" + postgres.config_section(module_database_url))
    daemon = start_daemon(root, port, api_port, "--config", str(config))
    try:
        assert f"admin on http://127.0.0.1:{admin_port}" in daemon.output
        yield AdminDaemon(daemon, config, f"http://127.0.0.1:{admin_port}")
    finally:
        assert daemon.stop() == 0
