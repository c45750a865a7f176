"""A sliding-window log limiter: at most ``limit`` requests in any window of ``window`` seconds.

A request counts from the moment it is allowed to start until ``window`` seconds after it
*completed*. Counting from completion rather than from start makes the limit hold as the server
sees it too: the server receives a request somewhere between the two, so no server-side window
can hold more requests than the limiter let through.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable


class RateLimiter:
    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"a rate limit needs limit >= 1 and window > 0, got {limit} per {window}s")
        self.limit = limit
        self.window = window
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
            while self._completed and self._completed[0] + self.window <= now:
                self._completed.popleft()
            if len(self._completed) + self._in_flight < self.limit:
                self._in_flight += 1
                return
            if self._completed:
                await asyncio.sleep(self._completed[0] + self.window - now)
            else:
                await self._freed.wait()

    def release(self) -> None:
        """The request acquired last completed (with a response or an error) just now."""
        self._in_flight -= 1
        self._completed.append(time.monotonic())
        freed, self._freed = self._freed, asyncio.Event()
        freed.set()
