"""Whether a process of this host still lives: how a holder's death is told before its lease ends.

Claims (``ingest.claims``) and logged-in sessions (``sftpd.sessions``) name the process that
holds them; one that was killed (``kill -9``, a crash) frees what it held at once on its own
host, while on another host only its lease running out can tell.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["holder_lives", "process_exists"]


def holder_lives(host: str, pid: int, expires_at: float, now: float, here: str) -> bool:
    """Whether what a process holds with a lease (a claim, a session) is still its: the lease
    has not run out, and a holder of this host (``here``) still exists."""
    if expires_at <= now:
        return False
    return host != here or process_exists(pid)


def process_exists(pid: int) -> bool:
    """True if ``pid`` is a process of this host that has not exited (a zombie has exited)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    # The state follows the parenthesised command name, which may itself hold parentheses.
    return stat[stat.rfind(")") + 2:][:1] != "Z"
