"""Small helpers for talking to the ledger over HTTP the way a client would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from ledger import API_VERSION

API = f"/api/{API_VERSION}"


class Like:
    """Equal to any string matching ``pattern``; for ids and times the server generates."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.pattern.fullmatch(other) is not None

    def __repr__(self) -> str:
        return f"Like({self.pattern.pattern!r})"


TRANSACTION_ID = Like(r"[0-9A-F]{8}-[0-9A-F]{8}")
EPOCH_SECONDS = Like(r"\d{10}")
DISPLAY_TIME = Like(r"\d\d/\d\d/\d{4} \d\d:\d\d [AP]M UTC")
GUID = Like(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def error(error_class: str, message: str) -> dict[str, Any]:
    return {"errors": {"class": error_class, "invalid_data": message}}


@dataclass
class TenantClient:
    """An HTTP client holding one tenant's token."""

    http: httpx.AsyncClient
    token: str

    async def call(self, **call: Any) -> httpx.Response:
        return await self.http.post(f"{API}/calls.json", json={"call": call}, headers=self._auth())

    async def signal(self, search: dict[str, Any], signal: dict[str, Any], **extra: Any) -> httpx.Response:
        body = {"search": search, "signal": signal, **extra, "oauth_token": self.token}
        return await self.http.post(f"{API}/transactions/signals.json", json=body)

    async def lookup_row(self, table: str, **row: Any) -> httpx.Response:
        return await self.http.put(f"{API}/lookup_tables/{table}/rows", json=row, headers=self._auth())

    async def transcript(self, **message: Any) -> httpx.Response:
        return await self.http.post(f"{API}/asapp/transcripts", json={"message": message}, headers=self._auth())

    async def purchase(self, **purchase: Any) -> httpx.Response:
        return await self.http.post(f"{API}/asapp/purchases.json", json={"purchase": purchase},
                                    headers=self._auth())

    async def records(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """The ASAPP records ``name`` (transcripts, purchases) the listing gives."""
        response = await self.http.get(f"{API}/asapp/{name}.json", params=params, headers=self._auth())
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()
        return rows

    async def transactions(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.transactions_response(**params)
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()
        return rows

    async def transactions_response(self, suffix: str = "json", **params: Any) -> httpx.Response:
        query = {key.rstrip("_"): value for key, value in params.items()}
        return await self.http.get(f"{API}/transactions.{suffix}", params=query, headers=self._auth())

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}
