"""The ASGI application: Signal API, Transactions API, and the calls, lookup-table and ASAPP
extensions.

Endpoints read their JSON bodies themselves so that a request is judged in the document's
order: token first (401), then rate limit (429), then the body's size (413) and depth (400), then
the data (403 / 404). A token in the headers or query string is checked before a byte of the body
is read; without one, the body is read (within its bounds) to look for ``oauth_token``. Store
calls are short
SQLite transactions run directly on the event loop: cheaper than a thread hop per request, and
requests are serialised by the store anyway.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from core.config import Settings
from core.db import DatabaseUnavailable
from core.logs import get_logger
from core.tenants import Tenant, TenantStore
from ledger import API_VERSION
from ledger.auth import Gatekeeper, request_token
from ledger.bodies import parse_json, read_body
from ledger.docs_page import add_docs
from ledger.errors import (
    ApiError,
    PayloadTooLarge,
    RecordInvalid,
    RecordNotFound,
    RoutingError,
    ServiceUnavailable,
)
from ledger.openapi import answers, json_body, publish_models
from ledger.queries import parse_listing_request, parse_transactions_request
from ledger.ratelimit import SlidingWindowLimiter
from ledger.render import transaction_row, transactions_csv
from ledger.requests import LedgerRequests
from ledger.schemas import (
    CallRequest,
    LookupRowRequest,
    PurchaseRequest,
    SignalRequest,
    TranscriptRequest,
)
from ledger.store import LedgerStore

log = get_logger("ledger.app")

_VERSION_DIGITS = (4, 2, 2)
# The filter of each ASAPP listing: one conversation's messages, one transaction's lines.
TRANSCRIPT_MATCH = "conversation_externalId"
PURCHASE_MATCH = "transaction_id"


class _Endpoints:
    """The handlers, sharing the stores, the gatekeeper and the settings."""

    def __init__(self, settings: Settings, tenants: TenantStore, store: LedgerStore) -> None:
        self.tenants = tenants
        self.store = store
        self.requests = LedgerRequests(settings.api, tenants, store)
        self.max_body_bytes = settings.api.max_body_bytes
        self.max_json_depth = settings.api.max_json_depth
        limit = settings.api.rate_limit_requests
        limiter = SlidingWindowLimiter(limit, settings.api.rate_limit_window_seconds) if limit > 0 else None
        self.gate = Gatekeeper(tenants, limiter)

    async def _admit(self, request: Request, version: str) -> tuple[Tenant, Any]:
        """The tenant and the parsed JSON body; a bad body is reported only after the token.

        A body that cannot be read (too large, too deep, not JSON) holds no token, so without a
        token in the headers or query string it is a 401.
        """
        _check_version(version)
        token = request_token(request)
        body, unread = None, _has_body(request)
        if token is None:
            try:
                body, unread = await self._json(request), False
            except PayloadTooLarge:
                pass
            except ApiError:
                unread = False
            token = request_token(request, body)
        try:
            tenant = self.gate.admit(token)
        except ApiError as refused:
            if unread:  # close the connection rather than drain the body
                refused.headers["Connection"] = "close"
            raise
        if unread:
            body = await self._json(request)
        if body is None:
            raise RecordInvalid("the request body must be a JSON object")
        return tenant, body

    async def _json(self, request: Request) -> Any:
        return parse_json(await read_body(request, self.max_body_bytes), self.max_json_depth)

    async def post_signal(self, request: Request, version: str) -> Response:
        return await self._signal(request, version, None)

    async def post_transaction_signal(self, request: Request, version: str, transaction_id: str) -> Response:
        return await self._signal(request, version, transaction_id)

    async def _signal(self, request: Request, version: str, transaction_id: str | None) -> Response:
        tenant, body = await self._admit(request, version)
        answer = self.requests.signal(tenant, body, transaction_id)
        log.debug("signal.saved", tenant=tenant.name, status=answer.status)
        return JSONResponse(answer.body, status_code=answer.status)

    async def post_call(self, request: Request, version: str) -> Response:
        tenant, body = await self._admit(request, version)
        answer = self.requests.call(tenant, body)
        log.debug("call.saved", tenant=tenant.name, status=answer.status)
        return JSONResponse(answer.body, status_code=answer.status)

    async def put_lookup_row(self, request: Request, version: str, table: str) -> Response:
        tenant, body = await self._admit(request, version)
        answer = self.requests.lookup_row(tenant, table, body)
        log.debug("lookup_row.saved", tenant=tenant.name, table=table,
                  calls=len(answer.body["updated_calls"]))
        return JSONResponse(answer.body, status_code=answer.status)

    async def post_transcript_message(self, request: Request, version: str) -> Response:
        tenant, body = await self._admit(request, version)
        answer = self.requests.transcript_message(tenant, body)
        log.debug("asapp_message.saved", tenant=tenant.name, status=answer.status)
        return JSONResponse(answer.body, status_code=answer.status)

    async def post_purchase(self, request: Request, version: str) -> Response:
        tenant, body = await self._admit(request, version)
        answer = self.requests.purchase(tenant, body)
        log.debug("asapp_purchase.saved", tenant=tenant.name, status=answer.status)
        return JSONResponse(answer.body, status_code=answer.status)

    async def transcripts(self, request: Request, version: str) -> Response:
        _check_version(version)
        tenant = self.gate.admit(request_token(request))
        query = parse_listing_request(request.query_params, TRANSCRIPT_MATCH)
        return JSONResponse(self.store.asapp.messages(tenant.name, query))

    async def purchases(self, request: Request, version: str) -> Response:
        _check_version(version)
        tenant = self.gate.admit(request_token(request))
        query = parse_listing_request(request.query_params, PURCHASE_MATCH)
        return JSONResponse(self.store.asapp.purchases(tenant.name, query))

    async def transactions_json(self, request: Request, version: str) -> Response:
        rows, _ = self._transactions(request, version)
        return Response(json.dumps(rows, ensure_ascii=False), media_type="application/json")

    async def transactions_csv(self, request: Request, version: str) -> Response:
        rows, columns = self._transactions(request, version)
        return Response(transactions_csv(rows, columns), media_type="text/csv; charset=utf-8")

    def _transactions(self, request: Request, version: str) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        _check_version(version)
        tenant = self.gate.admit(request_token(request))
        tz = ZoneInfo(tenant.timezone)
        wanted = parse_transactions_request(request.query_params, tz)
        rows = self.store.transactions(tenant.name, wanted.query)
        return [transaction_row(row, wanted.columns, tz) for row in rows], wanted.columns


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length", "0").strip()
    return length != "0" or "chunked" in request.headers.get("transfer-encoding", "").lower()


def _check_version(version: str) -> None:
    """Any ``YYYY-MM-DD`` version is served the same way; anything else is an unknown path."""
    parts = version.split("-")
    if [len(part) for part in parts] != list(_VERSION_DIGITS) or not all(part.isdigit() for part in parts):
        raise RecordNotFound(f"Unknown API version {version!r}; use a date such as {API_VERSION}")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing's own answers (no such path, no such method) in the API's error shape; a 405
    names in ``Allow`` every method of every route on that path, not only the first route's."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed: set[str] = set()
        for route in request.app.router.routes:
            match, _ = route.matches(request.scope)
            methods = getattr(route, "methods", None)
            if match is not Match.NONE and methods:
                allowed |= methods
        if allowed:
            headers["Allow"] = ", ".join(sorted(allowed))
    error = RoutingError(exc.status_code, str(exc.detail), headers)
    return await _api_error(request, error)


async def _unavailable(request: Request, exc: Exception) -> Response:
    """The database is unreachable (``core.db.outage`` refuses at once meanwhile): 503 with
    ``Retry-After``, logged; nothing of the request was committed."""
    log.error("api.unavailable", path=request.url.path, reason=str(exc))
    return await _api_error(request, ServiceUnavailable())


async def _validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own parameter checks, should one ever fire, answer like the API's (403)."""
    assert isinstance(exc, RequestValidationError)
    return await _api_error(request, RecordInvalid(f"invalid request: {exc.errors()!r:.200}"))


def create_app(settings: Settings, tenants: TenantStore, store: LedgerStore | None = None) -> FastAPI:
    """The API over ``store``; without one, the app opens ``settings.ledger_location`` and closes it on shutdown."""
    ledger = store or LedgerStore.open(settings.ledger_location)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if store is None:
            ledger.close()

    app = FastAPI(
        title="Signal API and Transactions API",
        version=API_VERSION,
        description="Invoca's Signal API and Transactions API over the call ledger; see docs/ledger.md.",
        lifespan=lifespan,
        docs_url=None,  # ledger.docs_page serves /docs and /redoc without a CDN
        redoc_url=None,
    )
    add_docs(app)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DatabaseUnavailable, _unavailable)
    endpoints = _Endpoints(settings, tenants, ledger)
    signal_answers = answers(
        "An existing signal was found (and updated if it differed)", 400, 401, 403, 404, 413, 429
    )
    for suffix in ("", ".json"):
        for method in ("POST", "PUT"):
            app.add_api_route(
                f"/api/{{version}}/transactions/signals{suffix}",
                endpoints.post_signal,
                methods=[method],
                summary="Create or update a signal on the call the search finds",
                status_code=201,
                responses=signal_answers,
                openapi_extra=json_body(SignalRequest),
            )
            app.add_api_route(
                f"/api/{{version}}/transactions/{{transaction_id}}/signals{suffix}",
                endpoints.post_transaction_signal,
                methods=[method],
                summary="Create or update a signal on the call with this transaction id",
                status_code=201,
                responses=signal_answers,
                openapi_extra=json_body(SignalRequest),
            )
        app.add_api_route(
            f"/api/{{version}}/calls{suffix}",
            endpoints.post_call,
            methods=["POST"],
            summary="Create or correct a call record (extension)",
            status_code=201,
            responses=answers(
                "The call existed (and was corrected if it differed)", 400, 401, 403, 404, 413, 429
            ),
            openapi_extra=json_body(CallRequest),
        )
    app.add_api_route(
        "/api/{version}/lookup_tables/{table}/rows",
        endpoints.put_lookup_row,
        methods=["PUT"],
        summary="Upsert a lookup row and apply its data to the calls it matches (extension)",
        status_code=201,
        responses=answers(
            "The row existed (and was replaced if it differed)", 400, 401, 403, 404, 413, 429
        ),
        openapi_extra=json_body(LookupRowRequest),
    )
    _add_asapp_routes(app, endpoints)
    app.add_api_route(
        "/api/{version}/transactions.json",
        _with_query_docs(endpoints.transactions_json),
        methods=["GET"],
        summary="Transactions after a cursor, as a JSON array",
        responses=answers("The rows after the cursor, oldest first", 401, 403, 404, 429),
    )
    app.add_api_route(
        "/api/{version}/transactions.csv",
        _with_query_docs(endpoints.transactions_csv),
        methods=["GET"],
        summary="Transactions after a cursor, as CSV",
        response_class=Response,
        responses=answers(
            "The rows after the cursor, oldest first", 401, 403, 404, 429, media_type="text/csv"
        ),
    )
    publish_models(app, [SignalRequest, CallRequest, LookupRowRequest, TranscriptRequest, PurchaseRequest])
    return app


def _add_asapp_routes(app: FastAPI, endpoints: _Endpoints) -> None:
    """The ASAPP records (extension): POST one record, GET them back a page at a time."""
    records = (
        ("transcripts", "a transcript message", TranscriptRequest, endpoints.post_transcript_message,
         endpoints.transcripts, TRANSCRIPT_MATCH, "Only this conversation's messages"),
        ("purchases", "a purchased product line", PurchaseRequest, endpoints.post_purchase,
         endpoints.purchases, PURCHASE_MATCH, "Only this transaction's lines"),
    )
    for name, what, model, post, listing, match, match_doc in records:
        for suffix in ("", ".json"):
            path = f"/api/{{version}}/asapp/{name}{suffix}"
            app.add_api_route(
                path, post, methods=["POST"],
                summary=f"Store {what}, or correct it (ASAPP extension)", status_code=201,
                responses=answers(
                    "The record existed (and was corrected if it differed)", 400, 401, 403, 404, 413, 429
                ),
                openapi_extra=json_body(model),
            )
            app.add_api_route(
                path, _with_listing_docs(listing, match, match_doc), methods=["GET"],
                summary=f"Stored records: {what} each, oldest first (ASAPP extension)",
                responses=answers("The records after the cursor, oldest first", 401, 403, 404, 429),
            )


Handler = Callable[[Request, str], Awaitable[Response]]


def _with_listing_docs(handler: Handler, match: str, match_doc: str) -> Handler:
    """Declare an ASAPP listing's query parameters for OpenAPI; the handler checks them itself."""

    async def endpoint(
        request: Request,
        version: str,
        start_after_id: str | None = Query(None, description="Cursor: the last record id already read"),
        limit: str | None = Query(None, description="Records per page, 1-4000 (default 1000)"),
        matching: str | None = Query(None, alias=match, description=match_doc),
        oauth_token: str | None = Query(None),
    ) -> Response:
        return await handler(request, version)

    return endpoint


def _with_query_docs(handler: Handler) -> Handler:
    """Declare the query parameters for OpenAPI; the handler reads and checks them itself."""

    async def endpoint(
        request: Request,
        version: str,
        start_after_transaction_id: str | None = Query(None, description="Cursor: the last id already read"),
        limit: str | None = Query(None, description="Rows per page, 1-4000 (default 1000)"),
        from_: str | None = Query(
            None, alias="from", description="First call date, YYYY-MM-DD (account time zone)"
        ),
        to: str | None = Query(None, description="Last call date, YYYY-MM-DD, inclusive"),
        transaction_type: str | None = Query(None, description="call, signal or post_call_event"),
        include_columns: str | None = Query(
            None, description="e.g. $invoca_default_columns,signals,custom_data"
        ),
        oauth_token: str | None = Query(None),
    ) -> Response:
        return await handler(request, version)

    return endpoint
