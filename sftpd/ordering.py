"""Writes that arrive ahead of their turn, held until the bytes before them come.

An upload is sealed as it arrives (see :mod:`sftpd.handles`), and a sealed file is written
front to back only. Clients that pipeline writes (rclone, and any built on ``pkg/sftp``) may send
them out of order, so a write beyond the next offset is held here, merged with its neighbours,
and handed back once the gap before it is filled. What is held is bounded: a client that leaves
more than :data:`MAX_HELD_RUNS` separate runs, or :data:`MAX_HELD_BYTES`, waiting is refused
(:class:`HeldTooMuch`) rather than buffered without end.
"""

from __future__ import annotations

from collections.abc import Iterator

# Separate runs of bytes waiting for a gap before them: a client pipelining 64 writes leaves
# at most 63, however they arrive.
MAX_HELD_RUNS = 128
MAX_HELD_BYTES = 8 * 1024 * 1024


class HeldTooMuch(Exception):
    """A client left more out of order than :class:`HeldWrites` holds."""


class HeldWrites:
    """Runs of bytes beyond the next offset, by offset: disjoint, not touching, sorted."""

    def __init__(self, max_runs: int = MAX_HELD_RUNS, max_bytes: int = MAX_HELD_BYTES) -> None:
        self._runs: list[tuple[int, bytearray]] = []
        self._max_runs = max_runs
        self._max_bytes = max_bytes

    def __bool__(self) -> bool:
        return bool(self._runs)

    @property
    def held_bytes(self) -> int:
        return sum(len(run) for _, run in self._runs)

    @property
    def end(self) -> int:
        """Where the furthest held byte ends (0 if none)."""
        return self._runs[-1][0] + len(self._runs[-1][1]) if self._runs else 0

    def hold(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Hold ``data`` at ``offset``; where it overlaps what is held, it wins (it came later)."""
        end = offset + len(data)
        touching = [(start, run) for start, run in self._runs if start <= end and start + len(run) >= offset]
        if len(touching) == 1 and touching[0][0] + len(touching[0][1]) == offset:
            touching[0][1].extend(data)  # the common case, a run growing at its end: no copy
        else:
            others = [(start, run) for start, run in self._runs if start > end or start + len(run) < offset]
            first = min([offset, *(start for start, _ in touching)])
            last = max([end, *(start + len(run) for start, run in touching)])
            merged = bytearray(last - first)
            for start, run in touching:
                merged[start - first : start - first + len(run)] = run
            merged[offset - first : end - first] = data
            self._runs = sorted([*others, (first, merged)], key=lambda item: item[0])
        if len(self._runs) > self._max_runs:
            raise HeldTooMuch(f"writes arrived out of order in more than {self._max_runs} separate pieces")
        if self.held_bytes > self._max_bytes:
            raise HeldTooMuch(f"more than {self._max_bytes} bytes were written ahead of a gap before them")

    def release(self, position: int) -> Iterator[memoryview]:
        """The held bytes that continue from ``position``, in order; the caller takes each piece
        before asking for the next (``position`` moves on by what it took)."""
        while self._runs and self._runs[0][0] <= position:
            start, run = self._runs.pop(0)
            if start + len(run) > position:
                piece = memoryview(run)[position - start :]
                position += len(piece)
                yield piece

    def cut(self, size: int) -> None:
        """Forget what lies at or beyond ``size`` (the file was cut there)."""
        self._runs = [(start, run[: size - start]) for start, run in self._runs if start < size]

    def first_gap(self, position: int) -> tuple[int, int]:
        """The first range, from ``position``, that no write filled: [start, end)."""
        return position, self._runs[0][0] if self._runs else position

    def overlay(self, offset: int, out: bytearray) -> None:
        """Lay the held bytes that fall in ``[offset, offset + len(out))`` over ``out``."""
        stop = offset + len(out)
        for start, run in self._runs:
            low, high = max(start, offset), min(start + len(run), stop)
            if low < high:
                out[low - offset : high - offset] = run[low - start : high - start]

    def clear(self) -> None:
        self._runs = []
