"""Never two runs at once, across processes: an exclusive ``flock`` on ``data_dir/run.lock``.

The daemon's scheduled runs and ``sftpctl run`` are different processes sharing one state
database; the kernel lock is released when its holder exits, however it exits, so a crash never
leaves a stale lock behind. The holder's pid is written into the file for the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from core.errors import Conflict

LOCK_NAME = "run.lock"


class RunInProgress(RuntimeError, Conflict):
    """Another process (or task) holds the run lock; the message names its pid."""


class RunLock:
    """A non-blocking exclusive lock: ``with RunLock(data_dir):`` or ``acquire()``/``release()``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RunInProgress(f"a run is already in progress (pid {os.getpid()})")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunInProgress(f"a run is already in progress (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
