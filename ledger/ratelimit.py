"""A per-key sliding-window limit: never more than N admissions in any window of W seconds."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """Keeps the admission times of each key's last ``limit`` requests.

    A request is admitted when fewer than ``limit`` admissions fall within the past ``window``
    seconds; otherwise the caller learns how long until the oldest one leaves the window. Refused
    requests are not counted, so a client that honours ``Retry-After`` is never starved.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._admitted: dict[str, deque[float]] = {}

    def acquire(self, key: str) -> float:
        """0 if admitted now, else the seconds to wait before asking again."""
        now = self._clock()
        times = self._admitted.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.limit:
            times.append(now)
            return 0.0
        return times[0] + self.window - now


def retry_after_header(wait_seconds: float) -> int:
    """Whole seconds for ``Retry-After``, rounded up so a retry at that time is admitted."""
    return max(1, math.ceil(wait_seconds))
