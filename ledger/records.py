"""What the ledger stores: calls, the signals reported on them, and how a call is searched for.

Times are float seconds since the epoch (UTC), which keeps the closeness arithmetic trivial and
milliseconds intact. Content classes hold only what a client may set, so "is this repost
identical?" is plain dataclass equality.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _stored_json_encoder() -> Callable[[Any], str]:
    """``json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode``, with json's C
    encoder made once instead of at each call: the writer encodes three small objects per
    signal, and making the encoder was half of each call (0.9 of 1.7 µs for a call's custom
    data). Without the C accelerator (another interpreter), the encoder itself."""
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    # No markers (circular references are not looked for: the ledger's values are trees); what
    # JSON cannot write refused by the encoder's own ``default``; NaN written as it writes it.
    chunks = make(None, encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(chunks(value, 0))


_STORED_JSON = _stored_json_encoder()


def stored_json(value: Any) -> str:
    """A value as the ledger stores JSON in its columns: compact, non-ASCII kept as is."""
    return _STORED_JSON(value)


class Outcome(enum.Enum):
    """What a write did; the API answers 201 for CREATED and 200 otherwise."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class TransactionType(str, enum.Enum):  # noqa: UP042 - str() of a StrEnum is its value, not the member name
    CALL = "call"
    SIGNAL = "signal"
    POST_CALL_EVENT = "post_call_event"


@dataclass(frozen=True)
class CallContent:
    """The fields of a call its source may set; ``transaction_id`` is the call's public id."""

    transaction_id: str
    start_time: float
    external_id: str | None = None
    duration_in_seconds: int | None = None
    calling_phone_number: str | None = None
    advertiser_id_from_network: str | None = None
    advertiser_campaign_id_from_network: str | None = None
    network_id: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    id: int
    complete_call_id: str
    content: CallContent
    custom_data: dict[str, str]
    transaction: int
    """Sequence number of the newest ``call`` transaction (the creation or the last correction)."""
    corrects: int | None
    event_transaction: int | None
    """Sequence number of the newest ``post_call_event`` transaction, which holds all custom data."""

    @property
    def transaction_id(self) -> str:
        return self.content.transaction_id

    @property
    def start_time(self) -> float:
        return self.content.start_time


@dataclass(frozen=True)
class SignalContent:
    name: str
    occurred_at: float
    partner_unique_id: str = ""
    description: str = ""
    sale_amount: str | None = None
    value: bool = True
    custom_parameter_1: str = ""
    custom_parameter_2: str = ""
    custom_parameter_3: str = ""


@dataclass(frozen=True)
class Signal:
    content: SignalContent
    transaction: int
    corrects: int | None


@dataclass(frozen=True)
class CallSearch:
    """How a signal names its call: by id, by Call Record ID, or by the closest start time.

    The filters only narrow a ``start_time`` search; with an id they are ignored, as the
    Signal API document says for ``transaction_id``.
    """

    transaction_id: str | None = None
    call_record_id: str | None = None
    start_time: float | None = None
    duration_in_seconds: int | None = None
    calling_phone_number: str | None = None
    advertiser_id_from_network: str | None = None
    advertiser_campaign_id_from_network: str | None = None
    network_id: str | None = None


@dataclass(frozen=True)
class SignalWrite:
    """One signal to save: how it names its call, its fields (``name`` among them), and the
    custom data it sets on the call (keys in the data dictionary's spelling)."""

    search: CallSearch
    changes: Mapping[str, Any]
    custom_data: Mapping[str, str]


@dataclass(frozen=True)
class SignalResult:
    call: Call
    signal: Signal
    outcome: Outcome


@dataclass(frozen=True)
class CallResult:
    call: Call
    outcome: Outcome


@dataclass(frozen=True)
class LookupRow:
    table: str
    primary_key: str
    secondary_key: str
    data: dict[str, str]


@dataclass(frozen=True)
class LookupResult:
    row: LookupRow
    outcome: Outcome
    updated_calls: list[tuple[Call, int]]
    """Each call whose custom data changed, with the ``post_call_event`` sequence number it got."""


@dataclass(frozen=True)
class TransactionQuery:
    after: int = 0
    limit: int = 1000
    types: tuple[TransactionType, ...] = ()
    start_from: float | None = None
    start_before: float | None = None


@dataclass(frozen=True)
class ListingQuery:
    """A page of ASAPP records: those after record id ``after``, at most ``limit``, and only of
    one conversation or transaction when ``match`` is given."""

    after: int = 0
    limit: int = 1000
    match: str | None = None


@dataclass(frozen=True)
class TransactionRow:
    sequence: int
    transaction_type: TransactionType
    corrects: int | None
    recorded_at: float
    record: dict[str, Any]
    """The whole record as of this transaction: ``call``, ``custom_data`` and ``signal`` (or None)."""
