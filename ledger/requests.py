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
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any
from zoneinfo import ZoneInfo

from core.config import ApiSettings
from core.tenants import Tenant, TenantStore
from ledger.auth import Gatekeeper
from ledger.errors import ApiError, RecordInvalid
from ledger.ids import format_transaction_id
from ledger.plans import (
    BodyLimits,
    CallPlan,
    LookupPlan,
    Plan,
    Refused,
    SignalPlan,
    TranscriptPlan,
    read_call,
    read_lookup_row,
    read_purchase,
    read_request,
    read_signal,
    read_transcript,
)
from ledger.records import CallResult, LookupRow, Outcome, SignalResult, SignalWrite
from ledger.render import call_response, custom_data_list, lookup_response, signal_response
from ledger.store import LedgerStore

#: Outbox ids per ``IN (...)`` query, well below SQLite's limit on bound parameters.
_IDS_PER_QUERY = 500
HTTP_ERROR = 400


class Answer:
    """The API's answer to one request: its status and its JSON body.

    A body may be given as ``render``, made when first read: the in-process writer reads only
    the status and the transaction id, which a signal's or a call's answer knows without
    rendering.
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
    def succeeded(self) -> bool:
        """Not an error (the ledger answers 200 or 201): the request was carried out, or had
        been, identically."""
        return self.status < HTTP_ERROR

    @property
    def transaction_id(self) -> str | None:
        """The transaction id a client reads: its signal's, its own, or its call's."""
        if self._transaction_id is None:
            for holder in (self.body.get("signal"), self.body, self.body.get("call")):
                if isinstance(holder, dict) and holder.get("transaction_id"):
                    self._transaction_id = str(holder["transaction_id"])
                    break
        return self._transaction_id


@dataclass(frozen=True)
class Queued:
    """A queued request for :meth:`LedgerRequests.apply_queued`: whose it is, the token it is
    sent with, its outbox id and content key, and what it asks; ``planned`` is the request
    already read (:func:`ledger.plans.plan_batch`), the time zone it was read in first."""

    tenant: str
    token: str
    request_id: int
    key: str
    method: str
    path: str
    text: str
    planned: tuple[str, Plan | Refused] | None = None


class LedgerRequests:
    """Signals, calls, lookup rows and ASAPP records from request bodies, through the ledger's
    stores."""

    def __init__(self, api: ApiSettings, tenants: TenantStore, store: LedgerStore) -> None:
        self.tenants = tenants
        self.store = store
        self.tolerance = api.match_tolerance_seconds
        self.limits = BodyLimits(api.max_body_bytes, api.max_json_depth)
        # Inside :meth:`batch` only: each token's admission and each tenant's dictionary, read
        # once per batch (one moment, as one transaction), not once per row.
        self._admitted: dict[str, Tenant | ApiError] | None = None
        self._dictionaries: dict[str, dict[str, str]] | None = None
        self._seen: dict[tuple[int, str], Answer] = {}
        self._answered: list[tuple[int, str, str, int, str, float]] = []

    def signal(self, tenant: Tenant, body: Any, transaction_id: str | None = None) -> Answer:
        return self.carry_out(tenant, read_signal(body, ZoneInfo(tenant.timezone), transaction_id))

    def call(self, tenant: Tenant, body: Any) -> Answer:
        return self.carry_out(tenant, read_call(body, tenant.name, ZoneInfo(tenant.timezone)))

    def lookup_row(self, tenant: Tenant, table: str, body: Any) -> Answer:
        return self.carry_out(tenant, read_lookup_row(body, table, ZoneInfo(tenant.timezone)))

    def transcript_message(self, tenant: Tenant, body: Any) -> Answer:
        return self.carry_out(tenant, read_transcript(body, ZoneInfo(tenant.timezone)))

    def purchase(self, tenant: Tenant, body: Any) -> Answer:
        return self.carry_out(tenant, read_purchase(body, ZoneInfo(tenant.timezone)))

    def carry_out(self, tenant: Tenant, plan: Plan) -> Answer:
        """What is left of a request once read: the data dictionary and the store."""
        if isinstance(plan, SignalPlan):
            return self._signal(tenant, plan)
        if isinstance(plan, CallPlan):
            return _call_answer(self.store.save_call(tenant.name, plan.complete_call_id, plan.changes))
        if isinstance(plan, LookupPlan):
            data = self._dictionary_fields(tenant, plan.data, "data")
            row = LookupRow(plan.table, plan.primary_key, plan.secondary_key, data)
            looked_up = self.store.put_lookup_row(tenant.name, row)
            return Answer(status_of(looked_up.outcome), lookup_response(looked_up))
        if isinstance(plan, TranscriptPlan):
            message, outcome = self.store.asapp.save_message(tenant.name, plan.record)
            return Answer(status_of(outcome), {"message": message})
        purchase, outcome = self.store.asapp.save_purchase(tenant.name, plan.record)
        return Answer(status_of(outcome), {"purchase": purchase})

    def _signal(self, tenant: Tenant, plan: SignalPlan) -> Answer:
        custom_data = self._dictionary_fields(tenant, plan.custom_data, "custom_data")
        result = self.store.save_signal(tenant.name, plan.search, self.tolerance, plan.changes, custom_data)
        return _signal_answer(plan, result)

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

    def _answer(self, tenant: Tenant, method: str, path: str, text: str,
                planned: Plan | Refused | None = None) -> Answer:
        """:meth:`apply` once the token is admitted; ``planned`` is the request already read
        (:func:`ledger.plans.plan_batch`) for this tenant in its time zone."""
        try:
            if planned is None:
                planned = read_request(self.limits, tenant.name, ZoneInfo(tenant.timezone), method, path, text)
            if isinstance(planned, Refused):
                return Answer(planned.status, planned.body)
            return self.carry_out(tenant, planned)
        except ApiError as refused:
            return Answer(refused.status_code, refused.body())

    @contextmanager
    def batch(self, queued: Sequence[tuple[int, str]] = ()) -> Iterator[sqlite3.Connection]:
        """One ledger transaction around many requests: each store call joins it.

        A batch is one moment: a token is admitted, and a tenant's data dictionary read, once in
        it. ``queued`` names the requests :meth:`apply_queued` will be given (outbox id and
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

    def apply_queued(self, conn: sqlite3.Connection, gate: Gatekeeper,
                     queued: Sequence[Queued]) -> list[Answer]:
        """:meth:`apply` for each request, inside :meth:`batch`; answered from memory if applied.

        Each request is one of those the batch was opened for. Its answer is remembered in the
        transaction that applied it, so a batch replayed after a crash between this commit and
        the caller's own gets the first answers back and writes nothing (a correction later in
        the same file is not undone and redone). The token is checked first and a refusal (401,
        or 403 for a tenant that may not post) is not remembered: the row is tried again once
        the token is fixed. A refused request writes nothing. Consecutive signals of one tenant
        are saved together (:meth:`LedgerStore.save_signals`, each table written once), and so
        are consecutive calls (:meth:`LedgerStore.save_calls`); any other request is carried out
        alone, rolled back to its savepoint if refused.
        """
        answers: list[Answer | None] = [None] * len(queued)
        # Consecutive signals, or consecutive calls, of one tenant (one list holds rows at a time).
        signals: list[tuple[int, SignalPlan, dict[str, str]]] = []
        calls: list[tuple[int, CallPlan]] = []
        tenant_of_together = ""

        def save_together() -> None:
            if signals:
                results = self.store.save_signals(tenant_of_together, self.tolerance, [
                    SignalWrite(plan.search, plan.changes, custom_data) for _, plan, custom_data in signals])
                for (index, plan, _), result in zip(signals, results, strict=True):
                    answers[index] = self._remember(queued[index], _signal_answer(plan, result))
            if calls:
                saved = self.store.save_calls(tenant_of_together, [
                    (plan.complete_call_id, plan.changes) for _, plan in calls])
                for (index, _), call in zip(calls, saved, strict=True):
                    answers[index] = self._remember(queued[index], _call_answer(call))
            signals.clear()
            calls.clear()

        for index, request in enumerate(queued):
            admitted = self.admit_once(gate, request.token)
            if isinstance(admitted, ApiError):  # about the token, not the request: never remembered
                answers[index] = Answer(admitted.status_code, admitted.body())
                continue
            seen = self._seen.get((request.request_id, request.key))
            if seen is not None:
                answers[index] = seen
                continue
            try:
                plan = self._plan(admitted, request)
                custom_data = (self._dictionary_fields(admitted, plan.custom_data, "custom_data")
                               if isinstance(plan, SignalPlan) else {})
            except ApiError as refused:
                answers[index] = self._remember(request, Answer(refused.status_code, refused.body()))
                continue
            if admitted.name != tenant_of_together or not isinstance(plan, SignalPlan if signals else CallPlan):
                save_together()
            tenant_of_together = admitted.name
            if isinstance(plan, SignalPlan):
                signals.append((index, plan, custom_data))
                continue
            if isinstance(plan, CallPlan):
                calls.append((index, plan))
                continue
            with self.store.savepoint(conn) as undo:
                answer = self._answer(admitted, request.method, request.path, request.text, plan)
                if not answer.succeeded:
                    undo()
            answers[index] = self._remember(request, answer)
        save_together()
        given = [answer for answer in answers if answer is not None]
        assert len(given) == len(queued), "every request is answered"
        return given

    def _plan(self, tenant: Tenant, request: Queued) -> Plan | Refused:
        """``request`` read: as read ahead (:func:`ledger.plans.plan_batch`) if that was for
        ``tenant`` in its time zone, else now."""
        if request.planned is not None and request.tenant == tenant.name and request.planned[0] == tenant.timezone:
            return request.planned[1]
        return read_request(self.limits, tenant.name, ZoneInfo(tenant.timezone), request.method, request.path,
                            request.text)

    def _remember(self, request: Queued, answer: Answer) -> Answer:
        self._answered.append(
            (request.request_id, request.key, request.tenant, answer.status, _gist(answer), time.time())
        )
        return answer

    def admit_once(self, gate: Gatekeeper, token: str) -> Tenant | ApiError:
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


def _call_answer(result: CallResult | ApiError) -> Answer:
    """The API's answer to a call request, rendered when read."""
    if isinstance(result, ApiError):
        return Answer(result.status_code, result.body())
    return Answer(status_of(result.outcome), render=lambda: call_response(result.call),
                  transaction_id=result.call.transaction_id)


def _signal_answer(plan: SignalPlan, result: SignalResult | ApiError) -> Answer:
    """The API's answer to a signal request, rendered when read."""
    if isinstance(result, ApiError):
        return Answer(result.status_code, result.body())

    def render() -> dict[str, Any]:
        answer = signal_response(result.call, result.signal)
        if plan.custom_data:
            answer["custom_data"] = custom_data_list(result.call.custom_data)
        return answer

    return Answer(status_of(result.outcome), render=render,
                  transaction_id=format_transaction_id(result.signal.transaction))


def _gist(answer: Answer) -> str:
    """What a replay needs of an answer, as JSON: its errors, or the transaction id a client
    reads."""
    if not answer.succeeded and "errors" in answer.body:
        return json.dumps({"errors": answer.body["errors"]})
    if answer.transaction_id is None:
        return "{}"
    return f'{{"transaction_id": {encode_basestring(answer.transaction_id)}}}'


def status_of(outcome: Outcome) -> int:
    return 201 if outcome is Outcome.CREATED else 200

