"""The client's limiter: a request counts until a window after it completed, so the server's
own sliding window (``ledger.ratelimit``) never sees more than the limit, whatever the latency."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from ingest.delivery.ratelimit import RateLimiter, shared_limiter
from ledger.ratelimit import SlidingWindowLimiter


async def test_a_burst_goes_through_then_the_next_waits_for_the_window() -> None:
    limiter = RateLimiter(2, 0.2)
    started = time.monotonic()
    for _ in range(2):
        await limiter.acquire()
        limiter.release()
    assert time.monotonic() - started < 0.2
    await limiter.acquire()
    assert time.monotonic() - started >= 0.2


async def test_a_request_counts_from_its_completion_not_its_start() -> None:
    limiter = RateLimiter(1, 0.2)
    await limiter.acquire()
    await asyncio.sleep(0.15)  # a slow answer
    limiter.release()
    completed = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - completed >= 0.2


async def test_a_request_in_flight_holds_its_place_until_it_completes() -> None:
    limiter = RateLimiter(1, 0.1)
    await limiter.acquire()
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.3)  # three windows, and the request has not completed yet
    assert not waiting.done()
    limiter.release()
    completed = time.monotonic()
    await waiting
    assert time.monotonic() - completed >= 0.1


async def test_sends_of_an_earlier_process_count_until_their_window_ends() -> None:
    limiter = RateLimiter(2, 0.2)
    limiter.seed([0.05, 5.0])  # one 50 ms ago, one long gone
    started = time.monotonic()
    await limiter.acquire()
    limiter.release()
    assert time.monotonic() - started < 0.15
    await limiter.acquire()  # the window still holds the seeded send and the one just made
    assert time.monotonic() - started >= 0.15


def test_a_limit_needs_a_request_and_a_window() -> None:
    with pytest.raises(ValueError, match="limit >= 1"):
        RateLimiter(0, 1.0)
    with pytest.raises(ValueError, match="window > 0"):
        RateLimiter(1, 0.0)


async def test_the_servers_sliding_window_never_refuses_whatever_the_latency() -> None:
    """Requests of random latency, each admitted by the ledger's own limiter at a random moment
    between its start and its completion (as a server would): not one is refused."""
    limit, window = 4, 0.25
    client = RateLimiter(limit, window)
    server = SlidingWindowLimiter(limit, window)
    rng = random.Random(12)
    refused: list[float] = []

    async def request() -> None:
        await client.acquire()
        try:
            await asyncio.sleep(rng.uniform(0.0, 0.06))  # the request's way there
            if wait := server.acquire("token"):
                refused.append(wait)
            await asyncio.sleep(rng.uniform(0.0, 0.06))  # the answer's way back
        finally:
            client.release()

    for _ in range(6):  # one at a time, as the poster posts a token's rows, then in parallel
        await request()
    await asyncio.gather(*(request() for _ in range(14)))
    assert refused == []


async def test_a_pause_holds_every_request_until_it_ends() -> None:
    limiter = RateLimiter(10, 1.0)
    limiter.pause(0.2)
    limiter.pause(0.05)  # a shorter pause never shortens a longer one
    started = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - started >= 0.2


async def test_passes_in_progress_share_one_limiter_per_key_and_the_next_pass_starts_from_the_log() -> None:
    seeded: list[RateLimiter] = []
    with shared_limiter("k", 2, 1.0, seeded.append) as first:
        with shared_limiter("k", 2, 1.0, seeded.append) as second, \
                shared_limiter("other", 2, 1.0, seeded.append) as other:
            assert second is first and other is not first
        with shared_limiter("k", 2, 1.0, seeded.append) as third:
            assert third is first
    assert seeded == [first, other]  # each seeded once, when made
    with shared_limiter("k", 2, 1.0, seeded.append) as later:
        assert later is not first and seeded[-1] is later
