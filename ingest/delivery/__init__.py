"""Delivery: mapped requests are queued durably, paced and posted, and each answer recorded.

``outbox`` stores every request before it is sent and marks it after (a crash resumes with
nothing lost or doubled); ``poster`` sends them to a destination with retries, backoff and the
poison-row rule; ``ratelimit`` paces them per token.
"""

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
from ingest.delivery.poster import Delivery, Outcome, Poster, PostReport
from ingest.delivery.ratelimit import RateLimiter

__all__ = [
    "DROPPED",
    "Delivery",
    "Outbox",
    "OutboxItem",
    "OutboxState",
    "Outcome",
    "PostReport",
    "Poster",
    "QueuedRequest",
    "QueuedRows",
    "RateLimiter",
    "RejectedRow",
    "RowCounts",
    "RowOutcome",
    "RowStatus",
    "StuckItem",
]
