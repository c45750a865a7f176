"""The server itself: OpenAPI, start and stop in-process, and ``python -m ledger`` on its own."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from core.tenants import Tenant, TenantStore
from ledger.server import ApiServer
from tests.ledger.helpers import API
from tests.support import postgres

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT_SECONDS = 30.0


async def test_openapi_describes_every_endpoint(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()

    assert set(document["paths"]) == {
        "/api/{version}/transactions/signals",
        "/api/{version}/transactions/signals.json",
        "/api/{version}/transactions/{transaction_id}/signals",
        "/api/{version}/transactions/{transaction_id}/signals.json",
        "/api/{version}/calls",
        "/api/{version}/calls.json",
        "/api/{version}/lookup_tables/{table}/rows",
        "/api/{version}/transactions.json",
        "/api/{version}/transactions.csv",
        "/api/{version}/asapp/transcripts",
        "/api/{version}/asapp/transcripts.json",
        "/api/{version}/asapp/purchases",
        "/api/{version}/asapp/purchases.json",
    }
    assert set(document["paths"]["/api/{version}/transactions/signals"]) == {"post", "put"}
    assert set(document["paths"]["/api/{version}/asapp/purchases"]) == {"get", "post"}
    schemas = document["components"]["schemas"]
    assert {"SignalRequest", "SearchParams", "SignalParams", "CallRequest", "LookupRowRequest",
            "TranscriptRequest", "MessageParams", "PurchaseRequest", "PurchaseParams"} <= set(schemas)
    assert "sale_amount" in schemas["SignalParams"]["properties"]
    assert (await http.get("/docs")).status_code == 200


async def test_port_zero_picks_a_free_port(settings: Settings, tenants: TenantStore) -> None:
    server = ApiServer(settings.replace(api__listen_port=0), tenants)
    await server.start()
    try:
        assert server.port > 0
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/openapi.json")).status_code == 200
    finally:
        await server.close()


async def test_a_busy_port_is_an_error_for_the_caller(settings: Settings, tenants: TenantStore) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        server = ApiServer(settings.replace(api__listen_port=busy.getsockname()[1]), tenants)
        with pytest.raises(OSError):
            await server.start()


async def test_python_dash_m_ledger_serves_alone(settings: Settings, acme: Tenant) -> None:
    config = settings.data_dir / "ledger.toml"  # the session's database, if not the files
    config.write_text(postgres.config_section(settings.database.url))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ledger",
        "--config",
        str(config),
        "--data-dir",
        str(settings.data_dir),
        "--listen",
        "127.0.0.1:0",
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), SUBPROCESS_TIMEOUT_SECONDS)
        url = line.decode().removeprefix("listening on ").strip()
        async with httpx.AsyncClient(base_url=url) as http:
            response = await http.get(f"{API}/transactions.json", params={"oauth_token": acme.api_token})
        assert (response.status_code, response.json()) == (200, [])
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), SUBPROCESS_TIMEOUT_SECONDS) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
