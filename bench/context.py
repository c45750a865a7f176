"""What every case builder gets: the plan, the running servers (or why one is missing), the clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench.clients import AsyncsshClient, Client, SftpBinary
from bench.endpoint import Endpoint
from bench.our_server import OurServer
from bench.plan import Plan
from bench.runner import Measure, Outcome, Side
from bench.stats import Row

# OpenSSH's session processes exit a moment after the client has gone; their CPU time counts
# only once they have been reaped.
SETTLE_TIMEOUT_SECONDS = 30.0

ServerRun = Callable[[Endpoint], Awaitable[Outcome]]


@dataclass
class BenchContext:
    plan: Plan
    scratch: Path
    ours: OurServer | None = None
    ours_missing: str = "our server was not started"
    openssh: Endpoint | None = None
    openssh_missing: str = "OpenSSH was not started"
    # Case 3's second server of ours: ``[server] workers = WORKERS`` (compare.py starts it).
    ours_workers: OurServer | None = None
    ours_workers_missing: str = "our server with workers was not started"

    def __post_init__(self) -> None:
        self.clients: dict[str, Client] = {
            "sftp": SftpBinary(self.scratch / "sftp-client"),
            "asyncssh": AsyncsshClient(),
        }

    @property
    def payloads(self) -> Path:
        return self.scratch / "payloads"

    def server_measure(self, row: Row, run: ServerRun, workers: bool = False) -> Measure:
        """The same ``run`` against our server and OpenSSH; a missing server leaves its column empty.

        ``workers``: against our second server, the one with ``[server] workers`` > 1."""
        server, missing = ((self.ours_workers, self.ours_workers_missing) if workers
                           else (self.ours, self.ours_missing))
        if server is None and self.openssh is None:
            row.unavailable = f"{missing}; {self.openssh_missing}"
            return Measure(row, None, None)
        ours = server_side(server.endpoint, run) if server else None
        peer = server_side(self.openssh, run) if self.openssh else None
        return Measure(row, ours, peer, ours_missing=None if ours else missing,
                       peer_missing=None if peer else self.openssh_missing)

def server_side(endpoint: Endpoint, run: ServerRun) -> Side:
    async def sample() -> Outcome:
        return await run(endpoint)

    return Side(
        name=endpoint.name,
        run=sample,
        cpu_seconds=endpoint.cpu_seconds,
        settle=lambda: endpoint.settle(SETTLE_TIMEOUT_SECONDS),
        reset=endpoint.clear_inbox,
    )
