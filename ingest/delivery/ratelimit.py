"""A sliding-window log limiter: at most ``limit`` requests in any window of ``window`` seconds.

A request counts from the moment it is allowed to start until ``window`` seconds (and a hair,
see below) after it *completed*.

Why from completion. The server (``ledger/ratelimit.py``; a remote Signal API likewise, as far as
its answers show) counts a request when it admits it, at some moment between our start and our
completion that we cannot see. Request ``n + limit`` of a token starts only once request ``n``
completed a window ago, so it reaches the server at least a window after request ``n`` was
admitted, whatever the latency of either, its legs or a queue in front of the server: the order
of cause and effect gives the margin (the rest of request ``n``'s round trip after its admission,
plus the first leg of request ``n + limit``). Counting from the start would have to guess that
margin: a request admitted late (a slow leg) followed by one admitted early could put
``limit + 1`` requests into the server's window, a 429. Nothing is assumed of either clock but
its rate; :data:`SAFETY_SHARE` covers that (two clocks disciplined by NTP drift apart by at most
500 ppm, NTP's largest slew, so 0.1 % of the window is twice what drift could take), which makes
the bound hold even on a link of no latency at all.

What it costs. One period of ``limit`` requests lasts ``window + latency`` (plus 0.1 %), not
``window``: a share ``latency / (window + latency)`` of the throughput. For the Signal API's
100 per 60 s that is 0.08 % at 50 ms and 0.33 % at 200 ms; a round trip of 3 s would be needed to
lose 5 %. Only short windows are hurt (200 ms against a 1 s window: 17 %), and the limits this
product meets are per minute, so counting from completion stays. ``bench/remote_pacing.py``
measures it against the ledger's own limiter (figures in ``docs/BENCHMARKS.md``).

One window per token and process: passes that post with the same token side by side (two
tenants' feeds naming one account, processed at once) share one limiter through
:func:`shared_limiter`, and a ``Retry-After`` one of them gets (:meth:`RateLimiter.pause`) holds
them all. Across processes the poster seeds each limiter with the completions of the last window
from the ``ingest_sends`` log, which covers processes that take turns (a run after the daemon's,
a tenant claimed by one run after another). Two processes posting with one token *at the same
moment* (two tenants sharing a token, claimed by two runs) each keep their own window; the
server's 429 and its ``Retry-After`` then pace them, and the poster honours it. A step of the
system clock between two processes (the log keeps wall-clock times) is the other thing it cannot
see.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator

#: A window is held this much longer than its nominal length: room for two clocks' rates.
SAFETY_SHARE = 0.001


class RateLimiter:
    """One token's window in this process: the completions of its last ``span`` seconds, the
    requests in flight, and a pause the server asked for."""

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"a rate limit needs limit >= 1 and window > 0, got {limit} per {window}s")
        self.limit = limit
        self.window = window
        #: How long a completed request counts: the window and its safety share.
        self.span = window * (1 + SAFETY_SHARE)
        self._completed: deque[float] = deque()
        self._in_flight = 0
        self._freed = asyncio.Event()
        self._paused_until = 0.0  # monotonic

    def seed(self, ages: Iterable[float]) -> None:
        """Count requests that completed ``age`` seconds ago (in an earlier process, say)."""
        now = time.monotonic()
        self._completed.extend(sorted(now - age for age in ages))

    def pause(self, seconds: float) -> None:
        """Let no request start for ``seconds`` from now (the server's ``Retry-After``)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        """Wait until one more request fits in every window, then count it as in flight."""
        while True:
            now = time.monotonic()
            if self._paused_until > now:
                await asyncio.sleep(self._paused_until - now)
                continue
            while self._completed and self._completed[0] + self.span <= now:
                self._completed.popleft()
            if len(self._completed) + self._in_flight < self.limit:
                self._in_flight += 1
                return
            if self._completed:
                await asyncio.sleep(self._completed[0] + self.span - now)
            else:
                await self._freed.wait()

    def release(self) -> None:
        """The request acquired last completed (with a response or an error) just now."""
        self._in_flight -= 1
        self._completed.append(time.monotonic())
        freed, self._freed = self._freed, asyncio.Event()
        freed.set()


_Ident = tuple[str, int, float]
# Per event loop (an asyncio.Event belongs to one): the limiters in use, and how many passes use each.
_in_use: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Ident, tuple[RateLimiter, int]]] = (
    weakref.WeakKeyDictionary())


@contextlib.contextmanager
def shared_limiter(key: str, limit: int, window: float,
                   seed: Callable[[RateLimiter], None]) -> Iterator[RateLimiter]:
    """The limiter of ``key`` that every pass of this process in progress shares.

    The first pass makes it and ``seed`` fills it (from the send log); once the last pass is done
    it is dropped, so the next pass starts from the log again and sees what other processes sent
    in between.
    """
    limiters = _in_use.setdefault(asyncio.get_running_loop(), {})
    ident = (key, limit, window)
    if ident in limiters:
        limiter, users = limiters[ident]
    else:
        limiter, users = RateLimiter(limit, window), 0
        seed(limiter)
    limiters[ident] = (limiter, users + 1)
    try:
        yield limiter
    finally:
        limiter, users = limiters[ident]
        if users == 1:
            del limiters[ident]
        else:
            limiters[ident] = (limiter, users - 1)
