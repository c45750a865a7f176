"""The admin listener is loopback-only unless a bearer token guards it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from core.config import AdminSettings, ConfigError, Settings
from core.tenants import open_state
from service.admin import AdminServer, Live
from service.admin.access import exposure_problem, is_loopback
from tests.conftest import free_port
from tests.support import postgres
from tests.support.daemon import project_env, start_daemon


async def test_the_token_is_required_when_set(settings: Settings) -> None:
    open_state(settings.state_location).close()
    settings = settings.replace(admin__listen_port=0, admin__token="s3cret-token")
    admin = AdminServer(settings, Live(), lambda: None, dict)
    await admin.start()
    try:
        async with httpx.AsyncClient(base_url=admin.url) as client:
            for path in ("/metrics", "/healthz", "/"):
                assert (await client.get(path)).status_code == 401
                wrong = await client.get(path, headers={"Authorization": "Bearer s3cret-tokeN"})
                assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
            good = await client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    finally:
        await admin.close()
    assert good.status_code == 200 and "sftp_inbox_build_info" in good.text


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                            ("127.3.4.5", True), ("0.0.0.0", False), ("::", False),
                                            ("10.0.0.8", False), ("admin.example", False)])
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_rule() -> None:
    assert exposure_problem(AdminSettings()) is None
    assert exposure_problem(AdminSettings(listen_host="0.0.0.0", token="t")) is None
    assert exposure_problem(AdminSettings(listen_host="0.0.0.0", listen_port=0)) is None
    assert "token must be set" in (exposure_problem(AdminSettings(listen_host="0.0.0.0")) or "")


def test_the_daemon_refuses_a_non_loopback_admin_listener_without_a_token(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.daemon", "serve", "--listen", f"127.0.0.1:{free_port()}",
         "--admin-listen", f"0.0.0.0:{free_port()}"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=project_env(),
    )
    assert result.returncode == 2
    assert "admin.listen_host = '0.0.0.0' is not loopback, so [admin] token must be set" in result.stderr
    assert not (tmp_path / "var").exists()  # refused before anything was touched


def test_the_server_itself_refuses_a_non_loopback_address_without_a_token(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="token must be set"):
        AdminServer(settings.replace(admin__listen_host="0.0.0.0"), Live(), lambda: None, dict)


def test_port_0_turns_the_admin_listener_off(tmp_path: Path, settings: Settings) -> None:
    port, api_port = free_port(), free_port()
    config = tmp_path / "sftpd.toml"
    config.write_text(f"[server]\nlisten_port = {port}\n[api]\nlisten_port = {api_port}\n[admin]\nlisten_port = 0\n"
                      + postgres.config_section(settings.database.url))
    daemon = start_daemon(tmp_path, port, api_port, "--config", str(config))
    try:
        assert "admin on" not in daemon.output
    finally:
        assert daemon.stop() == 0
