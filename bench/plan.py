"""How big each case is: issue 5's sizes for the real run, small ones for ``--quick``."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
MB = 1000 * 1000

ALL_CASES = (1, 2, 3, 4, 5, 6, 7, 8)


@dataclass(frozen=True)
class Plan:
    runs: int = 5
    single_bytes: int = 200 * MiB
    batch_files: int = 40
    batch_file_bytes: int = 5 * MiB
    small_files: int = 1000
    small_file_bytes: int = 10 * KiB
    concurrent_clients: tuple[int, ...] = (20, 100)
    concurrent_file_bytes: int = 5 * MiB
    logins: int = 50
    idle_sessions: int = 500
    # How many idle sessions log in at once while the memory case builds them up.
    session_openers: int = 20
    # The processor's files: "5 MB", kept under the product's 5 MiB upload limit.
    signal_file_bytes: int = 5 * MB
    api_posts: int = 2000
    api_concurrency: int = 8
    # End to end posts every row of the file; a run takes minutes, and there is no peer to alternate with.
    e2e_runs: int = 3
    # A remote destination at its token's limit (case 8, bench/remote_pacing.py): one run, mostly idle.
    remote_limit: int = 100
    remote_window: float = 60.0
    remote_minutes: float = 5.0
    quick: bool = False

    @property
    def max_upload_bytes(self) -> int:
        """The size limit of the bench config: room for the single big upload."""
        return max(self.single_bytes, self.batch_file_bytes, self.concurrent_file_bytes) + MiB


FULL = Plan()

QUICK = Plan(
    runs=2,
    single_bytes=20 * MiB,
    batch_files=8,
    batch_file_bytes=1 * MiB,
    small_files=100,
    small_file_bytes=10 * KiB,
    concurrent_clients=(5, 10),
    concurrent_file_bytes=1 * MiB,
    logins=5,
    idle_sessions=40,
    signal_file_bytes=500 * 1000,
    api_posts=200,
    e2e_runs=1,
    remote_limit=50,
    remote_window=5.0,
    remote_minutes=0.5,
    quick=True,
)


def choose(quick: bool, runs: int | None) -> Plan:
    plan = QUICK if quick else FULL
    return dataclasses.replace(plan, runs=runs, e2e_runs=runs) if runs else plan


def parse_cases(text: str) -> tuple[int, ...]:
    """``"1,3"`` into ``(1, 3)``; argparse shows the error of anything else."""
    try:
        numbers = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected case numbers like 1,2,5, got {text!r}") from None
    if not numbers or any(number not in ALL_CASES for number in numbers):
        raise argparse.ArgumentTypeError(
            f"cases are {', '.join(map(str, ALL_CASES))}; got {text!r}")
    return tuple(numbers)
