"""Fixtures of the pipeline tests: a scripted Signal API on loopback, a tenant, an Ingest.

The fake API is a real Starlette app served by uvicorn on a free port, so the poster's HTTP
client, pool, time-outs and retries run for real. By default it behaves like the Signal API's
idempotency: the first request with a given ``Idempotency-Key`` creates (201), a repeat changes
nothing (200). Tests script other answers per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.config import Settings
from core.crypto import AtRest
from core.db import Database
from core.tenants import Tenant, TenantStore
from core.uploads import Upload, UploadStore
from ingest.pipeline import Ingest
from tests.conftest import TEST_PASSWORD

API_PREFIX = "/api/2020-10-01"
TENANT = "acme"
CONTACT = "ops@acme.example"

Answer = Callable[[Request, dict[str, Any]], Awaitable[Response]]


@dataclass(frozen=True)
class Received:
    at: float
    method: str
    path: str
    key: str | None
    body: dict[str, Any]


@dataclass
class FakeApi:
    """What the server received, and what it will answer next."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    script: deque[Answer] = field(default_factory=deque)
    applied: dict[str, int] = field(default_factory=dict)
    repeats: dict[str, int] = field(default_factory=dict)
    by_token: dict[str, Answer] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    def answer_token(self, token: str, answer: Answer) -> None:
        """Answer every request carrying ``token`` with ``answer``, before any scripted answer."""
        self.by_token[token] = answer

    def answer(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order, then go back to the default."""
        self.script.extend(answers)

    async def handle(self, request: Request) -> Response:
        body = json.loads(await request.body() or b"{}")
        key = request.headers.get("idempotency-key")
        self.received.append(Received(time.monotonic(), request.method, request.url.path, key, body))
        if body.get("oauth_token") in self.by_token:
            return await self.by_token[body["oauth_token"]](request, body)
        if self.script:
            return await self.script.popleft()(request, body)
        return await idempotent(self, key)


async def idempotent(api: FakeApi, key: str | None) -> Response:
    """The Signal API's rule: a repeat of the same request is a no-op answered 200."""
    name = key or ""
    if name in api.applied:
        api.repeats[name] = api.repeats.get(name, 0) + 1
        return JSONResponse({"signal": {"transaction_id": f"T-{name[:8]}"}}, status_code=200)
    api.applied[name] = len(api.applied) + 1
    return JSONResponse({"signal": {"transaction_id": f"T-{name[:8]}"}}, status_code=201)


def status(code: int, payload: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Answer:
    async def answer(request: Request, body: dict[str, Any]) -> Response:
        return JSONResponse(payload or {}, status_code=code, headers=headers)

    return answer


def errors(code: int, cls: str, message: str) -> Answer:
    return status(code, {"errors": {"class": cls, "invalid_data": message}})


def stall(seconds: float) -> Answer:
    async def answer(request: Request, body: dict[str, Any]) -> Response:
        await asyncio.sleep(seconds)
        return JSONResponse({}, status_code=201)

    return answer


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeApi]:
    api = FakeApi()
    app = Starlette(routes=[Route("/{path:path}", api.handle, methods=["GET", "POST", "PUT"])])
    sock = socket.create_server(("127.0.0.1", 0))
    api.port = sock.getsockname()[1]
    server = _QuietServer(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield api
    server.should_exit = True
    await task


@pytest.fixture
def ingest_settings(settings: Settings, fake_api: FakeApi) -> Settings:
    """The embedded API's address is the fake's, reached over HTTP; retries are quick."""
    return settings.replace(
        api__listen_port=fake_api.port,
        post__embedded_in_process=False,
        post__backoff_base_seconds=0.01,
        post__backoff_max_seconds=0.05,
        post__timeout_seconds=2.0,
        post__max_attempts=3,
    )


@pytest.fixture
def tenant(tenants: TenantStore) -> Tenant:
    return tenants.add(TENANT, CONTACT, TEST_PASSWORD)


@pytest.fixture
async def ingest(ingest_settings: Settings, state_db: Database, tenants: TenantStore,
                 uploads: UploadStore) -> AsyncIterator[Ingest]:
    pipeline = Ingest(ingest_settings, state_db, tenants, uploads)
    yield pipeline
    await pipeline.aclose()


def drop(tenants: TenantStore, uploads: UploadStore, tenant: str, relative: str, content: str | bytes,
         source: str = "sftp", at_rest: AtRest | None = None) -> tuple[Upload, Path]:
    """Put a file in the tenant's folder and record it, as the front door does after an upload;
    sealed with ``at_rest`` if given (the record has the plaintext's size and sha256)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    path = tenants.folders(tenant).root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if at_rest is not None:
        at_rest.write_bytes(path, data)
    else:
        path.write_bytes(data)
    upload = uploads.record(tenant, relative, len(data), hashlib.sha256(data).hexdigest(), source=source)
    return upload, path
