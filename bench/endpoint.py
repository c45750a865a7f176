"""A running SFTP server as the benchmarks see it: where to log in, and where uploads land."""

from __future__ import annotations

import shutil
import socket
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import psutil

from bench import procs
from bench.cgroup import CpuGroup
from core.crypto import AtRest
from core.errors import SftpInboxError

HOST = "127.0.0.1"
REMOTE_INBOX = "in"
PORT_POLL_SECONDS = 0.05
# A server is idle when it uses less than this much CPU time over one window (5% of a core).
QUIET_WINDOW_SECONDS = 0.2
QUIET_CPU_SECONDS = 0.01


@dataclass(frozen=True)
class Endpoint:
    """``inbox`` is the local folder behind the remote ``in/``; ``pid`` roots the process tree.

    ``idle_processes`` is the tree's size with no client connected: OpenSSH is back to it once
    every session process has exited and been reaped. ``cpu_group`` holds the server and all it
    forks, where cgroups are available (see ``bench.cgroup``).
    """

    name: str
    port: int
    user: str
    password: str
    inbox: Path
    pid: int
    idle_processes: int = 1
    host: str = HOST
    cpu_group: CpuGroup | None = None

    @cached_property
    def process(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def remote(self, name: str) -> str:
        return f"{REMOTE_INBOX}/{name}"

    def cpu_seconds(self) -> float:
        if self.cpu_group is not None:
            return self.cpu_group.seconds()
        return procs.cpu_seconds(self.process)

    def settle(self, timeout: float) -> None:
        """Wait until the run's work is done: session processes gone, background work finished.

        Our server stages each upload in a worker thread after the client has gone; that CPU time
        belongs to the run that caused it, not to the next one.
        """
        deadline = time.monotonic() + timeout
        procs.wait_for_tree_size(self.process, self.idle_processes, timeout)
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(QUIET_WINDOW_SECONDS)
            now = self.cpu_seconds()
            if now - before < QUIET_CPU_SECONDS:
                return
            before = now

    def uploaded_size(self, name: str) -> int | None:
        """The plaintext's size: our server stores uploads sealed (docs/encryption.md)."""
        try:
            return AtRest.size(self.inbox / name)
        except (OSError, SftpInboxError):  # gone, or its header is damaged
            return None

    def clear_inbox(self) -> None:
        """Uploads of one run must not be overwrites in the next, nor fill the disk."""
        for entry in self.inbox.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_banner(port: int, timeout: float) -> bool:
    """True once something on ``port`` speaks SSH (sends its version line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=timeout) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(PORT_POLL_SECONDS)
    return False
