"""Cases 4 and 5: what a login costs in time, and what an idle logged-in session costs in memory.

Our logins are checked against the tenant's real argon2id hash (made by ``sftpctl`` with the
shipped OWASP-minimum cost); OpenSSH's against the system user's password through PAM or shadow.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import asyncssh

from bench import procs
from bench.clients import DEFAULTS, PINNED, AsyncsshClient, Client, Crypto
from bench.context import BenchContext, ServerRun
from bench.endpoint import Endpoint
from bench.runner import Measure, Outcome
from bench.stats import Row

PEER = "OpenSSH internal-sftp"
LOGIN_VARIANTS: tuple[tuple[str, Crypto], ...] = (("asyncssh", PINNED), ("sftp", PINNED), ("sftp", DEFAULTS))
# Sessions are left alone this long before their memory is read, so start-up garbage settles.
IDLE_SETTLE_SECONDS = 2.0
ERROR_TEXT_CHARS = 120


def case_4(context: BenchContext) -> list[Measure]:
    plan = context.plan
    return [
        context.server_measure(
            Row(key=f"4.login.{client_name}.{crypto.key}", case=4,
                title=f"login: connect, password, open SFTP, close (mean of {plan.logins})",
                variant=f"{client_name}, {crypto.label}", unit="ms", higher_is_better=False,
                peer_name=PEER),
            _logins(context.clients[client_name], crypto, plan.logins),
        )
        for client_name, crypto in LOGIN_VARIANTS
    ]


def case_5(context: BenchContext) -> list[Measure]:
    plan = context.plan
    return [context.server_measure(
        Row(key="5.rss.asyncssh.pinned", case=5,
            title=f"{plan.idle_sessions} idle logged-in SFTP sessions: resident memory of the server",
            variant=f"asyncssh, {PINNED.label}", unit="MiB RSS", higher_is_better=False, peer_name=PEER),
        _idle_sessions(plan.idle_sessions, plan.session_openers),
    )]


def _logins(client: Client, crypto: Crypto, count: int) -> ServerRun:
    async def run(endpoint: Endpoint) -> Outcome:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            await client.login(endpoint, crypto)
            times.append((time.perf_counter() - start) * 1000)
        return Outcome(statistics.mean(times), note=f"median {statistics.median(times):.0f} ms")

    return run


def _idle_sessions(count: int, openers: int) -> ServerRun:
    """Hold ``count`` sessions open from this process, read the server tree's RSS, close them."""

    async def run(endpoint: Endpoint) -> Outcome:
        idle = procs.resident_mib(endpoint.process)
        options = AsyncsshClient.options(endpoint, PINNED)
        gate = asyncio.Semaphore(openers)
        held: list[tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]] = []

        async def open_one() -> None:
            async with gate:
                connection = await asyncssh.connect(endpoint.host, endpoint.port, options=options)
                try:
                    held.append((connection, await connection.start_sftp_client()))
                except BaseException:
                    connection.close()
                    raise

        try:
            results = await asyncio.gather(*(open_one() for _ in range(count)), return_exceptions=True)
            await asyncio.sleep(IDLE_SETTLE_SECONDS)
            resident = procs.resident_mib(endpoint.process)
            proportional = procs.proportional_mib(endpoint.process)
        finally:
            for connection, sftp in held:
                sftp.exit()
                connection.close()
            await asyncio.gather(*(connection.wait_closed() for connection, _ in held),
                                 return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        note = (f"{len(held)} sessions; PSS {proportional:.0f} MiB; idle server {idle:.0f} MiB RSS"
                + (f"; first error: {str(failures[0])[:ERROR_TEXT_CHARS]}" if failures else ""))
        return Outcome(resident, errors=len(failures), note=note)

    return run
