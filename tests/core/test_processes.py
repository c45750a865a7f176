"""core.processes: a process that exited is gone, even before its parent reaps it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from core.processes import process_exists


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
