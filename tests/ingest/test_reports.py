"""The per-file report: name, summary, rows, formula-injection escaping, atomic write, mode."""

from __future__ import annotations

import csv
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ingest.delivery.outbox import RowOutcome
from ingest.reports import FileSummary, choose_report_path, report_path, write_report_at

LA = ZoneInfo("America/Los_Angeles")
RUN_TIME = datetime(2026, 3, 8, 14, 0, 5, tzinfo=UTC)  # 07:00:05 PDT


def write_report(
    out_dir: Path, summary: FileSummary, rows: Sequence[RowOutcome], run_time: datetime, zone: ZoneInfo
) -> Path:
    """A report written where a first finish puts it, as the processor does."""
    return write_report_at(choose_report_path(out_dir, summary, run_time, zone), out_dir, summary, rows,
                           run_time, zone)


def summary(path: str = "in/sales.csv", **changes: object) -> FileSummary:
    values: dict[str, object] = {
        "upload_id": 7, "tenant": "acme", "path": path, "feed": "signals", "received_at": "2026-03-08T13:59:00.000Z",
        "state": "partly failed", "rows_total": 3, "posted": 1, "failed": 1, "rejected": 1, "pending": 0,
    }
    values.update(changes)
    return FileSummary(**values)  # type: ignore[arg-type]


def read(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as stream:
        return list(csv.reader(stream))


def test_report_has_summary_then_rows_and_escapes_every_cell(tmp_path: Path) -> None:
    rows = [
        RowOutcome(2, "posted", "00000000-0000000A", ""),
        RowOutcome(3, "failed", None, "RecordNotFound: No call found."),
        RowOutcome(4, "rejected", None, "=cmd|' /C calc'!A0"),
        RowOutcome(5, "rejected", None, "-2+3+cmd|' /C calc'!A0"),
        RowOutcome(6, "rejected", None, "-12.5"),
    ]
    path = write_report(tmp_path, summary(path="in/=evil.csv"), rows, RUN_TIME, LA)
    assert path == tmp_path / "=evil-20260308T070005-report.csv"
    lines = read(path)
    blank = lines.index([])
    head = dict(lines[:blank])
    assert head["file"] == "in/=evil.csv"  # starts with "i": nothing to evaluate
    assert head["processed"] == "2026-03-08 07:00:05 PDT"
    assert head["received"] == "2026-03-08T13:59:00.000Z"
    assert (head["result"], head["rows total"], head["rows posted"], head["rows failed"], head["rows rejected"]) \
        == ("partly failed", "3", "1", "1", "1")
    assert lines[blank + 1] == ["row", "status", "transaction_id", "error"]
    assert lines[blank + 2:] == [
        ["2", "posted", "00000000-0000000A", ""],
        ["3", "failed", "", "RecordNotFound: No call found."],
        ["4", "rejected", "", "'=cmd|' /C calc'!A0"],
        ["5", "rejected", "", "'-2+3+cmd|' /C calc'!A0"],
        ["6", "rejected", "", "-12.5"],  # a plain number stays a number
    ]


def test_report_is_written_atomically_with_mode_0640(tmp_path: Path) -> None:
    path = write_report(tmp_path, summary(), [], RUN_TIME, LA)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [item.name for item in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_rejected_file_report_gives_the_reason(tmp_path: Path) -> None:
    path = write_report(tmp_path, summary(state="rejected", error="missing required column 'name'"), [],
                        RUN_TIME, LA)
    head = dict(read(path)[:7])
    assert head["result"] == "rejected"
    assert head["reason"] == "missing required column 'name'"


def test_feed_folders_are_mirrored_and_reports_never_overwritten(tmp_path: Path) -> None:
    first = write_report(tmp_path, summary(path="in/calls/day.xlsx"), [], RUN_TIME, LA)
    second = write_report(tmp_path, summary(path="in/calls/day.csv", upload_id=8), [], RUN_TIME, LA)
    assert first == report_path(tmp_path, "in/calls/day.xlsx", RUN_TIME.astimezone(LA))
    assert first.parent == tmp_path / "calls"
    assert second != first and second.name == "day-20260308T070005-8-report.csv"
    assert first.exists() and second.exists()
