"""A Signal API request body becomes a store call and an answer: one code path for two doors.

The HTTP handlers (``ledger.app``) and the in-process bulk writer of the ingest pipeline (the
embedded destination) both call :class:`LedgerRequests`, so a row gets exactly the same status,
answer and error whichever door it came through. :meth:`LedgerRequests.apply` is the whole
request as the API sees it after routing: token, body bounds, path, body, store call.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

from core.config import ApiSettings
from core.tenants import Tenant, TenantStore
from ledger.auth import Gatekeeper
from ledger.bodies import parse_json, too_large
from ledger.errors import ApiError, RecordInvalid, RoutingError
from ledger.ids import format_transaction_id
from ledger.records import LookupRow, Outcome
from ledger.render import call_response, custom_data_list, lookup_response, signal_response
from ledger.schemas import (
    CallRequest,
    LookupRowRequest,
    PurchaseRequest,
    SignalRequest,
    TranscriptRequest,
    validate_body,
)
from ledger.store import LedgerStore

MAX_TABLE_NAME_LENGTH = 64
#: Outbox ids per ``IN (...)`` query, well below SQLite's limit on bound parameters.
_IDS_PER_QUERY = 500
MAX_PATH_ID_LENGTH = 255
HTTP_ERROR = 400


class Answer:
    """The API's answer to one request: its status and its JSON body.

    A body may be given as ``render``, made when first read: the in-process writer reads only
    the status and the transaction id, which a signal's answer knows without rendering.
    """

    __slots__ = ("_body", "_render", "_transaction_id", "status")

    def __init__(self, status: int, body: dict[str, Any] | None = None, *,
                 render: Callable[[], dict[str, Any]] | None = None, transaction_id: str | None = None) -> None:
        assert (body is None) != (render is None), "an answer has a body or a way to render one"
        self.status = status
        self._body = body
        self._render = render
        self._transaction_id = transaction_id

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            assert self._render is not None
            self._body = self._render()
        return self._body

    @property
    def transaction_id(self) -> str | None:
        """The transaction id a client reads: its signal's, its own, or its call's."""
        if self._transaction_id is None:
            for holder in (self.body.get("signal"), self.body, self.body.get("call")):
                if isinstance(holder, dict) and holder.get("transaction_id"):
                    self._transaction_id = str(holder["transaction_id"])
                    break
        return self._transaction_id


class LedgerRequests:
    """Signals, calls, lookup rows and ASAPP records from request bodies, through the ledger's
    stores."""

    def __init__(self, api: ApiSettings, tenants: TenantStore, store: LedgerStore) -> None:
        self.tenants = tenants
        self.store = store
        self.tolerance = api.match_tolerance_seconds
        self.max_body_bytes = api.max_body_bytes
        self.max_json_depth = api.max_json_depth
        # Inside :meth:`batch` only: each token's admission and each tenant's dictionary, read
        # once per batch (one moment, as one transaction), not once per row.
        self._admitted: dict[str, Tenant | ApiError] | None = None
        self._dictionaries: dict[str, dict[str, str]] | None = None
        self._seen: dict[tuple[int, str], Answer] = {}
        self._answered: list[tuple[int, str, str, int, str, float]] = []

    def signal(self, tenant: Tenant, body: Any, transaction_id: str | None = None) -> Answer:
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
        def render() -> dict[str, Any]:
            answer = signal_response(result.call, result.signal)
            if params.custom_data:
                answer["custom_data"] = custom_data_list(result.call.custom_data)
            return answer

        return Answer(status_of(result.outcome), render=render,
                      transaction_id=format_transaction_id(result.signal.transaction))

    def call(self, tenant: Tenant, body: Any) -> Answer:
        params = validate_body(CallRequest, body, ZoneInfo(tenant.timezone)).call
        result = self.store.save_call(tenant.name, params.complete_call_id(tenant.name), params.changes())
        return Answer(status_of(result.outcome), call_response(result.call))

    def lookup_row(self, tenant: Tenant, table: str, body: Any) -> Answer:
        if len(table) > MAX_TABLE_NAME_LENGTH:
            raise RecordInvalid(f"lookup table names are at most {MAX_TABLE_NAME_LENGTH} characters")
        params = validate_body(LookupRowRequest, body, ZoneInfo(tenant.timezone))
        data = self._dictionary_fields(tenant, params.data.items(), "data")
        row = LookupRow(table, params.primary_key, params.secondary_key or "", data)
        result = self.store.put_lookup_row(tenant.name, row)
        return Answer(status_of(result.outcome), lookup_response(result))

    def transcript_message(self, tenant: Tenant, body: Any) -> Answer:
        params = validate_body(TranscriptRequest, body, ZoneInfo(tenant.timezone))
        message, outcome = self.store.asapp.save_message(tenant.name, params.message.record())
        return Answer(status_of(outcome), {"message": message})

    def purchase(self, tenant: Tenant, body: Any) -> Answer:
        params = validate_body(PurchaseRequest, body, ZoneInfo(tenant.timezone))
        purchase, outcome = self.store.asapp.save_purchase(tenant.name, params.purchase.record())
        return Answer(status_of(outcome), {"purchase": purchase})

    def apply(self, gate: Gatekeeper, token: str, method: str, path: str, text: str) -> Answer:
        """One request as the API answers it; ``path`` is relative to ``/api/{version}``.

        In the document's order: the token (401, or 403 for a tenant that may not post), the
        body's size (413) and depth (400), then the data (403 / 404). Errors are answers here,
        as they are over HTTP; anything else (a bug, a broken database) is raised.
        """
        try:
            tenant = gate.admit(token)
        except ApiError as refused:
            return Answer(refused.status_code, refused.body())
        return self._answer(tenant, method, path, text)

    def _answer(self, tenant: Tenant, method: str, path: str, text: str) -> Answer:
        """:meth:`apply` once the token is admitted."""
        try:
            raw = text.encode("utf-8")
            if len(raw) > self.max_body_bytes:
                raise too_large(self.max_body_bytes)
            body = parse_json(raw, self.max_json_depth)
            if body is None:
                raise RecordInvalid("the request body must be a JSON object")
            return self._route(tenant, method, path, body)
        except ApiError as refused:
            return Answer(refused.status_code, refused.body())

    def _route(self, tenant: Tenant, method: str, path: str, body: Any) -> Answer:
        """The routes of ``ledger.app`` that write, matched the same way."""
        parts = path.strip("/").split("/")
        last = parts[-1].removesuffix(".json") if parts[-1] != "rows" else "rows"
        if parts[0] == "transactions" and method in ("POST", "PUT"):
            if len(parts) == 2 and last == "signals":
                return self.signal(tenant, body)
            if len(parts) == 3 and last == "signals":
                return self.signal(tenant, body, parts[1])
        if parts == ["calls"] or parts == ["calls.json"]:
            if method == "POST":
                return self.call(tenant, body)
        elif len(parts) == 3 and parts[0] == "lookup_tables" and parts[2] == "rows" and method == "PUT":
            return self.lookup_row(tenant, parts[1], body)
        elif len(parts) == 2 and parts[0] == "asapp" and last in ASAPP_RECORDS:
            if method == "POST":
                return ASAPP_RECORDS[last](self, tenant, body)
        else:
            raise RoutingError(404, "Not Found")
        raise RoutingError(405, "Method Not Allowed")

    @contextmanager
    def batch(self, queued: Sequence[tuple[int, str]] = ()) -> Iterator[sqlite3.Connection]:
        """One ledger transaction around many requests: each store call joins it.

        A batch is one moment: a token is admitted, and a tenant's data dictionary read, once in
        it. ``queued`` names the requests :meth:`apply_once` will be given (outbox id and
        content key): the answers remembered for them are read in one query, and the answers
        given are remembered in one statement at the end. Only the in-process writer, with a
        ``LedgerRequests`` of its own, makes batches; the HTTP handlers never do, so each of
        their requests reads both afresh.
        """
        with self.store.batch() as conn:
            self._admitted, self._dictionaries = {}, {}
            self._seen = _remembered(conn, queued)
            self._answered = []
            try:
                yield conn
                conn.executemany(
                    "INSERT INTO delivered_requests (outbox_id, request_key, tenant, status, answer,"
                    " recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
                    self._answered,
                )
            finally:
                self._admitted = self._dictionaries = None
                self._seen, self._answered = {}, []

    def apply_once(self, conn: sqlite3.Connection, gate: Gatekeeper, tenant: str, token: str,
                   request_id: int, key: str, method: str, path: str, text: str) -> Answer:
        """:meth:`apply` inside :meth:`batch`, answered from memory if this request was applied.

        ``request_id`` and ``key`` name one queued request of ``tenant`` (its outbox id and content
        key), one of those the batch was opened for. Its answer is remembered in the transaction
        that applied it, so a batch replayed after a crash between this commit and the caller's
        own gets the first answers back and writes nothing (a correction later in the same file
        is not undone and redone). The token is checked first and a refusal (401, or 403 for a
        tenant that may not post) is not remembered: the row is tried again once the token is
        fixed. A refused request writes nothing: whatever the store began for it is rolled back
        to its savepoint.
        """
        admitted = self._admit_once(gate, token)
        if isinstance(admitted, ApiError):  # about the token, not the request: never remembered
            return Answer(admitted.status_code, admitted.body())
        seen = self._seen.get((request_id, key))
        if seen is not None:
            return seen
        with self.store.savepoint(conn) as undo:
            answer = self._answer(admitted, method, path, text)
            if answer.status >= HTTP_ERROR:
                undo()
        self._answered.append(
            (request_id, key, tenant, answer.status, json.dumps(_gist(answer)), time.time())
        )
        return answer

    def _admit_once(self, gate: Gatekeeper, token: str) -> Tenant | ApiError:
        """The gate's answer for ``token``, asked once per batch."""
        memo = self._admitted if self._admitted is not None else {}
        if token not in memo:
            try:
                memo[token] = gate.admit(token)
            except ApiError as refused:
                memo[token] = refused
        return memo[token]

    def forget_delivered(self, before: float) -> int:
        """Drop remembered answers recorded before ``before`` (epoch seconds); a replay comes
        at the next run, long before."""
        with self.store.db.transaction() as conn:
            return conn.execute("DELETE FROM delivered_requests WHERE recorded_at < ?", (before,)).rowcount

    def _dictionary_fields(
        self, tenant: Tenant, items: Iterable[tuple[str, str]], where: str
    ) -> dict[str, str]:
        """``items`` keyed by the data dictionary's spelling of each field name."""
        items = list(items)
        if not items:
            return {}
        fields = self._dictionaries.get(tenant.name) if self._dictionaries is not None else None
        if fields is None:
            fields = {field.casefold(): field for field in self.tenants.dictionary(tenant.name)}
            if self._dictionaries is not None:
                self._dictionaries[tenant.name] = fields
        data: dict[str, str] = {}
        for name, value in items:
            field = fields.get(name.casefold())
            if field is None:
                raise RecordInvalid(f"{where}: field {name!r} is not in the data dictionary of this account")
            data[field] = value
        return data


#: The ASAPP records by the last part of their path (``/asapp/transcripts``, ``/asapp/purchases``).
ASAPP_RECORDS = {"transcripts": LedgerRequests.transcript_message, "purchases": LedgerRequests.purchase}


def _remembered(conn: sqlite3.Connection, queued: Sequence[tuple[int, str]]) -> dict[tuple[int, str], Answer]:
    """The answers ``delivered_requests`` holds for these queued requests, by (outbox id, key)."""
    wanted = dict(queued)
    seen: dict[tuple[int, str], Answer] = {}
    ids = list(wanted)
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[start:start + _IDS_PER_QUERY]
        for row in conn.execute(
            "SELECT outbox_id, request_key, status, answer FROM delivered_requests"
            f" WHERE outbox_id IN ({', '.join('?' * len(chunk))})",
            chunk,
        ):
            if wanted[row["outbox_id"]] == row["request_key"]:
                seen[(row["outbox_id"], row["request_key"])] = Answer(int(row["status"]), json.loads(row["answer"]))
    return seen


def _gist(answer: Answer) -> dict[str, Any]:
    """What a replay needs of an answer: its errors, or the transaction id a client reads."""
    if answer.status >= HTTP_ERROR and "errors" in answer.body:
        return {"errors": answer.body["errors"]}
    return {} if answer.transaction_id is None else {"transaction_id": answer.transaction_id}


def status_of(outcome: Outcome) -> int:
    return 201 if outcome is Outcome.CREATED else 200

