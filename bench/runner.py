"""Alternating runs: ours, peer, ours, peer, ... so drift of the machine hits both sides alike.

A *measure* is one row of the table with up to two sides. A side knows how to take one sample
(the figure, timed by the side itself since what is timed differs per case), how to read its CPU
time, and how to get back to a clean state between runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.errors import NotAvailable
from bench.stats import Row, Sample, Series, format_number

ERROR_TEXT_CHARS = 160


@dataclass(frozen=True)
class Outcome:
    """One run's figure in the row's unit; ``errors`` are failures inside a run that finished."""

    value: float
    errors: int = 0
    note: str = ""


def _nothing() -> None:
    return None


def process_cpu_seconds() -> float:
    """CPU time of this process, for sides that run in the harness itself."""
    return time.process_time()


@dataclass
class Side:
    name: str
    run: Callable[[], Awaitable[Outcome]]
    cpu_seconds: Callable[[], float] = process_cpu_seconds
    settle: Callable[[], None] = _nothing
    reset: Callable[[], None] = _nothing


@dataclass
class Measure:
    """A row and its sides; a missing peer (``None``) leaves the peer column empty."""

    row: Row
    ours: Side | None
    peer: Side | None
    ours_missing: str | None = None
    peer_missing: str | None = None
    runs: int | None = None
    sides: list[tuple[Side, Series]] = field(init=False)

    def __post_init__(self) -> None:
        self.sides = [(side, series) for side, series in ((self.ours, self.row.ours),
                                                          (self.peer, self.row.peer)) if side]


async def run_measure(measure: Measure, runs: int) -> Row:
    """Take ``runs`` samples of each side (or the measure's own count), alternating.

    Never raises for a broken side: its failures become the row's figures.
    """
    row = measure.row
    runs = measure.runs or runs
    if measure.ours_missing:
        row.ours.fail(measure.ours_missing)
    if measure.peer_missing:
        row.peer.fail(measure.peer_missing)
    if row.unavailable:
        _progress(f"[{row.key}] n/a ({row.unavailable})")
        return row
    for index in range(runs):
        for side, series in measure.sides:
            try:
                await _sample(side, series, row, f"run {index + 1}/{runs}")
            except NotAvailable as exc:
                row.unavailable = str(exc)
                _progress(f"[{row.key}] n/a ({exc})")
                return row
    return row


async def _sample(side: Side, series: Series, row: Row, label: str) -> None:
    side.reset()
    before = side.cpu_seconds()
    try:
        outcome = await side.run()
    except NotAvailable:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken run is a figure of the table, not the end of the bench
        reason = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_CHARS]
        series.fail(reason)
        _progress(f"[{row.key}] {label} {side.name}: failed: {reason}")
        return
    finally:
        side.settle()
    cpu = side.cpu_seconds() - before
    series.add(Sample(outcome.value, cpu, outcome.errors))
    row.note(outcome.note, side.name)
    errors = f", {outcome.errors} errors" if outcome.errors else ""
    _progress(f"[{row.key}] {label} {side.name}: {format_number(outcome.value)} {row.unit}"
              f" (cpu {cpu:.2f} s{errors})")


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
