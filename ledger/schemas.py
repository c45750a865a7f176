"""Request bodies: validated by hand-written rules, described to OpenAPI by the same models.

The Signal API is lenient in shape (``value`` may be ``"true"`` or ``1``, ids may be numbers)
and strict in content (money has at most two decimals, parameters at most 255 characters), so
each field type is a plain validator with the document's rule. Unknown parameters are refused:
a misspelt ``sale_ammount`` silently dropped would lose a sale. Every failure becomes one
``RecordInvalid`` naming the offending parameter.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
)

from core.timestamps import PACIFIC, parse_iso_utc, parse_timestamp
from ledger.errors import NO_SEARCH_MESSAGE, RecordInvalid
from ledger.ids import call_record_id_for
from ledger.records import CallSearch

MAX_PARAMETER_LENGTH = 255
# A week: longer is no phone call, and every duration stays a small SQLite integer.
MAX_DURATION_SECONDS = 7 * 24 * 3600
MONEY_PATTERN = re.compile(r"-?\d+(\.\d{1,2})?", re.ASCII)  # as ingest.rows.coercion reads money
E164_PATTERN = re.compile(r"\+[1-9]\d{6,14}")
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
# [asapp-sftp-integration.txt]: the roles of a transcript's senders; Float/Decimal as
# ingest.rows.coercion reads them; a quantity fits nine digits either way (a return may be negative).
SENDER_ROLES = ("agent", "customer", "bot")
DECIMAL_PATTERN = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
QUANTITY_PATTERN = re.compile(r"[+-]?\d{1,9}", re.ASCII)
MAX_QUANTITY = 999_999_999
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})

Model = TypeVar("Model", bound=BaseModel)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"must be a string, got {type(value).__name__}")


def _bounded(value: Any) -> str:
    text = _text(value)
    if len(text) > MAX_PARAMETER_LENGTH:
        raise ValueError(f"must be at most {MAX_PARAMETER_LENGTH} characters, got {len(text)}")
    return text


def _reference(value: Any) -> str:
    text = _bounded(value).strip()
    if not text:
        raise ValueError("must not be blank")
    return text


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _text(value)


def _money(value: Any) -> str:
    """A canonical amount with two decimals, or "" for an explicitly empty amount."""
    text = _bounded(value).strip()
    if not text:
        return ""
    if not MONEY_PATTERN.fullmatch(text):
        raise ValueError(
            f"must be money with at most 2 decimal places and no currency symbol or separators, got {text!r}"
        )
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"must be true, false, 1 or 0, got {value!r}")


def _duration(value: Any) -> int:
    seconds: int | None = None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        seconds = int(value.strip()) if len(value.strip()) <= len(str(MAX_DURATION_SECONDS)) else -1
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    if seconds is None or not 0 <= seconds <= MAX_DURATION_SECONDS:
        raise ValueError(
            f"must be a whole number of seconds from 0 to {MAX_DURATION_SECONDS}, got {_shown(value)}"
        )
    return seconds


def _shown(value: Any) -> str:
    """``repr(value)``, cut short: a refused value may be a 4,000-digit number."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**40 else f"{str(value)[:40]}..."
    return text if len(text) <= MAX_PARAMETER_LENGTH else f"{text[:MAX_PARAMETER_LENGTH]}..."


def normalize_phone(value: Any) -> str:
    """E.164 without the spaces, dots, dashes and brackets people type: ``+18885551212``."""
    compact = _PHONE_PUNCTUATION.sub("", _text(value))
    if not E164_PATTERN.fullmatch(compact):
        raise ValueError(f"must be a phone number in E.164 format such as '+1 8885551212', got {value!r}")
    return compact


def _guid(value: Any) -> str:
    try:
        return str(uuid.UUID(_text(value).strip()))
    except ValueError:
        raise ValueError(
            f"must be a GUID such as 0f8fad5b-d9cb-469f-a165-70867728950e, got {value!r}"
        ) from None


def _timestamp(value: Any, info: ValidationInfo) -> float | None:
    if value is None:
        return None
    timezone: ZoneInfo = (info.context or {}).get("timezone", PACIFIC)
    return parse_timestamp(_text(value), timezone).timestamp()


def _required_timestamp(value: Any, info: ValidationInfo) -> float:
    moment = _timestamp(value, info)
    if moment is None:
        raise ValueError("can't be blank")
    return moment


def _name(value: Any) -> str:
    text = _bounded(value).strip()
    if not text:
        raise ValueError("can't be blank")
    return text


def _iso_utc(value: Any) -> str:
    """An ASAPP timestamp (ISO 8601 UTC, read as the processor reads it) in one spelling, with
    microseconds and ``Z``, so that equal instants are equal text."""
    moment = parse_iso_utc(_bounded(value))
    return moment.isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


def _role(value: Any) -> str:
    role = _text(value).strip().lower()
    if role not in SENDER_ROLES:
        raise ValueError(f"must be one of {', '.join(SENDER_ROLES)}, got {_shown(value)}")
    return role


def _message(value: Any) -> str:
    text = _text(value)
    if not text.strip():
        raise ValueError("can't be blank")
    return text


def _decimal(value: Any) -> str:
    """A decimal number in its shortest spelling (``65.250`` is ``65.25``), so that a repost of
    the same value is equal text."""
    text = _bounded(value).strip()
    if not DECIMAL_PATTERN.fullmatch(text):
        raise ValueError(f"must be a decimal number such as 129.45, got {_shown(value)}")
    number = Decimal(text)
    return "0" if number == 0 else format(number.normalize(), "f")


def _quantity(value: Any) -> int:
    quantity: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        quantity = value
    elif isinstance(value, str) and QUANTITY_PATTERN.fullmatch(value.strip()):
        quantity = int(value.strip())
    if quantity is None or abs(quantity) > MAX_QUANTITY:
        raise ValueError(
            f"must be a whole number from -{MAX_QUANTITY} to {MAX_QUANTITY}, got {_shown(value)}"
        )
    return quantity


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


Text = Annotated[str | None, PlainValidator(_optional(_text), json_schema_input_type=str | None)]
Parameter = Annotated[
    str | None, PlainValidator(_optional(_bounded), json_schema_input_type=str | int | None)
]
Reference = Annotated[
    str | None, PlainValidator(_optional(_reference), json_schema_input_type=str | int | None)
]
Money = Annotated[str | None, PlainValidator(_optional(_money), json_schema_input_type=str | float | None)]
Flag = Annotated[
    bool | None, PlainValidator(_optional(_flag), json_schema_input_type=bool | str | int | None)
]
Duration = Annotated[
    int | None, PlainValidator(_optional(_duration), json_schema_input_type=int | str | None)
]
Phone = Annotated[str | None, PlainValidator(_optional(normalize_phone), json_schema_input_type=str | None)]
Guid = Annotated[str | None, PlainValidator(_optional(_guid), json_schema_input_type=str | None)]
Timestamp = Annotated[float | None, PlainValidator(_timestamp, json_schema_input_type=str | int | None)]
Name = Annotated[str, PlainValidator(_name, json_schema_input_type=str)]
Scalar = Annotated[str, PlainValidator(_scalar, json_schema_input_type=str | int | float | bool | None)]
RequiredPhone = Annotated[str, PlainValidator(normalize_phone, json_schema_input_type=str)]
RequiredTimestamp = Annotated[float, PlainValidator(_required_timestamp, json_schema_input_type=str | int)]
RequiredReference = Annotated[str, PlainValidator(_reference, json_schema_input_type=str | int)]
IsoUtc = Annotated[str, PlainValidator(_iso_utc, json_schema_input_type=str)]
SenderRole = Annotated[str, PlainValidator(_role, json_schema_input_type=str)]
MessageText = Annotated[str, PlainValidator(_message, json_schema_input_type=str)]
Number = Annotated[str | None, PlainValidator(_optional(_decimal), json_schema_input_type=str | float | None)]
Quantity = Annotated[int, PlainValidator(_quantity, json_schema_input_type=int | str)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchParams(_Strict):
    """How to find the call; see the closeness rule in ``ledger.matching``."""

    transaction_id: Reference = Field(default=None, description="The call's transaction id.")
    call_record_id: Guid = Field(default=None, description="The call's Call Record ID (complete_call_id).")
    call_start_time: Timestamp = Field(
        default=None, description="Approximate start; the closest call matches."
    )
    calling_phone_number: Phone = Field(
        default=None, description="ANI in E.164 format, e.g. '+1 8885551212'."
    )
    duration_in_seconds: Duration = None
    advertiser_id_from_network: Reference = None
    advertiser_campaign_id_from_network: Reference = None
    network_id: Reference = None

    def to_search(self, path_transaction_id: str | None = None) -> CallSearch:
        """The search to run; an id (in the path or the body) wins over everything else."""
        transaction_id = path_transaction_id or self.transaction_id
        if transaction_id is not None:
            return CallSearch(transaction_id=transaction_id)
        if self.call_record_id is not None:
            return CallSearch(call_record_id=self.call_record_id)
        if self.call_start_time is None:
            raise RecordInvalid(NO_SEARCH_MESSAGE)
        return CallSearch(
            start_time=self.call_start_time,
            duration_in_seconds=self.duration_in_seconds,
            calling_phone_number=self.calling_phone_number,
            advertiser_id_from_network=self.advertiser_id_from_network,
            advertiser_campaign_id_from_network=self.advertiser_campaign_id_from_network,
            network_id=self.network_id,
        )


class SignalParams(_Strict):
    name: Name = Field(description="Matched case-insensitively; the first casing reported is kept.")
    partner_unique_id: Parameter = Field(
        default=None, description='Distinguishes signals of one name; default "".'
    )
    description: Text = None
    occurred_at_time: Timestamp = Field(default=None, description="Defaults to the time of the request.")
    sale_amount: Money = Field(default=None, description='Up to 2 decimals, no symbols; "" clears it.')
    value: Flag = Field(default=None, description="true/false/1/0; defaults to true.")
    custom_parameter_1: Parameter = None
    custom_parameter_2: Parameter = None
    custom_parameter_3: Parameter = None

    def changes(self) -> dict[str, Any]:
        """The ``SignalContent`` fields this request sets; absent fields keep their stored values."""
        changes: dict[str, Any] = {
            name: value for name in SIGNAL_CONTENT_FIELDS if (value := getattr(self, name)) is not None
        }
        if self.occurred_at_time is not None:
            changes["occurred_at"] = self.occurred_at_time
        if self.sale_amount == "":
            changes["sale_amount"] = None
        return changes


SIGNAL_CONTENT_FIELDS = (
    "name",
    "partner_unique_id",
    "description",
    "sale_amount",
    "value",
    "custom_parameter_1",
    "custom_parameter_2",
    "custom_parameter_3",
)


class CustomDatum(_Strict):
    name: Name = Field(description="A field of the account's data dictionary (any casing).")
    value: Scalar


class SignalRequest(_Strict):
    search: SearchParams = SearchParams()
    signal: SignalParams
    custom_data: list[CustomDatum] = Field(
        default_factory=list, description="Extension: custom data fields to set on the call."
    )
    oauth_token: str | None = None


class CallParams(_Strict):
    """A call record; ``call_record_id`` or ``external_id`` identifies it."""

    call_record_id: Guid = Field(default=None, description="The Call Record ID (complete_call_id).")
    external_id: Reference = Field(
        default=None, description="The source's own id; the Call Record ID derives from it."
    )
    transaction_id: Reference = Field(
        default=None, description="The call's transaction id; generated if absent."
    )
    start_time: RequiredTimestamp
    duration_in_seconds: Duration = None
    calling_phone_number: Phone = None
    advertiser_id_from_network: Reference = None
    advertiser_campaign_id_from_network: Reference = None
    network_id: Reference = None
    attributes: dict[str, Scalar] | None = Field(
        default=None, description="Other call metadata, kept as text."
    )

    def complete_call_id(self, tenant: str) -> str:
        if self.call_record_id is not None:
            return self.call_record_id
        if self.external_id is not None:
            return call_record_id_for(tenant, self.external_id)
        raise RecordInvalid("call_record_id or external_id must be present")

    def changes(self) -> dict[str, Any]:
        """The ``CallContent`` fields this request sets; absent fields keep their stored values."""
        return {name: value for name in CALL_CONTENT_FIELDS if (value := getattr(self, name)) is not None}


CALL_CONTENT_FIELDS = (
    "transaction_id",
    "start_time",
    "external_id",
    "duration_in_seconds",
    "calling_phone_number",
    "advertiser_id_from_network",
    "advertiser_campaign_id_from_network",
    "network_id",
    "attributes",
)


class CallRequest(_Strict):
    call: CallParams
    oauth_token: str | None = None


class LookupRowRequest(_Strict):
    primary_key: RequiredPhone = Field(description="The calling phone number (E.164) of the calls to update.")
    secondary_key: Reference = Field(
        default=None, description="If given, only calls with this advertiser_campaign_id_from_network match."
    )
    data: dict[str, Scalar] = Field(min_length=1, description="Data dictionary fields and their values.")
    oauth_token: str | None = None


# ASAPP records (extension): the columns of asapp-sftp-integration.txt, by their names there.


class MessageParams(_Strict):
    """One message of a transcript; conversation, sender, time and text are its identity."""

    conversation_externalId: RequiredReference = Field(description="The conversation.")
    sender_externalId: RequiredReference = Field(description="The sender of the message.")
    sender_role: SenderRole = Field(description="agent, customer or bot.")
    text: MessageText = Field(description="The message.")
    timestamp: IsoUtc = Field(description="When it was sent: ISO 8601 UTC.")
    attributes: dict[str, Scalar] | None = Field(default=None, description="Other columns, as text.")

    def record(self) -> dict[str, Any]:
        """The message as stored and answered (without its id)."""
        return {
            "conversation_externalId": self.conversation_externalId,
            "sender_externalId": self.sender_externalId,
            "sender_role": self.sender_role,
            "text": self.text,
            "timestamp": self.timestamp,
            "attributes": self.attributes or {},
        }


class TranscriptRequest(_Strict):
    message: MessageParams
    oauth_token: str | None = None


class PurchaseParams(_Strict):
    """One purchased product; its transaction and product (``product_id``, else ``product_name``)
    name it, and a repost replaces it whole."""

    transaction_id: RequiredReference = Field(description="Unique in the customer's system.")
    transaction_time: IsoUtc = Field(description="When the purchase happened: ISO 8601 UTC.")
    transaction_value_one_time: Number = None
    transaction_value_recurring: Number = None
    customer_category: Parameter = None
    customer_subcategory: Parameter = None
    external_customer_id: Reference = Field(
        default=None, description="This or issue_id attributes the purchase."
    )
    issue_id: Reference = Field(default=None, description="This or external_customer_id attributes it.")
    external_session_id: RequiredReference = Field(description="The customer's session.")
    product_category: Parameter = None
    product_subcategory: Parameter = None
    product_name: Parameter = None
    product_id: Parameter = None
    product_quantity: Quantity = Field(description="How many were bought.")
    product_value_one_time: Number = None
    product_value_recurring: Number = None
    attributes: dict[str, Scalar] | None = Field(default=None, description="Other columns, as text.")

    def record(self) -> dict[str, Any]:
        """The purchase line as stored and answered (without its id), absent fields as null."""
        if self.external_customer_id is None and self.issue_id is None:
            raise RecordInvalid("external_customer_id or issue_id must be present")
        record = {name: getattr(self, name) for name in PURCHASE_FIELDS}
        record["attributes"] = self.attributes or {}
        return record


PURCHASE_FIELDS = tuple(name for name in PurchaseParams.model_fields if name != "attributes")


class PurchaseRequest(_Strict):
    purchase: PurchaseParams
    oauth_token: str | None = None


def validate_body(model: type[Model], body: Any, timezone: ZoneInfo) -> Model:
    """``body`` as ``model``, timestamps read in ``timezone``; else one ``RecordInvalid``."""
    try:
        return model.model_validate(body, context={"timezone": timezone})
    except ValidationError as exc:
        raise RecordInvalid("; ".join(_describe(error) for error in exc.errors())) from None


def _describe(error: Any) -> str:
    where = _location(error["loc"])
    kind = error["type"]
    if not where:
        return "the request body must be a JSON object"
    if kind == "missing":
        return f"{where} must be present"
    if kind == "extra_forbidden":
        return f"{where} is not a known parameter"
    if kind == "value_error":
        return f"{where}: {error['ctx']['error']}"
    return f"{where}: {error['msg'][:1].lower()}{error['msg'][1:]}"


def _location(loc: tuple[int | str, ...]) -> str:
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return where
