"""Automatic garbage collection paused while bulk work builds many short-lived objects.

Reading, validating and mapping a 5 MB file allocates hundreds of thousands of small containers
that never form reference cycles, and so does writing its requests to the ledger (plans, calls,
signals, records, answers). CPython's collector is triggered by allocations, not by garbage, so it
runs full collections again and again over everything built so far and finds nothing: a quarter
to a third of the processor's time on such a file (``bench/processor_speed.py``), and about a
sixth of a ledger-writer child's (``ingest.delivery.ledger_writes``). Pausing it for those
seconds is the usual remedy; reference counting still frees everything that is not in a cycle,
and cycles made meanwhile anywhere in the process wait for the next collection.

The pause is process-wide, so it is counted: it ends when the last thread in a paused section
leaves it, and the collector is enabled again only if it was enabled before the first one entered.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collection_paused"]

_lock = threading.Lock()
_sections = 0
_was_enabled = False


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause automatic collection for the block (or, as a decorator, for each call)."""
    global _sections, _was_enabled
    with _lock:
        if _sections == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _sections += 1
    try:
        yield
    finally:
        with _lock:
            _sections -= 1
            if _sections == 0 and _was_enabled:
                gc.enable()
