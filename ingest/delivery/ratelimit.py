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

Across processes the poster seeds each limiter with the completions of the last window from the
``ingest_sends`` log (wall-clock times; a step of the system clock between two processes is the
one thing this cannot see, and the poster honours the 429 it would bring).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable

#: A window is held this much longer than its nominal length: room for two clocks' rates.
SAFETY_SHARE = 0.001


class RateLimiter:
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

    def seed(self, ages: Iterable[float]) -> None:
        """Count requests that completed ``age`` seconds ago (in an earlier process, say)."""
        now = time.monotonic()
        self._completed.extend(sorted(now - age for age in ages))

    async def acquire(self) -> None:
        """Wait until one more request fits in every window, then count it as in flight."""
        while True:
            now = time.monotonic()
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
