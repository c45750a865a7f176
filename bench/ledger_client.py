"""Talking to our daemon's embedded Signal API the way a customer's integration does: over HTTP."""

from __future__ import annotations

import httpx

from bench.errors import NotAvailable
from bench.our_server import OurServer
from bench.signal_files import START, call_transaction_id

API_VERSION = "2020-10-01"
HTTP_TIMEOUT_SECONDS = 30.0


def api_base(server: OurServer) -> str:
    return f"{server.api_url}/api/{API_VERSION}"


def tenant_token(server: OurServer, tenant: str) -> str:
    shown = server.sftpctl("token", "show", tenant)
    if shown.returncode != 0 or not shown.stdout.strip():
        raise NotAvailable(f"sftpctl token show failed: {shown.stderr.strip()[-200:] or 'no token'}")
    return shown.stdout.strip()


def create_calls(server: OurServer, token: str, count: int) -> None:
    """The calls every benchmark signal finds by ``transaction_id`` (idempotent: 201, then 200)."""
    start = START.strftime("%Y-%m-%dT%H:%M:%SZ")
    with httpx.Client(base_url=api_base(server), headers=auth(token), timeout=HTTP_TIMEOUT_SECONDS) as client:
        for index in range(count):
            transaction_id = call_transaction_id(index)
            try:
                response = client.post("/calls.json", json={"call": {
                    "external_id": transaction_id, "transaction_id": transaction_id, "start_time": start,
                }})
            except httpx.HTTPError as exc:
                raise NotAvailable(f"embedded API unreachable: {exc}") from None
            if response.status_code not in (200, 201):
                raise NotAvailable(f"creating calls: HTTP {response.status_code} {response.text[:200]}")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
