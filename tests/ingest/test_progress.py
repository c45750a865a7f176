"""Per-file delivery progress: told at once, then at most once a second, and at the last row."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ingest.progress import DeliveryProgress, FileProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rows_are_told_at_once_then_once_a_second_and_at_the_end() -> None:
    clock, told = Clock(), []
    progress = DeliveryProgress("acme", {1: "in/a.csv", 2: "in/b.csv"}, [1] * 4 + [2] * 2,
                                lambda event, **fields: told.append((event, fields)), clock)
    for step in (0.5, 0.2, 1.0, 0.1):  # file 1: rows at 100.5, 100.7, 101.7, 101.8
        clock.now += step
        progress.row_done(1)
    clock.now += 1.0
    progress.row_done(2)
    progress.row_done(2)
    assert [(fields["file"], fields["done"]) for _, fields in told] == [
        ("in/a.csv", 1), ("in/a.csv", 3), ("in/a.csv", 4), ("in/b.csv", 1), ("in/b.csv", 2)]
    assert {event for event, _ in told} == {"file.progress"}
    assert (told[0][1]["rate"], told[0][1]["eta_seconds"]) == (0.0, None)  # half a second in: unknown
    assert told[1][1] == {"tenant": "acme", "file": "in/a.csv", "upload": 1, "done": 3, "total": 4,
                          "rate": 1.8, "eta_seconds": 0.6}


def test_rate_and_time_left() -> None:
    assert FileProgress("acme", "in/a.csv", 1, done=0, total=10, seconds=5).eta_seconds is None
    half = FileProgress("acme", "in/a.csv", 1, done=500, total=1000, seconds=10)
    assert (half.rate, half.left, half.eta_seconds) == (50.0, 500, 10.0)
    assert FileProgress("acme", "in/a.csv", 1, done=3, total=3, seconds=0).eta_seconds == 0.0
    first = FileProgress("acme", "in/a.csv", 1, done=1, total=26_000, seconds=0.2)  # not a pace yet
    assert (first.rate, first.eta_seconds) == (0.0, None)
    short = FileProgress("acme", "in/a.csv", 1, done=12, total=12, seconds=0.2)  # done: its pace
    assert (short.rate, short.eta_seconds) == (60.0, 0.0)


def test_the_log_hears_of_every_unfinished_file(caplog: pytest.LogCaptureFixture) -> None:
    def ignore(event: str, **fields: Any) -> None:
        pass

    progress = DeliveryProgress("acme", {1: "in/a.csv", 2: "in/b.csv"}, [1, 1, 2], ignore, Clock())
    progress.row_done(2)
    with caplog.at_level(logging.INFO, logger="ingest.progress"):
        progress.log_now()
    logged = [record.fields for record in caplog.records if record.getMessage() == "ingest.file_progress"]
    assert [(fields["file"], fields["done"], fields["total"]) for fields in logged] == [("in/a.csv", 0, 2)]
