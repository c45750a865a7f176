"""``/healthz``: 200 from a daemon that is fine; 503 naming each check that is not."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from core.config import Settings
from core.tenants import open_state
from service.admin import AdminServer, Live
from tests.service.admin.conftest import AdminDaemon


def test_a_running_daemon_is_healthy(admin_daemon: AdminDaemon) -> None:
    answer = admin_daemon.get("/healthz")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ok", "checks": {"ssh": "ok", "database": "ok", "disk": "ok"}}


async def test_503_names_the_disk_below_its_threshold_and_a_closed_ssh_listener(settings: Settings) -> None:
    open_state(settings.state_location).close()
    settings = settings.replace(admin__listen_port=0, admin__min_free_disk_bytes=2**62)
    admin = AdminServer(settings, Live(), lambda: None, dict)
    await admin.start()
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{admin.url}/healthz")
    finally:
        await admin.close()
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert answer.json()["status"] == "failing"
    assert checks["database"] == "ok"
    assert "below min_free_disk_bytes" in checks["disk"]
    assert checks["ssh"] == "the SSH listener is not running"


async def test_503_when_the_database_cannot_be_read(settings: Settings, tmp_path: Path) -> None:
    settings = settings.replace(data_dir=tmp_path / "nowhere", admin__listen_port=0)
    if settings.database.url:  # on PostgreSQL: a database that does not exist
        settings = settings.replace(database__url=urlunsplit(urlsplit(settings.database.url)._replace(path="/nowhere")))
    admin = AdminServer(settings, Live(), lambda: None, dict)
    await admin.start()
    try:
        async with httpx.AsyncClient() as client:
            health = await client.get(f"{admin.url}/healthz")
            metrics = await client.get(f"{admin.url}/metrics")
    finally:
        await admin.close()
    assert health.status_code == 503 and "does not exist" in health.json()["checks"]["database"]
    assert metrics.status_code == 503 and "state database" in metrics.text
