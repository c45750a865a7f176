"""The ASGI application: Signal API, Transactions API, and the calls and lookup-table extensions.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
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
from core.logs import get_logger
from core.tenants import Tenant, TenantStore
from ledger import API_VERSION
from ledger.auth import Gatekeeper, request_token
from ledger.bodies import parse_json, read_body
from ledger.errors import (
    ApiError,
    PayloadTooLarge,
    RecordInvalid,
    RecordNotFound,
    RoutingError,
)
from ledger.openapi import answers, json_body, publish_models
from ledger.queries import parse_transactions_request
from ledger.ratelimit import SlidingWindowLimiter
from ledger.records import LookupRow, Outcome
from ledger.render import (
    call_response,
    custom_data_list,
    lookup_response,
    signal_response,
    transaction_row,
    transactions_csv,
)
from ledger.schemas import CallRequest, LookupRowRequest, SignalRequest, validate_body
from ledger.store import LedgerStore

log = get_logger("ledger.app")

MAX_TABLE_NAME_LENGTH = 64
MAX_PATH_ID_LENGTH = 255
_VERSION_DIGITS = (4, 2, 2)


class _Endpoints:
    """The handlers, sharing the stores, the gatekeeper and the settings."""

    def __init__(self, settings: Settings, tenants: TenantStore, store: LedgerStore) -> None:
        self.tenants = tenants
        self.store = store
        self.tolerance = settings.api.match_tolerance_seconds
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
        if transaction_id is not None and not 0 < len(transaction_id.strip()) <= MAX_PATH_ID_LENGTH:
            raise RecordInvalid(
                f"transaction_id in the path must be 1 to {MAX_PATH_ID_LENGTH} characters"
            )
        params = validate_body(SignalRequest, body, ZoneInfo(tenant.timezone))
        search = params.search.to_search(transaction_id)
        custom_data = self._dictionary_fields(
            tenant, ((d.name, d.value) for d in params.custom_data), "custom_data"
        )
        result = self.store.save_signal(
            tenant.name, search, self.tolerance, params.signal.changes(), custom_data
        )
        log.debug("signal.saved", tenant=tenant.name, outcome=result.outcome.value)
        answer = signal_response(result.call, result.signal)
        if params.custom_data:
            answer["custom_data"] = custom_data_list(result.call.custom_data)
        return JSONResponse(answer, status_code=_status(result.outcome))

    async def post_call(self, request: Request, version: str) -> Response:
        tenant, body = await self._admit(request, version)
        params = validate_body(CallRequest, body, ZoneInfo(tenant.timezone)).call
        result = self.store.save_call(tenant.name, params.complete_call_id(tenant.name), params.changes())
        log.debug("call.saved", tenant=tenant.name, outcome=result.outcome.value)
        return JSONResponse(call_response(result.call), status_code=_status(result.outcome))

    async def put_lookup_row(self, request: Request, version: str, table: str) -> Response:
        tenant, body = await self._admit(request, version)
        if len(table) > MAX_TABLE_NAME_LENGTH:
            raise RecordInvalid(f"lookup table names are at most {MAX_TABLE_NAME_LENGTH} characters")
        params = validate_body(LookupRowRequest, body, ZoneInfo(tenant.timezone))
        data = self._dictionary_fields(tenant, params.data.items(), "data")
        row = LookupRow(table, params.primary_key, params.secondary_key or "", data)
        result = self.store.put_lookup_row(tenant.name, row)
        log.debug("lookup_row.saved", tenant=tenant.name, table=table, calls=len(result.updated_calls))
        return JSONResponse(lookup_response(result), status_code=_status(result.outcome))

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

    def _dictionary_fields(
        self, tenant: Tenant, items: Iterable[tuple[str, str]], where: str
    ) -> dict[str, str]:
        """``items`` keyed by the data dictionary's spelling of each field name."""
        items = list(items)
        if not items:
            return {}
        fields = {field.casefold(): field for field in self.tenants.dictionary(tenant.name)}
        data: dict[str, str] = {}
        for name, value in items:
            field = fields.get(name.casefold())
            if field is None:
                raise RecordInvalid(f"{where}: field {name!r} is not in the data dictionary of this account")
            data[field] = value
        return data


def _status(outcome: Outcome) -> int:
    return 201 if outcome is Outcome.CREATED else 200


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


async def _validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own parameter checks, should one ever fire, answer like the API's (403)."""
    assert isinstance(exc, RequestValidationError)
    return await _api_error(request, RecordInvalid(f"invalid request: {exc.errors()!r:.200}"))


def create_app(settings: Settings, tenants: TenantStore, store: LedgerStore | None = None) -> FastAPI:
    """The API over ``store``; without one, the app opens ``settings.ledger_db`` and closes it on shutdown."""
    ledger = store or LedgerStore.open(settings.ledger_db)

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
    )
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
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
    publish_models(app, [SignalRequest, CallRequest, LookupRowRequest])
    return app


Handler = Callable[[Request, str], Awaitable[Response]]


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
