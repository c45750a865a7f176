"""One-thread workers: jobs run in the order they are submitted, off the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

__all__ = ["caught_up"]


async def caught_up(worker: ThreadPoolExecutor) -> None:
    """Wait until ``worker`` (one thread) has run every job submitted before this call.

    A one-thread executor takes jobs in order, so an empty job submitted now finishes last.
    """
    await asyncio.wrap_future(worker.submit(_nothing))


def _nothing() -> None:
    """A job that only marks a place in a worker's queue."""
