"""Cases 1-3: uploads. One big file, the product's real shape (many 5 MB files in one session),
many small files, and many clients at once, each with its own password login.

Every upload is checked on the server's disk afterwards: a file that is missing or short counts
as an error, so a server cannot look fast by dropping data.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.clients import DEFAULTS, PINNED, Client, Crypto
from bench.context import BenchContext, ServerRun
from bench.endpoint import Endpoint
from bench.payloads import random_file
from bench.plan import KiB, MiB
from bench.runner import Measure, Outcome
from bench.stats import Row

PEER = "OpenSSH internal-sftp"
# Case 3's second server of ours runs this many workers ([server] workers).
WORKERS = 2
# Each throughput case runs with both clients pinned alike, then with the sftp binary and
# whatever each server prefers.
VARIANTS: tuple[tuple[str, Crypto], ...] = (("sftp", PINNED), ("asyncssh", PINNED), ("sftp", DEFAULTS))
CONCURRENT_VARIANTS: tuple[tuple[str, Crypto], ...] = (("sftp", PINNED), ("asyncssh", PINNED))
ERROR_TEXT_CHARS = 120


def case_1(context: BenchContext) -> list[Measure]:
    plan = context.plan
    measures = []
    for client_name, crypto in VARIANTS:
        client = context.clients[client_name]
        single = random_file(context.payloads, plan.single_bytes)
        measures.append(context.server_measure(
            _row(f"1.single.{client_name}.{crypto.key}", 1,
                 f"1 x {_size(plan.single_bytes)} upload", client_name, crypto, "MiB/s"),
            _sequential(client, crypto, [(single, "single.csv")], plan.single_bytes, per_file=False),
        ))
        batch = random_file(context.payloads, plan.batch_file_bytes)
        files = [(batch, f"batch{index:03d}.csv") for index in range(plan.batch_files)]
        measures.append(context.server_measure(
            _row(f"1.batch.{client_name}.{crypto.key}", 1,
                 f"{plan.batch_files} x {_size(plan.batch_file_bytes)}, one session", client_name, crypto,
                 "MiB/s"),
            _sequential(client, crypto, files, plan.batch_file_bytes, per_file=False),
        ))
    return measures


def case_2(context: BenchContext) -> list[Measure]:
    plan = context.plan
    small = random_file(context.payloads, plan.small_file_bytes)
    files = [(small, f"small{index:04d}.csv") for index in range(plan.small_files)]
    return [
        context.server_measure(
            _row(f"2.small.{client_name}.{crypto.key}", 2,
                 f"{plan.small_files:,} x {_size(plan.small_file_bytes)}, one session", client_name, crypto,
                 "files/s"),
            _sequential(context.clients[client_name], crypto, files, plan.small_file_bytes, per_file=True),
        )
        for client_name, crypto in VARIANTS
    ]


def case_3(context: BenchContext) -> list[Measure]:
    """One row per client count and client against our server as shipped (one process), then the
    same rows against our server with ``[server] workers = WORKERS`` (keys ``3.w2.``)."""
    plan = context.plan
    payload = random_file(context.payloads, plan.concurrent_file_bytes)
    return [
        context.server_measure(
            _row(f"3.{f'w{WORKERS}.' if workers else ''}c{clients}.{client_name}.{crypto.key}", 3,
                 f"{clients} concurrent clients x {_size(plan.concurrent_file_bytes)}, each logs in"
                 + (f", {WORKERS} workers" if workers else ""),
                 client_name, crypto, "MiB/s"),
            _concurrent(context.clients[client_name], crypto, payload, plan.concurrent_file_bytes, clients),
            workers=workers,
        )
        for workers in (False, True)
        for clients in plan.concurrent_clients
        for client_name, crypto in CONCURRENT_VARIANTS
    ]


def _sequential(client: Client, crypto: Crypto, files: list[tuple[Path, str]], size: int,
                per_file: bool) -> ServerRun:
    """Upload ``files`` in one session; MiB/s, or files/s with ``per_file``."""

    async def run(endpoint: Endpoint) -> Outcome:
        start = time.perf_counter()
        await client.upload(endpoint, crypto, files)
        elapsed = time.perf_counter() - start
        errors = sum(endpoint.uploaded_size(name) != size for _, name in files)
        value = len(files) / elapsed if per_file else len(files) * size / MiB / elapsed
        return Outcome(value, errors)

    return run


def _concurrent(client: Client, crypto: Crypto, payload: Path, size: int, clients: int) -> ServerRun:
    """``clients`` sessions at once, each with a login and one upload; aggregate MiB/s of good files."""

    async def run(endpoint: Endpoint) -> Outcome:
        names = [f"client{index:03d}.csv" for index in range(clients)]

        async def one(name: str) -> None:
            await client.upload(endpoint, crypto, [(payload, name)])

        start = time.perf_counter()
        results = await asyncio.gather(*(one(name) for name in names), return_exceptions=True)
        elapsed = time.perf_counter() - start
        good = sum(endpoint.uploaded_size(name) == size for name in names)
        failures = [result for result in results if isinstance(result, BaseException)]
        note = f"first error: {str(failures[0])[:ERROR_TEXT_CHARS]}" if failures else ""
        return Outcome(good * size / MiB / elapsed, clients - good, note)

    return run


def _row(key: str, case: int, title: str, client: str, crypto: Crypto, unit: str) -> Row:
    return Row(key=key, case=case, title=title, variant=f"{client}, {crypto.label}", unit=unit,
               higher_is_better=True, peer_name=PEER)


def _size(size: int) -> str:
    if size >= MiB:
        return f"{size / MiB:g} MiB"
    return f"{size / KiB:g} KiB"
