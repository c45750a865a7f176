"""The registry of request kinds: everything the pipeline knows about a signal, a call, a lookup
row or an ASAPP record (a transcript message, a purchase), in one frozen description per kind.

A row of a feed becomes one request of the feed's kind. Each ``Kind`` declares its field sections
(fixed fields with their value types, and one *open* section whose field names are free), the
targets a row cannot do without and the cross-column rules of its rows, the request it becomes
(method, path, and how the body is assembled from the sections), and its posting rank. The other
modules read this registry and hold no table of their own: ``fields`` (targets and their types),
``feeds`` (what a feed must give), ``validate`` (file and row checks), ``mapping`` (the request)
and the processor (posting order). Adding a kind means adding a ``Kind`` to ``KINDS`` below, and
its template under ``templates/``; nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple, cast

__all__ = [
    "KINDS",
    "LAST_RANK",
    "Body",
    "Kind",
    "NotBefore",
    "OneOf",
    "Target",
    "get",
    "posting_rank",
]

#: The sections of a request as the mapping collects them: section, then field, then value.
Sections = dict[str, dict[str, Any]]
Body = dict[str, Any]


class Target(NamedTuple):
    """Where a value goes in a request: ``section.field``. A tuple, as it is looked up per value."""

    section: str
    field: str

    def __str__(self) -> str:
        return f"{self.section}.{self.field}"


@dataclass(frozen=True)
class OneOf:
    """A row needs a value in at least one of ``targets`` (as a signal needs a key to find its
    call). The messages are format strings: ``{targets}`` for the feed (``a, b or c``),
    ``{fields}`` for a file (``a, b, c``), ``{columns}`` for a row (the file's column names)."""

    targets: tuple[Target, ...]
    feed_error: str
    file_error: str
    row_error: str


@dataclass(frozen=True)
class NotBefore:
    """A row's ``later`` value may not be before its ``earlier`` one (both timestamps)."""

    later: Target
    earlier: Target


@dataclass(frozen=True)
class Kind:
    """One kind of request; see the module docstring.

    ``fixed`` holds the fixed sections, each field with its value type (``ingest.rows.coercion``);
    the body's sections are these, in this order, then ``open_section``. ``dictionary`` says the
    open section's field names must be in the tenant's data dictionary. ``path`` is relative to the
    destination's API base; a kind with ``table`` fills a named table, put in the path as
    ``{table}``. ``build`` makes the body from the sections a row fills (ValueError when it
    cannot); ``numbers`` are the targets sent as JSON numbers, every other value as text.
    ``rank`` orders posting: lower first, so what others refer to is posted before them.
    """

    name: str
    fixed: Mapping[str, Mapping[str, str]]
    open_section: str
    open_type: str
    dictionary: bool
    required: tuple[Target, ...]
    method: str
    path: str
    build: Callable[[Sections], Body]
    rank: int
    one_of: tuple[OneOf, ...] = ()
    not_before: tuple[NotBefore, ...] = ()
    numbers: frozenset[Target] = frozenset()
    table: bool = False

    @property
    def sections(self) -> tuple[str, ...]:
        """The body's sections in order: the fixed ones, then the open one."""
        return (*self.fixed, self.open_section)

    def request_path(self, table: str | None) -> str:
        """The path of this kind's requests; ``table`` for a kind that fills a table."""
        return self.path.format(table=table) if self.table else self.path


NO_SIGNAL_NAME = "the row has no signal name"


def _signal_body(sections: Sections) -> Body:
    """``{"search": {...}, "signal": {...}, "custom_data": [{"name", "value"}]}``."""
    signal = sections.get("signal", {})
    if not signal.get("name"):
        raise ValueError(NO_SIGNAL_NAME)
    body: Body = {"search": sections.get("search", {}), "signal": signal}
    custom = sections.get("custom_data")
    if custom:
        body["custom_data"] = [{"name": name, "value": value} for name, value in custom.items()]
    return body


def _call_body(sections: Sections) -> Body:
    """``{"call": {external_id, start_time, duration_in_seconds, calling_phone_number?,
    attributes}}``; ``external_id`` is ``customer_id|call_start``, so a re-sent row names the same
    call."""
    fields = sections.get("call", {})
    missing = [name for name in ("customer_id", "call_start", "call_end") if not fields.get(name)]
    if missing:
        raise ValueError(f"the row has no {', '.join(missing)}")
    start, end = fields["call_start"], fields["call_end"]
    duration = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    if duration < 0:
        raise ValueError(f"call_end ({end}) is before call_start ({start})")
    call: Body = {
        "external_id": f"{fields['customer_id']}|{start}",
        "start_time": start,
        "duration_in_seconds": int(duration),
    }
    if fields.get("calling_phone_number"):
        call["calling_phone_number"] = fields["calling_phone_number"]
    call["attributes"] = sections.get("attributes", {})
    return {"call": call}


def _lookup_body(sections: Sections) -> Body:
    """``{"primary_key": ..., "secondary_key"?: ..., "data": {...}}``."""
    keys = sections.get("lookup", {})
    if not keys.get("primary_key"):
        raise ValueError("the row has no primary_key")
    body: Body = {"primary_key": keys["primary_key"]}
    if keys.get("secondary_key"):
        body["secondary_key"] = keys["secondary_key"]
    body["data"] = sections.get("data", {})
    return body


def _record_body(section: str, required: tuple[Target, ...]) -> Callable[[Sections], Body]:
    """``{section: {...fields, "attributes"?: {...}}}``: one ASAPP record, as the ledger's
    extension takes it (docs/ledger.md); the row's other columns are its attributes."""
    names = [target.field for target in required]

    def build(sections: Sections) -> Body:
        fields = sections.get(section, {})
        missing = [name for name in names if fields.get(name) in (None, "")]
        if missing:
            raise ValueError(f"the row has no {', '.join(missing)}")
        record: Body = dict(fields)
        if sections.get("attributes"):
            record["attributes"] = sections["attributes"]
        return {section: record}

    return build


def _frozen(sections: dict[str, dict[str, str]]) -> Mapping[str, Mapping[str, str]]:
    return MappingProxyType({name: MappingProxyType(fields) for name, fields in sections.items()})


SIGNAL = Kind(
    name="signal",
    fixed=_frozen({
        # [invoca-signal-api.rst] "Search Parameters", plus the Call Record ID of the SFTP upload.
        "search": {
            "transaction_id": "string",
            "call_record_id": "string",
            "call_start_time": "timestamp",
            "calling_phone_number": "phone",
            "duration_in_seconds": "integer",
            "advertiser_id_from_network": "string",
            "advertiser_campaign_id_from_network": "string",
            "network_id": "string",
        },
        # [invoca-signal-api.rst] "Signal Parameters".
        "signal": {
            "name": "string",
            "partner_unique_id": "string",
            "description": "string",
            "occurred_at_time": "timestamp",
            "sale_amount": "money",
            "value": "boolean01",
            "custom_parameter_1": "string",
            "custom_parameter_2": "string",
            "custom_parameter_3": "string",
        },
    }),
    # Custom data fields must exist in the tenant's data dictionary; signal names may be new
    # [invoca-sftp-signal-upload.txt].
    open_section="custom_data",
    open_type="string",
    dictionary=True,
    required=(Target("signal", "name"),),
    one_of=(
        OneOf(
            targets=(
                Target("search", "transaction_id"),
                Target("search", "call_record_id"),
                Target("search", "call_start_time"),
            ),
            feed_error="no column gives {targets}, so no row could find its call",
            file_error="no column of this file gives {fields}: rows could not find their call",
            row_error="no {columns}: the row cannot find its call",
        ),
    ),
    # [invoca-signal-api.rst] ``POST /transactions/signals.json``; re-posting a signal is a no-op.
    method="POST",
    path="/transactions/signals.json",
    build=_signal_body,
    numbers=frozenset({Target("search", "duration_in_seconds")}),
    # A signal can only find a call the ledger already has.
    rank=2,
)

LOOKUP = Kind(
    name="lookup",
    fixed=_frozen({"lookup": {"primary_key": "string", "secondary_key": "string"}}),
    # Marketing data: its fields must be in the data dictionary.
    open_section="data",
    open_type="string",
    dictionary=True,
    required=(Target("lookup", "primary_key"),),
    # An upsert: the row is replaced in place.
    method="PUT",
    path="/lookup_tables/{table}/rows",
    build=_lookup_body,
    table=True,
    rank=1,
)

CALL = Kind(
    name="call",
    fixed=_frozen({
        "call": {
            "customer_id": "string",
            "call_start": "iso_utc",
            "call_end": "iso_utc",
            "calling_phone_number": "phone",
        },
    }),
    # Call attributes are free text and need not be in the dictionary.
    open_section="attributes",
    open_type="text",
    dictionary=False,
    required=(
        Target("call", "customer_id"),
        Target("call", "call_start"),
        Target("call", "call_end"),
    ),
    not_before=(NotBefore(later=Target("call", "call_end"), earlier=Target("call", "call_start")),),
    method="POST",
    path="/calls.json",
    build=_call_body,
    # Calls first: signals refer to them.
    rank=0,
)

_TRANSCRIPT_REQUIRED = tuple(
    Target("message", name)
    for name in ("conversation_externalId", "sender_externalId", "sender_role", "text", "timestamp")
)

TRANSCRIPT = Kind(
    name="transcript",
    # [asapp-sftp-integration.txt] transcripts: one message per row, fields by their names there.
    fixed=_frozen({
        "message": {
            "conversation_externalId": "string",
            "sender_externalId": "string",
            "sender_role": "string",
            "text": "text",
            "timestamp": "iso_utc",
        },
    }),
    open_section="attributes",
    open_type="text",
    dictionary=False,
    required=_TRANSCRIPT_REQUIRED,
    method="POST",
    path="/asapp/transcripts.json",
    build=_record_body("message", _TRANSCRIPT_REQUIRED),
    # Nothing refers to a message, and it refers to nothing the ledger holds.
    rank=3,
)

_PURCHASE_REQUIRED = tuple(
    Target("purchase", name)
    for name in ("transaction_id", "transaction_time", "external_session_id", "product_quantity")
)

PURCHASE = Kind(
    name="purchase",
    # [asapp-sftp-integration.txt] purchase transactions: one purchased product per row.
    fixed=_frozen({
        "purchase": {
            "transaction_id": "string",
            "transaction_time": "iso_utc",
            "transaction_value_one_time": "decimal",
            "transaction_value_recurring": "decimal",
            "customer_category": "string",
            "customer_subcategory": "string",
            "external_customer_id": "string",
            "issue_id": "string",
            "external_session_id": "string",
            "product_category": "string",
            "product_subcategory": "string",
            "product_name": "string",
            "product_id": "string",
            "product_quantity": "integer",
            "product_value_one_time": "decimal",
            "product_value_recurring": "decimal",
        },
    }),
    open_section="attributes",
    open_type="text",
    dictionary=False,
    required=_PURCHASE_REQUIRED,
    one_of=(
        OneOf(
            # "In order to attribute to ASAPP metadata, one of these will be required".
            targets=(Target("purchase", "external_customer_id"), Target("purchase", "issue_id")),
            feed_error="no column gives {targets}, so no row could be attributed to a customer",
            file_error="no column of this file gives {fields}: rows could not be attributed",
            row_error="no {columns}: the purchase cannot be attributed to a customer",
        ),
    ),
    method="POST",
    path="/asapp/purchases.json",
    build=_record_body("purchase", _PURCHASE_REQUIRED),
    numbers=frozenset({Target("purchase", "product_quantity")}),
    rank=3,
)

#: Every kind by name, in the order a feed's error lists them.
KINDS: Mapping[str, Kind] = MappingProxyType(
    {kind.name: kind for kind in (SIGNAL, LOOKUP, CALL, TRANSCRIPT, PURCHASE)}
)


def get(name: str) -> Kind:
    """The kind called ``name``; KeyError if there is none."""
    return KINDS[name]


#: The posting rank of a file whose kind is not known (its feed is gone): after every kind.
LAST_RANK = max(kind.rank for kind in KINDS.values()) + 1


def posting_rank(name: str) -> int:
    """Where requests of kind ``name`` go in posting order; an unknown kind goes last."""
    kind = KINDS.get(name)
    return kind.rank if kind else LAST_RANK


@dataclass(frozen=True)
class DestinationRequest:
    """A request ready to post; ``path`` is relative to the destination's API base, ``text`` is
    the JSON body in its canonical spelling."""

    kind: str
    method: str
    path: str
    text: str
    key: str

    @property
    def body(self) -> dict[str, Any]:
        """The body as data, for display and checks; posting uses ``text``."""
        return cast(dict[str, Any], json.loads(self.text))
