"""The request fields a column can be mapped to, per kind of destination request.

A target is ``section.field``. Fixed sections have a known set of fields, each with a value type
(``ingest.rows.coercion``) that the mapped value must satisfy. Each kind also has one *open* section
whose field names are free: custom data for signals, marketing data for lookup rows, attributes
for calls. Custom and marketing data fields must exist in the tenant's data dictionary
[invoca-sftp-signal-upload.txt]; call attributes need not.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "DICTIONARY_SECTIONS",
    "FIXED_FIELDS",
    "IGNORE",
    "KINDS",
    "OPEN_SECTIONS",
    "SEARCH_KEYS",
    "Target",
    "by_name",
    "parse_target",
    "target_type",
]

KINDS = ("signal", "lookup", "call")

#: The mapping target that drops a column.
IGNORE = "ignore"

FIXED_FIELDS: dict[str, dict[str, dict[str, str]]] = {
    "signal": {
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
    },
    "lookup": {
        "lookup": {"primary_key": "string", "secondary_key": "string"},
    },
    "call": {
        # The inputs of a call record; see ingest.rows.mapping for how they become one.
        "call": {
            "customer_id": "string",
            "call_start": "iso_utc",
            "call_end": "iso_utc",
            "calling_phone_number": "phone",
        },
    },
}

OPEN_SECTIONS = {"signal": "custom_data", "lookup": "data", "call": "attributes"}
OPEN_SECTION_TYPES = {"custom_data": "string", "data": "string", "attributes": "text"}
DICTIONARY_SECTIONS = frozenset({"custom_data", "data"})

#: A signal row needs at least one of these to find its call.
SEARCH_KEYS = ("transaction_id", "call_record_id", "call_start_time")


class Target(NamedTuple):
    """Where a value goes in a request: ``section.field``. A tuple, as it is looked up per value."""

    section: str
    field: str

    def __str__(self) -> str:
        return f"{self.section}.{self.field}"


def parse_target(kind: str, text: str) -> Target:
    """``section.field`` as a Target of ``kind``; ValueError says which targets exist."""
    section, dot, field = text.partition(".")
    field = field.strip()
    if dot and section == OPEN_SECTIONS[kind] and field:
        return Target(section, field)
    fixed = FIXED_FIELDS[kind]
    if dot and field in fixed.get(section, {}):
        return Target(section, field)
    choices = "; ".join(f"{name}.X (X: {', '.join(fields)})" for name, fields in fixed.items())
    raise ValueError(
        f"{text!r} is not a field of a {kind} request; use {choices}; {OPEN_SECTIONS[kind]}.NAME;"
        f" or {IGNORE!r}"
    )


def target_type(target: Target) -> str:
    """The value type a target requires."""
    type_name = OPEN_SECTION_TYPES.get(target.section) or _FIXED_TYPES.get(target)
    if type_name is None:
        raise KeyError(str(target))
    return type_name


def by_name(kind: str, column: str) -> Target | None:
    """The fixed field named like ``column`` (case-insensitive), if ``kind`` has one."""
    name = column.lower()
    for section, fields in FIXED_FIELDS[kind].items():
        if name in fields:
            return Target(section, name)
    return None


_FIXED_TYPES = {
    Target(section, name): type_name
    for sections in FIXED_FIELDS.values()
    for section, names in sections.items()
    for name, type_name in names.items()
}
