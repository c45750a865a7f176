"""Transaction ids in Invoca's shape, and the Call Record ID of a call known by an external id.

A transaction id is the ledger's monotonic sequence number written as 16 upper-case hex digits
split 8-8 (``00000000-0000000A``), so ids sort in the order the rows were committed.
"""

from __future__ import annotations

import re
import uuid

TRANSACTION_ID_PATTERN = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{8}$")
# SQLite's largest integer: a larger id names no transaction (and would overflow the query).
MAX_SEQUENCE = (1 << 63) - 1
_LOW_BITS = 32
_LOW_MASK = (1 << _LOW_BITS) - 1

# Fixed forever: changing it would give every call known by an external id a new Call Record ID.
EXTERNAL_CALL_NAMESPACE = uuid.UUID("6f0c5f9e-6d1c-5d3a-9a57-2f4b8e1c7a30")


def format_transaction_id(sequence: int) -> str:
    return f"{sequence >> _LOW_BITS:08X}-{sequence & _LOW_MASK:08X}"


def parse_transaction_id(text: str) -> int | None:
    """The sequence number behind a transaction id, or None if ``text`` is not in that shape or
    beyond :data:`MAX_SEQUENCE`."""
    if not TRANSACTION_ID_PATTERN.fullmatch(text):
        return None
    high, low = text.split("-")
    sequence = (int(high, 16) << _LOW_BITS) | int(low, 16)
    return sequence if sequence <= MAX_SEQUENCE else None


def call_record_id_for(tenant: str, external_id: str) -> str:
    """A stable GUID for a call that its source names only by its own id."""
    return str(uuid.uuid5(EXTERNAL_CALL_NAMESPACE, f"{tenant}\x00{external_id}"))
