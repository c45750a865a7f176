"""Delivery: mapped requests are queued durably, paced and posted, and each answer recorded.

``outbox`` stores every request before it is sent and marks it after (a crash resumes with
nothing lost or doubled); ``destinations`` delivers them: ``EmbeddedLedger`` in bulk into this
data dir's ledger, ``RemoteSignalApi`` over HTTP through ``poster`` (retries, backoff, the
poison-row rule), paced per token by ``ratelimit``.
"""

from ingest.delivery.destinations import Destination, EmbeddedLedger, RemoteSignalApi
from ingest.delivery.outbox import (
    DROPPED,
    Outbox,
    OutboxItem,
    OutboxState,
    QueuedRequest,
    QueuedRows,
    RejectedRow,
    RowCounts,
    RowOutcome,
    RowStatus,
    StuckItem,
)
from ingest.delivery.poster import Delivery, DeliveryOutcome, LazyClient, Poster, PostReport
from ingest.delivery.ratelimit import RateLimiter

__all__ = [
    "DROPPED",
    "Delivery",
    "DeliveryOutcome",
    "Destination",
    "EmbeddedLedger",
    "LazyClient",
    "Outbox",
    "OutboxItem",
    "OutboxState",
    "PostReport",
    "Poster",
    "QueuedRequest",
    "QueuedRows",
    "RateLimiter",
    "RejectedRow",
    "RemoteSignalApi",
    "RowCounts",
    "RowOutcome",
    "RowStatus",
    "StuckItem",
]
