"""``[server] workers = N``: a supervisor and N processes serving SSH on one port.

Python runs one event loop on one core; a front door on every core takes more processes. The
supervisor is the process the operator starts (``sftpd serve``). It prepares what must be made
once (the demo tenant, host keys, the master key, the databases' migrations, the clearing of
partial uploads a previous run left), then starts N workers, each ``sftpd serve`` again with a
hidden ``--worker I``: a fresh interpreter (no fork of a process holding threads or a loop). Each
worker listens on ``listen_port`` with ``SO_REUSEPORT``, so the kernel spreads new connections over
them, and is a full front door: logins, the defender, uploads, their recording and staging. What
must stay consistent between them lives in the state database, which every worker opens: the
defender's failures and lockouts, upload records, staging, claims.

Worker 0 alone also runs the schedule (scan, runs, retention), the embedded API and the admin
listener, so each scheduled run happens once. Worker 0 rather than the supervisor: the
supervisor stays small (no asyncssh, no database after start, nothing that can crash it but a
bug in this module), and a failure of those services is a worker's death, restarted like any
other, with the run's claims taken over from the dead pid. The admin listener's live figures
(open connections, limit refusals, password attempts) are worker 0's own; the database's figures
are everyone's.

A tenant's sessions are counted in the database (:mod:`sftpd.sessions`), so its cap holds for
the machine. The connection caps of :mod:`sftpd.limits` are counted in each process.
``max_connections`` is shared out (each worker takes 1/N, rounded up), so the machine as a whole
keeps about the operator's figure. The per-source caps hold whole in each worker (a source may
hold up to N times them on the machine): the kernel hashes one source's connections over the
workers unevenly, so a share would refuse a burst of logins from one address (a NAT) on one
worker while the others have room.

A worker that dies is started again after a pause that doubles from
:data:`FIRST_BACKOFF_SECONDS` up to :data:`MAX_BACKOFF_SECONDS` (back to the first once a worker
has served :data:`STEADY_SECONDS`). SIGTERM or SIGINT to the supervisor is passed to every
worker (as SIGTERM), which drains as one daemon does (``[server] drain_seconds``); a second one
ends them at once (SIGKILL), and the supervisor with the signal. A worker takes any signal of
its own as a drain, whoever sends it: systemd's ``KillMode=control-group`` signals every process
of the unit and then the supervisor passes it on, which must not count as a second. Workers run
in a session of their own (a terminal's ^C reaches the supervisor only) and end with the
supervisor (``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.config import Settings
from core.logs import get_logger

log = get_logger("sftpd.workers")

READY_PREFIX = "sftpd: listening on"
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
STEADY_SECONDS = 60.0
START_TIMEOUT_SECONDS = 120.0
_PR_SET_PDEATHSIG = 1


def worker_settings(settings: Settings) -> Settings:
    """A worker's settings: ``max_connections`` shared out over the workers (see above)."""
    count = settings.server.worker_count
    if count <= 1:
        return settings
    return settings.replace(server__max_connections=math.ceil(settings.server.max_connections / count))


def become_worker(index: int) -> None:
    """In a worker: every log line names it, and it ends when the supervisor does."""

    class _Named(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.fields = {**getattr(record, "fields", {}), "worker": index}
            return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(_Named())
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: a killed supervisor leaves workers serving
        pass


def prepare(settings: Settings, demo: bool) -> None:
    """What is made once, before any worker starts: no two workers race to make a key."""
    from service.context import Context
    from service.daemon import ensure_demo_tenant
    from sftpd.hostkeys import load_or_create_host_keys
    from sftpd.server import clear_in_flight

    context = Context(settings)
    try:
        _ = context.at_rest  # first: a missing or wrong master key stops everything untouched
        if demo:
            ensure_demo_tenant(context)
        _ = context.ingest, context.defender  # migrations applied
        load_or_create_host_keys(settings.server.keys_dir)
        clear_in_flight(settings)
    finally:
        context.close()


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    backoff: float = FIRST_BACKOFF_SECONDS
    ready: asyncio.Future[str] | None = None
    output: asyncio.Task[None] | None = None
    restarts: int = field(default=0)


class Supervisor:
    """Starts, watches and stops the workers; ``await run()`` returns the exit status."""

    def __init__(self, settings: Settings, argv: Sequence[str]) -> None:
        self._count = settings.server.worker_count
        self._argv = list(argv)
        self._workers = [_Worker(index) for index in range(self._count)]
        self._stop = asyncio.Event()
        self._signals = 0

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        for worker in self._workers:
            await self._start(worker)
        try:
            lines = await asyncio.wait_for(
                asyncio.gather(*(w.ready for w in self._workers if w.ready is not None)),
                START_TIMEOUT_SECONDS)
        except (TimeoutError, RuntimeError) as exc:
            print(f"sftpd: cannot start: a worker did not start ({exc})", file=sys.stderr, flush=True)
            await self._stop_all(signal.SIGKILL)
            return 1
        log.info("workers.ready", workers=self._count,
                 pids=[w.process.pid for w in self._workers if w.process is not None])
        print(f"{lines[0]} ({self._count} workers)", flush=True)
        watchers = {asyncio.create_task(self._watch(w)) for w in self._workers}
        await self._stop.wait()
        log.info("workers.stopping", workers=self._count)
        await self._stop_all(signal.SIGTERM)
        results = await asyncio.gather(*watchers)
        failed = [code for code in results if code != 0]
        log.info("workers.stopped", exit_codes=results)
        return 1 if failed else 0

    async def _start(self, worker: _Worker) -> None:
        worker.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.daemon", *self._argv, "--no-demo", "--worker",
            str(worker.index), stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True)  # a terminal's ^C reaches the supervisor alone
        worker.started = time.monotonic()
        worker.ready = asyncio.get_running_loop().create_future()
        worker.output = asyncio.create_task(self._relay(worker.process, worker.ready))
        log.info("workers.started", worker=worker.index, pid=worker.process.pid)

    async def _relay(self, process: asyncio.subprocess.Process, ready: asyncio.Future[str]) -> None:
        """Pass a worker's stdout on, but for its ready line, which the supervisor says once."""
        assert process.stdout is not None
        while line := (await process.stdout.readline()).decode(errors="replace"):
            if line.startswith(READY_PREFIX) and not ready.done():
                ready.set_result(line.rstrip("\n"))
            else:
                sys.stdout.write(line)
                sys.stdout.flush()
        if not ready.done():
            ready.set_exception(RuntimeError(f"worker exited with status {await process.wait()}"))

    async def _watch(self, worker: _Worker) -> int:
        """Restart ``worker`` whenever it dies, until the supervisor stops; its last status."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            if worker.output is not None:
                await worker.output
            if self._stop.is_set():
                return code
            served = time.monotonic() - worker.started
            if served >= STEADY_SECONDS:
                worker.backoff = FIRST_BACKOFF_SECONDS
            log.error("workers.died", worker=worker.index, pid=worker.process.pid, status=code,
                      restart_in_seconds=worker.backoff)
            try:
                await asyncio.wait_for(self._stop.wait(), worker.backoff)
                return code
            except TimeoutError:
                pass
            worker.backoff = min(worker.backoff * 2, MAX_BACKOFF_SECONDS)
            worker.restarts += 1
            await self._start(worker)
            if self._stop.is_set():  # stopped while it started: it drains with the others
                self._send(signal.SIGTERM)

    def _on_signal(self, signum: int) -> None:
        """The first signal drains every worker; a second is passed on and ends them at once."""
        self._signals += 1
        if self._signals == 1:
            self._stop.set()
            return
        log.warning("workers.stop_forced", signal=signal.Signals(signum).name)
        self._send(signal.SIGKILL)
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    async def _stop_all(self, signum: int) -> None:
        self._send(signum)
        if signum == signal.SIGKILL:
            await asyncio.gather(*(w.process.wait() for w in self._workers if w.process is not None))

    def _send(self, signum: int) -> None:
        for worker in self._workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signum)


def supervise(settings: Settings, argv: Sequence[str]) -> int:
    """``sftpd serve`` with ``workers`` > 1: prepare, then run the workers until stopped.

    Preparing runs in a process of its own (``serve --prepare``), so that the supervisor never
    imports the stores: it stays a small process (see docs/workers.md for the figures)."""
    prepared = subprocess.run([sys.executable, "-m", "service.daemon", *argv, "--prepare"],
                              stdin=subprocess.DEVNULL, check=False)
    if prepared.returncode != 0:
        return prepared.returncode
    return asyncio.run(Supervisor(settings, argv).run())
