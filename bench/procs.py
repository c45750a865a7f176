"""CPU time and memory of a server's whole process tree.

OpenSSH forks a monitor and a session process per login, and they are gone by the time a run ends.
Their CPU time is not lost: a parent that reaps a child adds the child's time (and that of the
child's reaped children) to its own ``children_*`` times. So the tree's total is, over the live
processes, their own time plus what they reaped; each second is counted exactly once.
"""

from __future__ import annotations

import resource
import time

import psutil

MiB = 1024 * 1024
SETTLE_POLL_SECONDS = 0.05


def tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(root: psutil.Process) -> float:
    """User + system seconds the tree has used since ``root`` started, reaped children included."""
    total = 0.0
    for process in tree(root):
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def resident_mib(root: psutil.Process) -> float:
    """Sum of RSS over the tree: what ``ps`` shows, shared pages counted once per process."""
    total = 0
    for process in tree(root):
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / MiB


def proportional_mib(root: psutil.Process) -> float:
    """Sum of PSS over the tree: shared pages split between the processes sharing them."""
    total = 0
    for process in tree(root):
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
            continue
    return total / MiB


def wait_for_tree_size(root: psutil.Process, size: int, timeout: float) -> bool:
    """Wait until per-connection processes have exited, so their CPU time has been reaped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(tree(root)) <= size:
            return True
        time.sleep(SETTLE_POLL_SECONDS)
    return False


def raise_open_file_limit() -> int:
    """Hundreds of sessions need more descriptors than the usual soft limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
