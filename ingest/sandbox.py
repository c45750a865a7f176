"""Run one piece of work on one untrusted file in a child process with hard limits.

Readers are compiled code fed by strangers: a 1.6 KB workbook with cells at ``A1`` and
``XFD1048576`` makes calamine ask for 512 GiB, and the Rust allocator then aborts the whole
process. So every file is read, validated and mapped in a child of its own, with an address-space
limit (the allocator fails inside the child), a CPU-time limit (the kernel stops a spinning child)
and a wall-time limit (the parent kills a stalled one). Whatever happens there, the parent learns
it as a :class:`WorkerFailed` with a reason a customer can act on, and the daemon, the run and every
other file go on.

Children come from a fork server started once, clean, with the readers already imported: a fork
costs milliseconds, not the second a fresh interpreter with polars would, and never copies the
daemon's event loop or threads. The function and its argument travel by pickle, so the function
must be importable at module level.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any, TypeVar, cast

from core.config import MiB, ParseSettings
from core.logs import configure_logging, get_logger

__all__ = ["Channel", "Limits", "Worker", "WorkerFailed", "run_limited", "start_limited"]

log = get_logger(__name__)

T = TypeVar("T")
A = TypeVar("A")

# Imported by the fork server before its first fork, so children start with them loaded.
#: What every child needs, imported once by the fork server: the readers (polars) among them,
#: which the parent does not load.
PRELOAD = ["ingest.prepare", "ingest.rows.readers", "ingest.rows.validate", "ingest.rows.mapping", "ingest.check",
           "ledger.plans", "ingest.delivery.ledger_writes"]
INTERNAL_ERROR = "the file could not be processed because of an internal error; the operators have been told"
# Seconds between the soft CPU limit (SIGXCPU) and the hard one (SIGKILL).
CPU_GRACE_SECONDS = 5

_context = multiprocessing.get_context("forkserver")
_preload_lock = threading.Lock()
_preloaded = False


@dataclass(frozen=True)
class Limits:
    """What one child may use: bytes of address space, seconds of CPU and of wall time."""

    memory_bytes: int
    cpu_seconds: float
    wall_seconds: float

    @classmethod
    def from_settings(cls, settings: ParseSettings) -> Limits:
        return cls(settings.memory_mib * MiB, settings.cpu_seconds, settings.wall_seconds)


class WorkerFailed(Exception):
    """The child did not return: ``reason`` says why in a customer's words, ``kind`` for operators
    (``memory``, ``cpu``, ``time``, ``crash`` or ``error``)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def run_limited(function: Callable[[A], T], argument: A, limits: Limits) -> T:
    """``function(argument)`` in a limited child; its result, or :class:`WorkerFailed`.

    Blocking: call it from a worker thread (``asyncio.to_thread``) in async code.
    """
    _ensure_preload()
    receiver, sender = _context.Pipe(duplex=False)
    child = _context.Process(target=_child_main, args=(sender, function, argument, limits, _log_level()),
                             daemon=True)
    started = time.monotonic()
    child.start()
    sender.close()
    try:
        outcome = _receive(receiver, child, limits.wall_seconds)
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join()
        exitcode = child.exitcode
        child.close()
    kind, value = outcome or _death(exitcode, limits, time.monotonic() - started)
    log.debug("sandbox.done", kind=kind, seconds=round(time.monotonic() - started, 3))
    if kind != "ok":
        raise WorkerFailed(kind, value)
    return cast(T, value)


class Channel:
    """The child's end of a :class:`Worker`: messages to and from the parent."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def send(self, message: Any) -> None:
        self._connection.send(("message", message))

    def receive(self) -> Any:
        """The parent's next message (blocking)."""
        return self._connection.recv()

    def waiting(self) -> bool:
        """True if the parent sent a message not received yet."""
        return self._connection.poll()


class Worker:
    """A limited child that exchanges messages with its parent while it works.

    Started by :func:`start_limited`; the child runs ``function(argument, channel)`` under the same
    limits as :func:`run_limited`. The parent sends messages, and receives each message the child
    sent, then :data:`Worker.DONE` once the function returned: a child that died, broke
    a limit or raised is a :class:`WorkerFailed` there. Blocking: call it from a worker thread.
    """

    DONE: Any = object()

    def __init__(self, function: Callable[[A, Channel], None], argument: A, limits: Limits,
                 task: str | None = None) -> None:
        _ensure_preload()
        self._connection, child_end = _context.Pipe(duplex=True)
        self._limits = limits
        self._task = task
        self._started = time.monotonic()
        self._deadline = self._started + limits.wall_seconds
        self._child = _context.Process(target=_talking_child_main,
                                       args=(child_end, function, argument, limits, _log_level()), daemon=True)
        self._child.start()
        child_end.close()
        self._done = False

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def send(self, message: Any) -> None:
        """Give the child ``message``; a child gone already is told by :meth:`receive`."""
        with contextlib.suppress(OSError):
            self._connection.send(message)

    def receive(self) -> Any:
        """The child's next message, or :data:`DONE` once it has returned."""
        if self._done:
            return self.DONE
        try:
            outcome = _receive(self._connection, self._child, self._limits.wall_seconds,
                               self._deadline - time.monotonic())
        except WorkerFailed as failed:
            self._close()
            raise self._failed(failed.kind, failed.reason, None) from None
        exitcode = None
        if outcome is None:
            exitcode = self._close()
            outcome = _death(exitcode, self._limits, time.monotonic() - self._started)
        kind, value = outcome
        if kind == "message":
            return value
        self._close()
        if kind != "ok":
            raise self._failed(kind, value, exitcode)
        return self.DONE

    def close(self) -> None:
        """Stop the child if it still runs (kill) and reap it."""
        self._close()

    def _failed(self, kind: str, reason: str, exitcode: int | None) -> WorkerFailed:
        """The failure, in the words of this worker's task if it has one (a file's, if not)."""
        if self._task is None:
            return WorkerFailed(kind, reason)
        limits = self._limits
        worded = {
            "time": f"took longer than the {limits.wall_seconds:g} seconds allowed",
            "cpu": f"needed more than the {limits.cpu_seconds:g} seconds of processing time allowed",
            "memory": f"needed more than the {limits.memory_bytes // MiB} MiB of memory allowed",
            "crash": f"stopped unexpectedly (exit status {exitcode})",
        }.get(kind, "raised an error (logged as sandbox.error)")
        return WorkerFailed(kind, f"{self._task} {worded}")

    def _close(self) -> int | None:
        self._done = True
        self._connection.close()
        if self._child.is_alive():
            self._child.kill()
        self._child.join()
        return self._child.exitcode


def start_limited(function: Callable[[A, Channel], None], argument: A, limits: Limits,
                  task: str | None = None) -> Worker:
    """``function(argument, channel)`` in a limited child that talks with the parent as it works;
    ``task`` names its work in the failures' reasons (reading a customer's file, if not given)."""
    return Worker(function, argument, limits, task)


def _receive(receiver: Connection, child: Any, wall_seconds: float,
             timeout: float | None = None) -> tuple[str, Any] | None:
    """The child's message, or None if it died without sending one; ``timeout`` is what is left of
    ``wall_seconds`` (all of it by default)."""
    if not receiver.poll(wall_seconds if timeout is None else max(0.0, timeout)):
        if child.is_alive():
            raise WorkerFailed(
                "time", f"reading the file took longer than the {wall_seconds:g} seconds allowed for one file"
            )
        return None
    try:
        message: tuple[str, Any] = receiver.recv()
    except (EOFError, OSError):
        return None
    return message


def _death(exitcode: int | None, limits: Limits, seconds: float) -> tuple[str, str]:
    """What a child that sent nothing died of, from its exit status and how long it ran.

    SIGKILL is the hard CPU limit only if the child could have used that much CPU time in
    ``seconds`` on this machine's cores; killed sooner, something else killed it (the kernel's
    OOM killer, an operator's ``kill -9``), and it is a crash, not a file's excess.
    """
    if exitcode == -signal.SIGXCPU or (exitcode == -signal.SIGKILL
                                       and seconds * _cores() >= limits.cpu_seconds):
        return "cpu", (
            f"reading the file needed more than the {limits.cpu_seconds:g} seconds of processing time"
            " allowed for one file"
        )
    if exitcode == -signal.SIGABRT:
        return "memory", _memory_reason(limits)
    return "crash", f"the file could not be read: the reader stopped unexpectedly (exit status {exitcode})"


def _cores() -> int:
    """The cores this process may run on (a child's threads use at most that many at once)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _memory_reason(limits: Limits) -> str:
    return (
        f"reading the file needed more than the {limits.memory_bytes // MiB} MiB of memory allowed for one"
        " file; a sheet whose used range is far larger than its data (a stray cell far down or to the"
        " right) or a workbook that unpacks to a huge size causes this: delete the empty rows and"
        " columns, or save the sheet as CSV"
    )


def _ensure_preload() -> None:
    """Name the modules the fork server imports, once, before it starts."""
    global _preloaded
    with _preload_lock:
        if not _preloaded:
            _context.set_forkserver_preload(["__main__", *_main_modules(), *PRELOAD])
            _preloaded = True


def _main_modules() -> list[str]:
    """The modules the parent's main script or module imported, or drew functions and classes from.

    multiprocessing makes every child run the parent's ``__main__`` again (as ``__mp_main__``).
    That is cheap only if what it imports is in the fork server already, and CPython 3.11's
    fork server never preloads ``__main__`` itself: it looks for ``main_path`` where spawn
    stores ``init_main_from_path`` (gh-126631, fixed in 3.13). Without this, every file would
    import the whole daemon again (0.33 s a file from the ``sftpd`` entry script, measured). A
    ``-m package`` main (``pytest``) is never run again, so it needs nothing.
    """
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if main is None or (name and name.endswith("__main__")):
        return []
    sources = {
        value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
        for value in vars(main).values() if callable(value) or isinstance(value, ModuleType)
    }
    return sorted(source for source in sources
                  if source and source in sys.modules and source not in ("__main__", "builtins", name))


def _child_main(sender: Connection, function: Callable[[Any], Any], argument: Any, limits: Limits,
                level: int = logging.INFO) -> None:
    """The child: log as the parent does, limit itself, run, send one message, exit."""
    _log_like_parent(level)
    _limit(limits)
    try:
        message: tuple[str, Any] = ("ok", function(argument))
    except MemoryError:
        message = ("memory", _memory_reason(limits))
    except BaseException as exc:  # noqa: BLE001 - a Rust panic arrives as a BaseException
        log.error("sandbox.error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        message = ("error", INTERNAL_ERROR)
    try:
        sender.send(message)
    except MemoryError:
        sender.send(("memory", _memory_reason(limits)))
    finally:
        sender.close()


def _talking_child_main(connection: Connection, function: Callable[[Any, Channel], None], argument: Any,
                        limits: Limits, level: int = logging.INFO) -> None:
    """A :class:`Worker`'s child: :func:`_child_main` with a channel to the parent."""
    _child_main(connection, lambda value: function(value, Channel(connection)), argument, limits, level)


def _log_level() -> int:
    """The level the parent logs at, for its children."""
    return logging.getLogger().getEffectiveLevel()


def _log_like_parent(level: int) -> None:
    """JSON lines on stderr at the parent's level: the fork server never configured logging, and
    Python's last-resort handler would print an error's event name alone, without its fields
    (what failed, the traceback)."""
    if not logging.getLogger().handlers:
        configure_logging(logging.getLevelName(level))


def _limit(limits: Limits) -> None:
    memory = int(limits.memory_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = max(1, int(limits.cpu_seconds + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + CPU_GRACE_SECONDS))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # A reader that aborts prints one line ("memory allocation of N bytes failed"), not a backtrace
    # of fifty lines in the middle of the daemon's JSON log.
    os.environ["RUST_BACKTRACE"] = "0"
    # Parsing yields to the SSH sessions and the API when the machine is busy.
    os.nice(5)
