"""The hook: post queued requests to their destinations, rate-limited, retried and marked.

Requests of one destination token go one after another, in outbox order (a later row that
corrects an earlier one must land later), under one sliding-window limiter shared by every file of
that token; different tokens post side by side. Each response is written to the outbox before the
next request starts, which is what makes a crash resumable (see :mod:`ingest.outbox`).

What the answers mean:

- 2xx: posted. 403, 404 and other 4xx: the row failed, with the server's ``errors`` message.
- 401: the token is refused. That tenant posts nothing more this run; its rows stay pending.
- 429, 5xx, time-outs and connection errors: retried with exponential backoff and full jitter,
  or after ``Retry-After`` when the server sends one. When the attempts run out and the
  destination has answered nothing else this run, it is *down*: its rows stay pending for the
  next run. If it did answer other rows, the one row that keeps failing is marked failed, so a
  single bad row cannot hold back the rest.

A run takes as long as the rate budget needs: a file larger than one slot's budget keeps posting
past the next slot time, and the serving loop runs once more for the slots that passed meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

import httpx

from core.config import PostSettings
from core.logs import get_logger
from ingest.outbox import Outbox, OutboxItem
from ingest.ratelimit import RateLimiter
from ingest.store import SendLog

log = get_logger("ingest.poster")

TOKEN_FIELD = "oauth_token"
IDEMPOTENCY_HEADER = "Idempotency-Key"
JSON_TYPE = "application/json"
HTTP_UNAUTHORIZED = 401
HTTP_REQUEST_TIMEOUT = 408
HTTP_TOO_EARLY = 425
HTTP_TOO_MANY_REQUESTS = 429
# Server texts quoted in reports are cut here; a report cell is no place for an HTML error page.
ERROR_TEXT_LIMIT = 300


class Outcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    UNAUTHORIZED = "unauthorized"
    GAVE_UP = "gave up"


@dataclass(frozen=True)
class Delivery:
    """How one request ended in this run; ``throttled`` is true when the server asked us to wait."""

    outcome: Outcome
    status_code: int | None
    transaction_id: str | None
    error: str
    attempts: int
    throttled: bool = False


@dataclass
class PostReport:
    """What a posting pass did, per tenant where a notification needs it."""

    sent: int = 0
    failed: int = 0
    left_pending: int = 0
    refused: set[str] = field(default_factory=set)
    down: dict[str, str] = field(default_factory=dict)


def limiter_key(token: str) -> str:
    """The rate-limit key of a token: a digest, so the token itself is never stored twice."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


class Poster:
    """One posting pass over a list of outbox items; built per run, around a shared client."""

    def __init__(self, settings: PostSettings, client: httpx.AsyncClient, outbox: Outbox, send_log: SendLog) -> None:
        self.settings = settings
        self.client = client
        self.outbox = outbox
        self.send_log = send_log
        self._refused: set[str] = set()

    async def post(
        self,
        items: Sequence[OutboxItem],
        token_for: Callable[[OutboxItem], str],
        after: Callable[[OutboxItem, Delivery], None] | None = None,
    ) -> PostReport:
        """Send ``items``, marking each in the outbox as its answer arrives."""
        report = PostReport()
        groups: dict[str, list[tuple[OutboxItem, str]]] = {}
        for item in items:
            token = token_for(item)
            groups.setdefault(limiter_key(token), []).append((item, token))
        self.send_log.prune(time.time() - self.settings.rate_limit_window_seconds)
        tasks = [asyncio.create_task(self._post_group(key, group, report, after)) for key, group in groups.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            # If one destination's pass fails (or a progress callback stops the run), stop them all.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        report.refused = set(self._refused)
        return report

    async def _post_group(
        self, key: str, group: list[tuple[OutboxItem, str]], report: PostReport,
        after: Callable[[OutboxItem, Delivery], None] | None,
    ) -> None:
        limiter = RateLimiter(self.settings.rate_limit_requests, self.settings.rate_limit_window_seconds)
        now = time.time()
        limiter.seed(now - at for at in self.send_log.since(key, now - limiter.window))
        answered = False
        down = ""
        for item, token in group:
            if down or item.tenant in self._refused:
                report.left_pending += 1
                if down:
                    report.down.setdefault(item.tenant, down)
                continue
            delivery = await self._deliver(item, token, key, limiter)
            if delivery.outcome is Outcome.GAVE_UP and answered and not delivery.throttled:
                delivery = Delivery(Outcome.FAILED, delivery.status_code, None, delivery.error, delivery.attempts)
            answered = answered or delivery.outcome in (Outcome.SENT, Outcome.FAILED)
            self._record(item, delivery, report)
            if delivery.outcome is Outcome.GAVE_UP:
                down = f"{_origin(item.url)} did not answer: {delivery.error}"
                report.down.setdefault(item.tenant, down)
                log.warning("post.destination_down", destination=_origin(item.url), error=delivery.error)
            elif delivery.outcome is Outcome.UNAUTHORIZED:
                self._refused.add(item.tenant)
                log.warning("post.token_refused", tenant=item.tenant, destination=_origin(item.url))
            if after is not None:
                after(item, delivery)

    def _record(self, item: OutboxItem, delivery: Delivery, report: PostReport) -> None:
        if delivery.outcome is Outcome.SENT:
            self.outbox.mark_sent(item.id, delivery.status_code or 0, delivery.transaction_id, delivery.attempts)
            report.sent += 1
        elif delivery.outcome is Outcome.FAILED:
            self.outbox.mark_failed(item.id, delivery.status_code, delivery.error, delivery.attempts)
            report.failed += 1
        else:
            self.outbox.note_attempts(item.id, delivery.status_code, delivery.error, delivery.attempts)
            report.left_pending += 1

    async def _deliver(self, item: OutboxItem, token: str, key: str, limiter: RateLimiter) -> Delivery:
        content = _with_token(item.text, token).encode()
        headers = {IDEMPOTENCY_HEADER: item.key, "Content-Type": JSON_TYPE}
        status: int | None = None
        error = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            retry_after: float | None = None
            await limiter.acquire()
            try:
                response = await self.client.request(item.method, item.url, content=content, headers=headers)
            except httpx.TimeoutException:
                status, error = None, f"no answer within {self.settings.timeout_seconds:g}s"
            except httpx.TransportError as exc:
                status, error = None, f"cannot reach {_origin(item.url)} ({type(exc).__name__})"
            else:
                status = response.status_code
                if response.is_success:
                    return Delivery(Outcome.SENT, status, _transaction_id(response), "", attempt)
                if status == HTTP_UNAUTHORIZED:
                    return Delivery(Outcome.UNAUTHORIZED, status, None,
                                    "the destination refused the API token (HTTP 401)", attempt)
                error = _error_message(response)
                if not _retryable(status):
                    return Delivery(Outcome.FAILED, status, None, error, attempt)
                retry_after = _retry_after(response)
            finally:
                limiter.release()
                self.send_log.record(key, time.time())
            if attempt == self.settings.max_attempts:
                break
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if delay > self.settings.backoff_max_seconds:
                return Delivery(Outcome.GAVE_UP, status, None,
                                f"{error}; asked to retry after {delay:.0f}s", attempt, throttled=True)
            await asyncio.sleep(delay)
        return Delivery(Outcome.GAVE_UP, status, None,
                        f"{error} (after {self.settings.max_attempts} attempts)", self.settings.max_attempts,
                        throttled=status == HTTP_TOO_MANY_REQUESTS)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))]."""
        ceiling = min(self.settings.backoff_max_seconds, self.settings.backoff_base_seconds * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


def _retryable(status: int) -> bool:
    return status in (HTTP_REQUEST_TIMEOUT, HTTP_TOO_EARLY, HTTP_TOO_MANY_REQUESTS) or status >= 500


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, given as delta-seconds or an HTTP date; None if absent or bad."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


def _with_token(text: str, token: str) -> str:
    """The JSON object ``text`` with the token as its first field, as the Signal API takes it."""
    rest = text[1:].lstrip()
    return f'{{"{TOKEN_FIELD}":{json.dumps(token)}' + ("}" if rest == "}" else "," + rest)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _transaction_id(response: httpx.Response) -> str | None:
    payload = _json(response)
    if not isinstance(payload, dict):
        return None
    for holder in (payload.get("signal"), payload, payload.get("call")):
        if isinstance(holder, dict) and holder.get("transaction_id"):
            return str(holder["transaction_id"])
    return None


def _error_message(response: httpx.Response) -> str:
    """The server's ``errors`` as ``class: invalid_data``, else its text, else the status."""
    payload = _json(response)
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, dict) and (errors.get("class") or errors.get("invalid_data")):
            parts = [str(errors[part]) for part in ("class", "invalid_data") if errors.get(part)]
            return ": ".join(parts)[:ERROR_TEXT_LIMIT]
        if payload.get("detail"):
            return f"HTTP {response.status_code}: {payload['detail']}"[:ERROR_TEXT_LIMIT]
    text = " ".join(response.text.split()) if payload is None else ""
    reason = response.reason_phrase or "error"
    return (f"HTTP {response.status_code} {reason}" + (f": {text}" if text else ""))[:ERROR_TEXT_LIMIT]


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
