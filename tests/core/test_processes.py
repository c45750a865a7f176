"""core.processes: a process that exited is gone, even before its parent reaps it; a lease holder
lives while its lease lasts and, on this host, while its process does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from core.processes import holder_lives, process_exists


def test_a_zombie_counts_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[-1][:1] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        assert not process_exists(child.pid)  # exited, not yet reaped
        assert process_exists(os.getpid())
    finally:
        child.wait()
    assert not process_exists(child.pid)


def test_a_holder_lives_while_its_lease_lasts_and_here_while_its_process_does() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid is free
    now = time.time()
    assert holder_lives("here", os.getpid(), now + 60, now, "here")
    assert not holder_lives("here", os.getpid(), now, now, "here")  # the lease ran out
    assert not holder_lives("here", dead.pid, now + 60, now, "here")  # gone, and on this host
    assert holder_lives("there", dead.pid, now + 60, now, "here")  # elsewhere only the lease tells
