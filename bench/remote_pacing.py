"""Case 8: a remote Signal API destination, posted to at its token's rate limit.

``python -m bench.remote_pacing [--limit 100] [--window 60] [--minutes 5] [--latency-ms 0]``

The stand-in for Invoca is the embedded API of a data dir of its own (``ledger.app``, its
per-token sliding-window limit on: ``ledger/ratelimit.py``), served over HTTP on loopback in this
process, behind a thin ASGI wrapper that notes when each request arrived and its status, and can
add a round trip of latency (half before the request reaches the API, half before the answer
leaves). A second data dir is the inbox: a tenant whose calls feed has a ``[destination]`` with
that server's URL and token, and a calls file of more rows than the window lets through in the
measured time. ``Ingest.run`` (what ``sftpctl run`` calls) posts them: ``RemoteSignalApi``,
``Poster``, ``RateLimiter`` and the ``ingest_sends`` log, as shipped. The run is stopped once
``--minutes`` have passed since the server admitted its first request.

Figures, all from the server's side:

- *share of the limit*: the sustained rate over the limit. Request ``k + limit`` can be admitted
  no sooner than a window after request ``k``, so each gap between them is at least the window;
  their mean over the run is the period the pacing achieved, and ``window / mean gap`` is the
  share of the limit posted (1.0 is the limit exactly). A plain count over the span would not
  show a slow pacing: bursts of ``limit`` at each window's start fit five into five minutes even
  with 20 % lost per period.
- *admitted*: the requests admitted in the measured span, against the most a sliding window
  admits in it (``limit * ceil(span / window)``).
- *429s*: requests the server refused for the rate limit. The target is none.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from bench.runner import Measure, Outcome, Side
from bench.stats import Row

if TYPE_CHECKING:  # the case's context needs the bench extra (psutil); the module alone does not
    from bench.context import BenchContext

TENANT = "pacing"
EMAIL = "ops@pacing.example"
# A password only the bench's throwaway data dirs ever see.
PASSWORD = "bench-pacing-horse-battery"
API_VERSION = "2020-10-01"
HTTP_TOO_MANY_REQUESTS = 429
STARTUP_POLL_SECONDS = 0.01
PROGRESS_SECONDS = 30.0
# Rows beyond what the span can admit, so the poster never runs dry before the end.
SPARE_WINDOWS = 2

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Pacing:
    limit: int = 100
    window: float = 60.0
    seconds: float = 300.0
    latency: float = 0.0

    @property
    def rows(self) -> int:
        return self.limit * (math.ceil(self.seconds / self.window) + SPARE_WINDOWS)


@dataclass(frozen=True)
class PacingResult:
    pacing: Pacing
    admitted: int
    throttled: int
    other_errors: int
    gaps: list[float]

    @property
    def best(self) -> int:
        """The most a sliding window admits in the measured span."""
        return self.pacing.limit * math.ceil(self.pacing.seconds / self.pacing.window)

    @property
    def share(self) -> float:
        """The sustained rate as a share of the limit (see the module's docstring)."""
        return self.pacing.window / statistics.fmean(self.gaps) if self.gaps else 0.0

    def summary(self) -> str:
        p = self.pacing
        gaps = (f"gap between request k and k+{p.limit}: mean {statistics.fmean(self.gaps):.3f} s,"
                f" min {min(self.gaps):.3f} s (window {p.window:g} s)") if self.gaps else "no gaps"
        return (f"limit {p.limit} per {p.window:g} s, {p.seconds:g} s measured, latency {p.latency * 1000:g} ms:"
                f" {self.share * 100:.2f} % of the limit sustained; {self.admitted} admitted of at most"
                f" {self.best}; {self.throttled} x 429, {self.other_errors} other errors; {gaps}")


@dataclass
class Recorder:
    """An ASGI wrapper noting each request's arrival and status, adding a round trip of latency."""

    app: Asgi
    latency: float = 0.0
    answers: list[tuple[float, int]] = field(default_factory=list)
    #: Seconds from each request's arrival to its answer, in the server alone.
    service: list[float] = field(default_factory=list)
    first: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.latency:
            await asyncio.sleep(self.latency / 2)
        arrived = time.monotonic()

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.answers.append((arrived, int(message["status"])))
                self.service.append(time.monotonic() - arrived)
                if message["status"] != HTTP_TOO_MANY_REQUESTS:
                    self.first.set()
                if self.latency:
                    await asyncio.sleep(self.latency / 2)
            await send(message)

        await self.app(scope, receive, answer)

    def admitted(self) -> list[float]:
        return [at for at, status in self.answers if status != HTTP_TOO_MANY_REQUESTS]


class _Server(uvicorn.Server):
    """uvicorn inside this event loop, leaving the process's signals alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def calls_file(rows: int) -> str:
    """``rows`` distinct calls, a minute apart, in the shipped calls template."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    lines = ["customer_id,call_start,call_end,calling_phone_number,agent_queue_assigned"]
    for index in range(rows):
        begin = start + timedelta(minutes=index)
        end = begin + timedelta(seconds=90)
        lines.append(f"cust-{index},{begin:%Y-%m-%dT%H:%M:%SZ},{end:%Y-%m-%dT%H:%M:%SZ},"
                     f"+1 888555{index % 10000:04d},Sales")
    return "\n".join(lines) + "\n"


async def measure(pacing: Pacing, folder: Path, progress: Callable[[str], None] | None = None) -> PacingResult:
    """Serve the stand-in, post ``pacing.rows`` calls to it through ``Ingest.run``, read its log."""
    from core.config import Settings
    from core.passwords import PasswordHasher
    from core.tenants import TenantStore, open_state
    from core.uploads import UploadStore
    from ingest.pipeline import Ingest
    from ledger.app import create_app
    from ledger.store import LedgerStore

    say = progress or (lambda text: None)
    remote = Settings(data_dir=folder / "remote").replace(
        api__listen_host="127.0.0.1", api__rate_limit_requests=pacing.limit,
        api__rate_limit_window_seconds=pacing.window)
    remote_db = open_state(remote.state_db)
    remote_tenants = TenantStore(remote_db, remote.tenants_dir, PasswordHasher(remote.passwords))
    token = remote_tenants.add(TENANT, EMAIL, PASSWORD).api_token
    store = LedgerStore.open(remote.ledger_db)
    recorder = Recorder(create_app(remote, remote_tenants, store), pacing.latency)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(recorder, log_config=None, access_log=False, lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))

    inbox = Settings(data_dir=folder / "inbox").replace(
        server__keys_dir=folder / "keys",
        api__listen_host="127.0.0.1", api__listen_port=_free_port(), schedule__stable_seconds=0.0,
        post__rate_limit_requests=pacing.limit, post__rate_limit_window_seconds=pacing.window)
    db = open_state(inbox.state_db)
    tenants = TenantStore(db, inbox.tenants_dir, PasswordHasher(inbox.passwords))
    tenants.add(TENANT, EMAIL, PASSWORD)
    uploads = UploadStore(db)
    ingest = Ingest(inbox, db, tenants, uploads)
    ingest.feeds.set(TENANT, f'name = "remote"\ntemplate = "calls"\n[mapping]\nkind = "call"\n'
                             f'[destination]\nurl = "http://127.0.0.1:{port}/api/{API_VERSION}"\n'
                             f'token = "{token}"\n')
    data = calls_file(pacing.rows).encode()
    relative = "in/remote/calls.csv"
    path = tenants.folders(TENANT).root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    upload = uploads.record(TENANT, relative, len(data), hashlib.sha256(data).hexdigest(), source="sftp")
    try:
        while not server.started:
            await asyncio.sleep(STARTUP_POLL_SECONDS)
        await ingest.stage(upload, path)
        running = asyncio.create_task(ingest.run())
        first = asyncio.create_task(recorder.first.wait())
        await asyncio.wait([running, first], return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            first.cancel()
            running.result()
            raise RuntimeError("the run ended before the destination admitted anything")
        started = recorder.admitted()[0]
        end = started + pacing.seconds
        while (left := end - time.monotonic()) > 0 and not running.done():
            await asyncio.wait([running], timeout=min(left, PROGRESS_SECONDS))
            say(f"{time.monotonic() - started:5.0f} s: {len(recorder.admitted())} admitted,"
                f" {len(recorder.answers) - len(recorder.admitted())} x 429")
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    finally:
        await ingest.aclose()
        server.should_exit = True
        await serving
        store.close()
        db.close()
        remote_db.close()
    return _result(pacing, recorder)


def _result(pacing: Pacing, recorder: Recorder) -> PacingResult:
    admitted = recorder.admitted()
    start = admitted[0]
    inside = [at for at in admitted if at < start + pacing.seconds]
    gaps = [inside[k + pacing.limit] - inside[k] for k in range(len(inside) - pacing.limit)]
    throttled = sum(1 for at, status in recorder.answers
                    if status == HTTP_TOO_MANY_REQUESTS and at < start + pacing.seconds)
    # Every row is a new call: anything but 201 (and the 429s above) is an error of the run.
    other = sum(1 for at, status in recorder.answers
                if status not in (201, HTTP_TOO_MANY_REQUESTS) and at < start + pacing.seconds)
    return PacingResult(pacing, len(inside), throttled, other, gaps)


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def case_8(context: BenchContext) -> list[Measure]:
    """One row: the share of the limit sustained, the 429s as its errors."""
    plan = context.plan
    pacing = Pacing(plan.remote_limit, plan.remote_window, plan.remote_minutes * 60)
    row = Row(key="8.remote", case=8,
              title=(f"remote Signal API destination (the embedded API over HTTP, limit {pacing.limit}"
                     f" per {pacing.window:g} s): {pacing.seconds / 60:g} min of `sftpctl run`'s posting"),
              variant="httpx, loopback", unit="% of limit", higher_is_better=True, peer_name="—")
    runs = iter(range(1_000_000))

    async def ours() -> Outcome:
        folder = context.scratch / f"remote-pacing-{next(runs)}"
        result = await measure(pacing, folder, _progress)
        return Outcome(result.share * 100, errors=result.throttled + result.other_errors,
                       note=(f"{result.admitted} admitted of at most {result.best}, {result.throttled} x 429;"
                             f" mean gap k..k+{pacing.limit} {statistics.fmean(result.gaps):.3f} s"
                             if result.gaps else "no full window measured"))

    return [Measure(row, Side("ours", ours), None, runs=1)]


def _progress(text: str) -> None:
    print(f"[8.remote] {text}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--limit", type=int, default=100, help="requests per window (default 100)")
    parser.add_argument("--window", type=float, default=60.0, help="window in seconds (default 60)")
    parser.add_argument("--minutes", type=float, default=5.0, help="measured span (default 5)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="round trip added by the server, half each way (default 0)")
    args = parser.parse_args()
    pacing = Pacing(args.limit, args.window, args.minutes * 60, args.latency_ms / 1000)
    with tempfile.TemporaryDirectory(prefix="remote-pacing-") as folder:
        result = asyncio.run(measure(pacing, Path(folder), _progress))
    print(result.summary())


if __name__ == "__main__":
    main()
