"""The figures of one benchmark row: each side's samples, their median and spread, and the ratio.

A row compares our product with a peer (OpenSSH's ``internal-sftp``, or a plain library read for
the processor). Every figure is a median of alternating runs; min and max travel with it so a
reader can see how noisy the machine was.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """One run against one side: the figure in the row's unit, the side's CPU time, its errors."""

    value: float
    cpu_seconds: float | None = None
    errors: int = 0


@dataclass
class Series:
    """All runs of one side of a row. A run that raised counts as a failure, not a sample."""

    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def fail(self, reason: str) -> None:
        self.failures.append(reason)

    @property
    def values(self) -> list[float]:
        return [sample.value for sample in self.samples]

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.samples else None

    @property
    def low(self) -> float | None:
        return min(self.values) if self.samples else None

    @property
    def high(self) -> float | None:
        return max(self.values) if self.samples else None

    @property
    def cpu_median(self) -> float | None:
        cpu = [s.cpu_seconds for s in self.samples if s.cpu_seconds is not None]
        return statistics.median(cpu) if cpu else None

    @property
    def errors(self) -> int:
        """Errors inside successful runs (failed uploads, short files) plus runs that raised."""
        return sum(sample.errors for sample in self.samples) + len(self.failures)


@dataclass
class Row:
    """One line of the table: a metric of one case, in one client/crypto variant.

    ``key`` is stable across runs (``"1.single.sftp.pinned"``) so targets can find their rows.
    ``higher_is_better`` says which way the ratio has to go for us to win.
    """

    key: str
    case: int
    title: str
    variant: str
    unit: str
    higher_is_better: bool
    peer_name: str
    ours: Series = field(default_factory=Series)
    peer: Series = field(default_factory=Series)
    unavailable: str | None = None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """Ours over the peer's median, in the row's unit (so for ms, lower is a win)."""
        ours, peer = self.ours.median, self.peer.median
        if ours is None or peer is None or peer == 0:
            return None
        return ours / peer

    def note(self, text: str, side: str = "") -> None:
        """Details of the latest run, by side (``""`` for the row as a whole)."""
        if text:
            self.notes[side] = text

    @property
    def notes_text(self) -> str:
        return "; ".join(f"{side}: {text}" if side else text for side, text in self.notes.items())


def format_number(value: float | None) -> str:
    """Three significant figures at most, grouped thousands; ``—`` for a missing figure."""
    if value is None:
        return "—"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_series(series: Series) -> str:
    """``median (min–max)``, or why there is no figure."""
    if not series.samples:
        return f"n/a ({series.failures[-1]})" if series.failures else "—"
    median = format_number(series.median)
    if len(series.samples) == 1:
        return median
    return f"{median} ({format_number(series.low)}–{format_number(series.high)})"


def format_ratio(row: Row) -> str:
    ratio = row.ratio
    return "—" if ratio is None else f"{ratio:.2f}x"
