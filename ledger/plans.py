"""A write request read and validated without the database: its :data:`Plan`.

Reading a request (its size and depth, the JSON, the route, every parameter) needs only the
body, the path and the tenant's name and time zone; what is left (the data dictionary, the store)
needs the ledger. Keeping the two apart lets the in-process writer read the next batch on another
core while the ledger writes this one (:func:`plan_batch` runs in a child), with one reading
code for both doors: ``ledger.requests`` reads every request, the HTTP API's included, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from ledger.bodies import NUL_REFUSED, parse_json, too_large
from ledger.errors import ApiError, RecordInvalid, RoutingError
from ledger.records import CallSearch
from ledger.schemas import (
    CallRequest,
    LookupRowRequest,
    PurchaseRequest,
    SignalRequest,
    TranscriptRequest,
    validate_body,
)

MAX_TABLE_NAME_LENGTH = 64
MAX_PATH_ID_LENGTH = 255


@dataclass(frozen=True)
class SignalPlan:
    search: CallSearch
    changes: dict[str, Any]
    #: Custom data as the request names it (the data dictionary's spelling comes later).
    custom_data: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CallPlan:
    complete_call_id: str
    changes: dict[str, Any]


@dataclass(frozen=True)
class LookupPlan:
    table: str
    primary_key: str
    secondary_key: str
    data: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TranscriptPlan:
    record: dict[str, Any]


@dataclass(frozen=True)
class PurchasePlan:
    record: dict[str, Any]


Plan = SignalPlan | CallPlan | LookupPlan | TranscriptPlan | PurchasePlan


@dataclass(frozen=True)
class Refused:
    """A request refused while it was read: the answer's status and body."""

    status: int
    body: dict[str, Any]

    @classmethod
    def of(cls, error: ApiError) -> Refused:
        return cls(error.status_code, error.body())


@dataclass(frozen=True)
class BodyLimits:
    max_body_bytes: int
    max_json_depth: int


@dataclass(frozen=True)
class PlanJob:
    """Requests to read in a child: (tenant, time zone name, method, path, body text) each."""

    limits: BodyLimits
    requests: Sequence[tuple[str, str, str, str, str]]


def plan_batch(job: PlanJob) -> list[Plan | Refused]:
    """Every request of ``job`` read: its plan, or why it was refused."""
    zones: dict[str, ZoneInfo] = {}
    plans: list[Plan | Refused] = []
    for tenant, zone_name, method, path, text in job.requests:
        zone = zones.get(zone_name) or zones.setdefault(zone_name, ZoneInfo(zone_name))
        try:
            plans.append(read_request(job.limits, tenant, zone, method, path, text))
        except ApiError as refused:
            plans.append(Refused.of(refused))
    return plans


def read_request(limits: BodyLimits, tenant: str, zone: ZoneInfo, method: str, path: str, text: str) -> Plan:
    """A write request as the API reads it: body bounds (413, 400), then the route (404, 405),
    then the data (403); ``path`` is relative to ``/api/{version}``."""
    raw = text.encode("utf-8")
    if len(raw) > limits.max_body_bytes:
        raise too_large(limits.max_body_bytes)
    body = parse_json(raw, limits.max_json_depth)
    if body is None:
        raise RecordInvalid("the request body must be a JSON object")
    parts = path.strip("/").split("/")
    last = parts[-1].removesuffix(".json") if parts[-1] != "rows" else "rows"
    if parts[0] == "transactions" and method in ("POST", "PUT"):
        if len(parts) == 2 and last == "signals":
            return read_signal(body, zone)
        if len(parts) == 3 and last == "signals":
            return read_signal(body, zone, parts[1])
    if parts == ["calls"] or parts == ["calls.json"]:
        if method == "POST":
            return read_call(body, tenant, zone)
    elif len(parts) == 3 and parts[0] == "lookup_tables" and parts[2] == "rows" and method == "PUT":
        return read_lookup_row(body, parts[1], zone)
    elif len(parts) == 2 and parts[0] == "asapp" and last in ("transcripts", "purchases"):
        if method == "POST":
            return read_transcript(body, zone) if last == "transcripts" else read_purchase(body, zone)
    else:
        raise RoutingError(404, "Not Found")
    raise RoutingError(405, "Method Not Allowed")


def read_signal(body: Any, zone: ZoneInfo, transaction_id: str | None = None) -> SignalPlan:
    if transaction_id is not None and not 0 < len(transaction_id.strip()) <= MAX_PATH_ID_LENGTH:
        raise RecordInvalid(f"transaction_id in the path must be 1 to {MAX_PATH_ID_LENGTH} characters")
    if transaction_id is not None and "\x00" in transaction_id:
        raise RecordInvalid(NUL_REFUSED.format(where="transaction_id in the path"))
    params = validate_body(SignalRequest, body, zone)
    return SignalPlan(params.search.to_search(transaction_id), params.signal.changes(),
                      tuple((datum.name, datum.value) for datum in params.custom_data))


def read_call(body: Any, tenant: str, zone: ZoneInfo) -> CallPlan:
    params = validate_body(CallRequest, body, zone).call
    return CallPlan(params.complete_call_id(tenant), params.changes())


def read_lookup_row(body: Any, table: str, zone: ZoneInfo) -> LookupPlan:
    if len(table) > MAX_TABLE_NAME_LENGTH:
        raise RecordInvalid(f"lookup table names are at most {MAX_TABLE_NAME_LENGTH} characters")
    if "\x00" in table:
        raise RecordInvalid(NUL_REFUSED.format(where="the lookup table name"))
    params = validate_body(LookupRowRequest, body, zone)
    return LookupPlan(table, params.primary_key, params.secondary_key or "", tuple(params.data.items()))


def read_transcript(body: Any, zone: ZoneInfo) -> TranscriptPlan:
    return TranscriptPlan(validate_body(TranscriptRequest, body, zone).message.record())


def read_purchase(body: Any, zone: ZoneInfo) -> PurchasePlan:
    return PurchasePlan(validate_body(PurchaseRequest, body, zone).purchase.record())
