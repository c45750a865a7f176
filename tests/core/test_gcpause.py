"""The collector's pause: counted across threads, and restored to what it was."""

from __future__ import annotations

import gc
import threading

from core.gcpause import collection_paused


def test_collection_pause_nests_and_restores() -> None:
    assert gc.isenabled()
    with collection_paused():
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_collection_pause_ends_with_the_last_thread() -> None:
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with collection_paused():
            entered.set()
            release.wait(timeout=10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(timeout=10)
    with collection_paused():
        pass
    assert not gc.isenabled()
    release.set()
    thread.join(timeout=10)
    assert gc.isenabled()
