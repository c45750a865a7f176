"""The hook: post queued requests to their destinations, rate-limited, retried and marked.

Requests of one destination token go one after another, in outbox order (a later row that
corrects an earlier one must land later), under one sliding-window limiter shared by every file of
that token, and by every pass of this process posting with it at the same time (two tenants'
feeds naming one account); different tokens post side by side. Each response is written to the outbox before the
next request starts, which is what makes a crash resumable (see :mod:`ingest.delivery.outbox`).

What the answers mean:

- 2xx: posted. 403, 404 and other 4xx: the row failed, with the server's ``errors`` message: the
  destination refused its content, and sending it again would not change that.
- 401: the token is refused. That tenant posts nothing more this run; its rows stay pending.
- 429: the server asks the whole token to wait. No request of that token goes before its
  ``Retry-After`` has elapsed (without one: a backoff, at least one slot of the limit); the row
  keeps its place, goes again first, and the 429 is not one of its tries: being throttled is no
  fault of the row, so it never fails or steps aside for it, and 429s never count toward *down*.
  A ``Retry-After`` longer than ``backoff_max_seconds``, or ``max_attempts`` 429s in a row with
  nothing else between, ends the token's posting for this run: its rows stay pending, untried.
  The pacing of :mod:`ingest.delivery.ratelimit` keeps 429s from happening at all when this
  process is the token's only client.
- 5xx, 408, 425, time-outs and connection errors: tried again, up to ``max_attempts`` times
  in a run, after an exponential backoff with full jitter (or ``Retry-After`` when the server
  sends one, which holds back the whole token). While a row waits for its next try it steps
  aside and the rows after it go on: one row the destination keeps failing (a poison row) never
  blocks a tenant. The price is order: a row retried later may land after a later row of the
  same token.
- A row that used up its tries in a run, while the destination answered other rows, is set
  aside for ``row_retry_after_seconds``. Once it has failed ``max_row_attempts_total`` tries in
  all, or still fails ``max_row_age_hours`` after it was queued, it is failed with its last
  error (``gave_up``), and its file can finish. ``sftpctl outbox`` lists such rows.
- When ``max_attempts`` tries in a row, of more than one request, all fail, the destination is
  *down*: the token's other rows stay pending, untried and in order, for the next run.

A run takes as long as the rate budget needs: a file larger than one slot's budget keeps posting
past the next slot time, and the serving loop runs once more for the slots that passed meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Self

import httpx

from core.clock import iso, parse_iso, utcnow
from core.config import PostSettings
from core.logs import get_logger
from ingest.delivery.outbox import Outbox, OutboxItem, Settlement
from ingest.delivery.ratelimit import RateLimiter, shared_limiter
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


class DeliveryOutcome(StrEnum):
    """How delivering one request ended in a pass (the ledger's own ``Outcome`` is how a record
    was stored: created, updated or unchanged)."""

    POSTED = "posted"
    FAILED = "failed"
    UNAUTHORIZED = "unauthorized"
    GAVE_UP = "gave up"


@dataclass(frozen=True)
class Delivery:
    """How one request ended in this run; ``throttled`` is true when the server asked us to wait."""

    outcome: DeliveryOutcome
    status_code: int | None
    transaction_id: str | None
    error: str
    attempts: int
    throttled: bool = False


@dataclass
class PostReport:
    """What a posting pass did, per tenant where a notification needs it."""

    posted: int = 0
    failed: int = 0
    left_pending: int = 0
    refused: set[str] = field(default_factory=set)
    down: dict[str, str] = field(default_factory=dict)
    #: Tenants whose destination answered some row in this pass (any answer but a 429): an
    #: outage reported in ``down`` by an earlier pass is over for them.
    answered: set[str] = field(default_factory=set)

    @property
    def ends_stream(self) -> bool:
        """A refused token or a destination that is down: what is left waits for the next run."""
        return bool(self.refused or self.down)

    @classmethod
    def merged(cls, reports: Iterable[PostReport]) -> PostReport:
        """One report of several passes (pages, destinations)."""
        merged = cls()
        for report in reports:
            merged.posted += report.posted
            merged.failed += report.failed
            merged.left_pending += report.left_pending
            merged.refused |= report.refused
            merged.answered |= report.answered
            for tenant, why in report.down.items():
                merged.down.setdefault(tenant, why)
        return merged


@dataclass
class _Entry:
    """One request's progress in this run: tries so far, its last failure, when to try again."""

    item: OutboxItem
    token: str
    tries: int = 0
    status: int | None = None
    error: str = ""


@dataclass(frozen=True)
class _Reply:
    """What one try got: an answer (``outcome``), or a failure worth another try (None)."""

    outcome: DeliveryOutcome | None
    status: int | None
    transaction_id: str | None = None
    error: str = ""
    retry_after: float | None = None


def record_delivery(outbox: Outbox, item: OutboxItem, delivery: Delivery, report: PostReport) -> None:
    """Mark ``item`` in the outbox as ``delivery`` says, and count it in ``report``."""
    record_deliveries(outbox, [(item.id, delivery)], report)


def record_deliveries(outbox: Outbox, delivered: Sequence[tuple[int, Delivery]], report: PostReport) -> None:
    """Mark each outbox row (by id) as its delivery says, and count them in ``report``; every
    destination records its answers this one way."""
    mark_deliveries(outbox, delivered)
    count_deliveries(delivered, report)


def mark_deliveries(outbox: Outbox, delivered: Sequence[tuple[int, Delivery]]) -> None:
    """Mark each outbox row (by id) as its delivery says: a final answer leaves the queue (all in
    one transaction), any other is a try of a row that stays pending."""
    final: list[Settlement] = []
    for item_id, delivery in delivered:
        if delivery.outcome is DeliveryOutcome.POSTED:
            final.append(Settlement(item_id, True, delivery.status_code or 0, delivery.transaction_id, "",
                                    delivery.attempts))
        elif delivery.outcome is DeliveryOutcome.FAILED:
            final.append(Settlement(item_id, False, delivery.status_code, None, delivery.error, delivery.attempts))
        else:
            outbox.note_attempts(item_id, delivery.status_code, delivery.error, delivery.attempts)
    outbox.settle(final)


def count_deliveries(delivered: Iterable[tuple[object, Delivery]], report: PostReport) -> None:
    """Count each delivery in ``report``: posted, failed, or left pending."""
    for _, delivery in delivered:
        if delivery.outcome is DeliveryOutcome.POSTED:
            report.posted += 1
        elif delivery.outcome is DeliveryOutcome.FAILED:
            report.failed += 1
        else:
            report.left_pending += 1


def limiter_key(token: str) -> str:
    """The rate-limit key of a token: a digest, so the token itself is never stored twice."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


class LazyClient:
    """A run's one pooled HTTP client, shared by its files and destinations, made when a row is
    first sent over HTTP and closed with the run. Making it (httpx's transport and TLS context)
    takes about 0.1 s in a fresh process, on the way to the first file: a run whose rows all go
    to the embedded ledger never needs it."""

    def __init__(self, make: Callable[[], httpx.AsyncClient]) -> None:
        self._make = make
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> httpx.AsyncClient:
        async with self._lock:
            if self._client is None:
                # Off the event loop: its CA bundle is read from disk.
                self._client = await asyncio.to_thread(self._make)
            return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class Poster:
    """One posting pass over a list of outbox items; built per run, around the run's client."""

    def __init__(
        self, settings: PostSettings, client: LazyClient, outbox: Outbox, send_log: SendLog,
        route: Callable[[str], str] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.outbox = outbox
        self.send_log = send_log
        # Where a stored URL is sent in this run; the outbox keeps the URL as queued.
        self.route = route or (lambda url: url)
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
        # Older sends count in no window any more (2x: room for the limiter's safety share).
        self.send_log.prune(time.time() - 2 * self.settings.rate_limit_window_seconds)
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
        """Post one token's rows, under the window of that token (shared by this process's passes)."""
        def seed(limiter: RateLimiter) -> None:
            now = time.time()
            limiter.seed(now - at for at in self.send_log.since(key, now - limiter.span))

        settings = self.settings
        with shared_limiter(key, settings.rate_limit_requests, settings.rate_limit_window_seconds,
                            seed) as limiter:
            await self._post_rows(key, group, report, after, limiter)

    async def _post_rows(
        self, key: str, group: list[tuple[OutboxItem, str]], report: PostReport,
        after: Callable[[OutboxItem, Delivery], None] | None, limiter: RateLimiter,
    ) -> None:
        """Post one token's rows; a row waiting for its next try lets the next rows go first."""
        waiting = deque(_Entry(item, token) for item, token in group)
        deferred: list[tuple[float, int, _Entry]] = []  # (monotonic due time, outbox id, entry)
        answered = False  # the destination answered some row of this token in this run
        streak: list[int] = []  # ids of the rows whose tries failed since the last answer
        throttles = 0  # 429s in a row, with no other answer between
        down = ""
        while waiting or deferred:
            entry = await _next_entry(waiting, deferred)
            if entry.item.tenant in self._refused:
                self._leave(entry, report)
                continue
            reply = await self._try(entry, key, limiter)
            if reply.status == HTTP_TOO_MANY_REQUESTS:
                throttles += 1
                wait = self._throttle_wait(reply, throttles, limiter)
                log.warning("post.throttled", tenant=entry.item.tenant, destination=_origin(entry.item.url),
                            retry_after=round(wait, 3), in_a_row=throttles)
                if reply.retry_after is not None and reply.retry_after > self.settings.backoff_max_seconds:
                    down = f"{reply.error}; asked to retry after {wait:.0f}s"
                elif throttles >= self.settings.max_attempts:
                    down = f"{_origin(entry.item.url)} answered {throttles} requests in a row with HTTP 429"
                if down:
                    self._leave(entry, report)
                    break
                limiter.pause(wait)  # the whole token, in every pass of this process
                waiting.appendleft(entry)  # its place, and not one of its tries
                continue
            throttles = 0
            entry.tries += 1
            if reply.outcome is not None:
                streak.clear()
                report.answered.add(entry.item.tenant)
                answered = answered or reply.outcome is not DeliveryOutcome.UNAUTHORIZED
                delivery = Delivery(reply.outcome, reply.status, reply.transaction_id, reply.error, entry.tries)
                self._record(entry.item, delivery, report)
                if reply.outcome is DeliveryOutcome.UNAUTHORIZED:
                    self._refused.add(entry.item.tenant)
                    log.warning("post.token_refused", tenant=entry.item.tenant, destination=_origin(entry.item.url))
                if after is not None:
                    after(entry.item, delivery)
                continue
            entry.status, entry.error = reply.status, reply.error
            streak.append(entry.item.id)
            delay = reply.retry_after if reply.retry_after is not None else self._backoff(entry.tries)
            if delay > self.settings.backoff_max_seconds:
                down = f"{reply.error}; asked to retry after {delay:.0f}s"
                self._leave(entry, report)
                break
            if entry.tries >= self.settings.max_attempts:
                self._give_up(entry, answered, report, after)
            else:
                due = time.monotonic() + delay
                if reply.retry_after is not None:
                    limiter.pause(delay)
                heapq.heappush(deferred, (due, entry.item.id, entry))
            if len(streak) >= self.settings.max_attempts and len(set(streak)) > 1:
                down = f"{_origin(entry.item.url)} did not answer: {reply.error}"
                break
        if down:
            log.warning("post.destination_down", destination=_origin(group[0][0].url), error=down)
            for _, _, entry in sorted(deferred):
                self._give_up(entry, False, report, after)
            for entry in waiting:
                report.left_pending += 1
                report.down.setdefault(entry.item.tenant, down)
            report.down.setdefault(group[0][0].tenant, down)

    def _record(self, item: OutboxItem, delivery: Delivery, report: PostReport) -> None:
        record_delivery(self.outbox, item, delivery, report)

    def _leave(self, entry: _Entry, report: PostReport) -> None:
        """The row stays pending as it is, in its place: it is not its fault (401, throttled)."""
        if entry.tries:
            self.outbox.note_attempts(entry.item.id, entry.status, entry.error, entry.tries)
        report.left_pending += 1

    def _give_up(
        self, entry: _Entry, answered: bool, report: PostReport,
        after: Callable[[OutboxItem, Delivery], None] | None,
    ) -> None:
        """A row's tries of this run failed: fail it if it is past its limits, else keep it pending.

        Set aside (``next_attempt_at``) when the destination answered other rows, so the next runs
        do not spend their time on it first; kept in its place when nothing answered (down).
        """
        item, settings = entry.item, self.settings
        total = item.attempts + entry.tries
        age_hours = (utcnow() - parse_iso(item.queued_at)).total_seconds() / 3600 if item.queued_at else 0.0
        if total >= settings.max_row_attempts_total or age_hours >= settings.max_row_age_hours:
            reason = f"{entry.error} (after {total} attempts" + (
                f"; queued {age_hours:.0f} h ago)" if total < settings.max_row_attempts_total else ")")
            delivery = Delivery(DeliveryOutcome.FAILED, entry.status, None, reason, entry.tries)
            self.outbox.mark_failed(item.id, entry.status, reason, entry.tries, gave_up=True)
            report.failed += 1
            log.warning("post.row_given_up", tenant=item.tenant, upload=item.upload_id, row=item.row_number,
                        attempts=total, error=entry.error)
        else:
            later = iso(utcnow() + timedelta(seconds=settings.row_retry_after_seconds)) if answered else None
            delivery = Delivery(DeliveryOutcome.GAVE_UP, entry.status, None, entry.error, entry.tries)
            self.outbox.note_attempts(item.id, entry.status, entry.error, entry.tries, later)
            report.left_pending += 1
            if not answered:
                report.down.setdefault(item.tenant, f"{_origin(item.url)} did not answer: {entry.error}")
            log.warning("post.row_set_aside" if later else "post.row_kept", tenant=item.tenant,
                        upload=item.upload_id, row=item.row_number, attempts=total, until=later,
                        error=entry.error)
        if after is not None:
            after(item, delivery)

    async def _try(self, entry: _Entry, key: str, limiter: RateLimiter) -> _Reply:
        """Send the request once and say what came of it."""
        item = entry.item
        content = _with_token(item.text, entry.token).encode()
        headers = {IDEMPOTENCY_HEADER: item.key, "Content-Type": JSON_TYPE}
        await limiter.acquire()
        try:
            client = await self.client.get()
            response = await client.request(item.method, self.route(item.url), content=content, headers=headers)
        except httpx.TimeoutException:
            return _Reply(None, None, error=f"no answer within {self.settings.timeout_seconds:g}s")
        except httpx.TransportError as exc:
            return _Reply(None, None, error=f"cannot reach {_origin(item.url)} ({type(exc).__name__})")
        finally:
            limiter.release()
            self.send_log.record(key, time.time())
        status = response.status_code
        if response.is_success:
            return _Reply(DeliveryOutcome.POSTED, status, _transaction_id(response))
        if status == HTTP_UNAUTHORIZED:
            return _Reply(DeliveryOutcome.UNAUTHORIZED, status,
                          error="the destination refused the API token (HTTP 401)")
        error = _error_message(response)
        if not _retryable(status):
            return _Reply(DeliveryOutcome.FAILED, status, error=error)
        return _Reply(None, status, error=error, retry_after=_retry_after(response))

    def _throttle_wait(self, reply: _Reply, throttles: int, limiter: RateLimiter) -> float:
        """How long the token waits after a 429: ``Retry-After`` as the server says, else a
        backoff of at least one slot of the limit (a server that gives no time still gets room)."""
        if reply.retry_after is not None:
            return reply.retry_after
        return max(self._backoff(throttles), limiter.window / limiter.limit)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))]."""
        ceiling = min(self.settings.backoff_max_seconds, self.settings.backoff_base_seconds * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


async def _next_entry(waiting: deque[_Entry], deferred: list[tuple[float, int, _Entry]]) -> _Entry:
    """A set-aside row whose time has come, else the next new row, else the first to come due."""
    if deferred and (deferred[0][0] <= time.monotonic() or not waiting):
        wait = deferred[0][0] - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        return heapq.heappop(deferred)[2]
    return waiting.popleft()


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
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


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
    return transaction_id_of(_json(response))


def transaction_id_of(payload: Any) -> str | None:
    """The transaction id of a Signal API answer: its signal's, its own, or its call's."""
    if not isinstance(payload, dict):
        return None
    for holder in (payload.get("signal"), payload, payload.get("call")):
        if isinstance(holder, dict) and holder.get("transaction_id"):
            return str(holder["transaction_id"])
    return None


def _error_message(response: httpx.Response) -> str:
    payload = _json(response)
    text = " ".join(response.text.split()) if payload is None else ""
    return error_text(response.status_code, payload, text, response.reason_phrase)


def error_text(status: int, payload: Any, text: str = "", reason: str = "") -> str:
    """The server's ``errors`` as ``class: invalid_data``, else its text, else the status."""
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, dict) and (errors.get("class") or errors.get("invalid_data")):
            parts = [str(errors[part]) for part in ("class", "invalid_data") if errors.get(part)]
            return ": ".join(parts)[:ERROR_TEXT_LIMIT]
        if payload.get("detail"):
            return f"HTTP {status}: {payload['detail']}"[:ERROR_TEXT_LIMIT]
    return (f"HTTP {status} {reason or 'error'}" + (f": {text}" if text else ""))[:ERROR_TEXT_LIMIT]


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
