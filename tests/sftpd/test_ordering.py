"""Held writes come back in order, the later of two overlapping writes wins, and what is held
stays bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sftpd.ordering import HeldTooMuch, HeldWrites

WRITES = st.lists(st.tuples(st.integers(0, 300), st.binary(min_size=1, max_size=60)), max_size=30)


@given(WRITES)
def test_an_appending_sink_fed_from_held_writes_equals_a_file_written_in_place(
    writes: list[tuple[int, bytes]],
) -> None:
    """The sink only appends (as the sealed writer does); a write before its end is laid over
    it in place (as IncomingFile's reseal does)."""
    model = bytearray()
    sink = bytearray()
    held = HeldWrites()
    for offset, data in writes:
        end = offset + len(data)
        model.extend(bytes(max(0, end - len(model))))
        model[offset:end] = data
        if offset > len(sink):
            held.hold(offset, data)
        else:
            sink.extend(bytes(max(0, end - len(sink))))
            sink[offset:end] = data
        for piece in held.release(len(sink)):
            sink += piece
    if held:
        start, stop = held.first_gap(len(sink))
        assert start == len(sink) < stop
        assert not any(offset <= start < offset + len(data) for offset, data in writes)
    else:
        assert sink == model


def test_later_writes_win_where_they_overlap_held_ones() -> None:
    held = HeldWrites()
    held.hold(10, b"aaaaaaaaaa")
    held.hold(30, b"cccc")
    held.hold(15, b"BBBBBBBBBBBBBBBBBB")  # bridges both runs
    assert held.end == 34
    assert b"".join(held.release(10)) == b"aaaaa" + b"B" * 18 + b"c"


def test_overlay_cut_and_gap() -> None:
    held = HeldWrites()
    held.hold(4, b"wxyz")
    out = bytearray(b"........")
    held.overlay(2, out)
    assert out == b"..wxyz.."
    assert held.first_gap(1) == (1, 4)
    held.cut(6)
    assert held.end == 6
    held.cut(3)
    assert not held


def test_too_many_runs_or_bytes_are_refused() -> None:
    runs = HeldWrites(max_runs=3, max_bytes=100)
    for offset in (10, 20, 30):
        runs.hold(offset, b"x")
    with pytest.raises(HeldTooMuch, match="out of order"):
        runs.hold(40, b"x")
    held_bytes = HeldWrites(max_runs=3, max_bytes=100)
    with pytest.raises(HeldTooMuch, match="ahead of a gap"):
        held_bytes.hold(10, bytes(101))
