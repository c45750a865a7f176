"""The calls files of bench case 7: every good row maps to a new call, the spoiled ones are rejected."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.call_files import calls_csv_file
from ingest.rows import default_feeds, map_rows, read_table
from ingest.rows.validate import validate

ROWS = 3000


def mapped_calls(path: Path) -> list[dict[str, Any]]:
    """The call bodies the tenant's default ``calls`` feed makes of the file's rows."""
    feed, zone = default_feeds()["calls"], ZoneInfo("UTC")
    checked = validate(read_table(path), feed, (), zone, 1.0)
    assert checked.file_error is None
    return [request.body["call"] for _, request in map_rows(feed, checked, zone).requests]


def test_the_calls_feed_rejects_exactly_the_rows_the_generator_spoiled(tmp_path: Path) -> None:
    path = tmp_path / "calls.csv"
    written = calls_csv_file(path, ROWS, "E1-")
    calls = mapped_calls(path)
    assert written.rows == ROWS
    assert written.bad > 0
    assert len(calls) == ROWS - written.bad
    assert len({call["external_id"] for call in calls}) == len(calls)


def test_a_new_prefix_gives_new_calls_and_the_same_file_otherwise(tmp_path: Path) -> None:
    first, again, other = tmp_path / "first.csv", tmp_path / "again.csv", tmp_path / "other.csv"
    calls_csv_file(first, 200, "E1-")
    calls_csv_file(again, 200, "E1-")
    calls_csv_file(other, 200, "E2-")
    assert first.read_bytes() == again.read_bytes()
    with first.open(newline="") as one, other.open(newline="") as two:
        first_rows, other_rows = list(csv.reader(one))[1:], list(csv.reader(two))[1:]
    assert not {row[0] for row in first_rows} & {row[0] for row in other_rows}
    assert [row[1:] for row in first_rows] == [row[1:] for row in other_rows]
