"""The per-file report: name, summary, rows, formula-injection escaping, atomic write, mode; one
zone with its offset; the state a finished file ends in; row errors a customer can act on."""

from __future__ import annotations

import codecs
import csv
import io
import stat
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.crypto import AtRest, is_encrypted
from core.uploads import UploadState
from ingest.delivery.outbox import RowOutcome
from ingest.reports import FileSummary, choose_report_path, customer_error, local_time, report_path, write_report_at
from ledger.errors import NO_CALL_MESSAGE

LA = ZoneInfo("America/Los_Angeles")
RUN_TIME = datetime(2026, 3, 8, 14, 0, 5, tzinfo=UTC)  # 07:00:05 PDT


def write_report(
    out_dir: Path, summary: FileSummary, rows: Sequence[RowOutcome], run_time: datetime, zone: ZoneInfo
) -> Path:
    """A report written where a first finish puts it, as the processor does."""
    return write_report_at(choose_report_path(out_dir, summary, run_time, zone), out_dir, summary, rows,
                           run_time, zone, _keys[0])


def summary(path: str = "in/sales.csv", **changes: object) -> FileSummary:
    values: dict[str, object] = {
        "upload_id": 7, "tenant": "acme", "path": path, "feed": "signals", "received_at": "2026-03-08T09:59:00.000Z",
        "state": "partly failed", "rows_total": 3, "posted": 1, "failed": 1, "rejected": 1, "pending": 0,
    }
    values.update(changes)
    return FileSummary(**values)  # type: ignore[arg-type]


# The keys of the test under way: reports are sealed at rest.
_keys: list[AtRest] = []


@pytest.fixture(autouse=True)
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AtRest]:
    at_rest = AtRest.load(tmp_path_factory.mktemp("keys"), tmp_path_factory.mktemp("data"), create=True)
    _keys[:] = [at_rest]
    yield at_rest
    _keys.clear()


def read(path: Path) -> list[list[str]]:
    """The rows of a sealed report."""
    return list(csv.reader(io.StringIO(_keys[0].read_bytes(path).decode("utf-8-sig"), newline="")))


def test_report_has_summary_then_rows_and_escapes_every_cell(tmp_path: Path) -> None:
    rows = [
        RowOutcome(2, "posted", "00000000-0000000A", ""),
        RowOutcome(3, "failed", None, "RecordNotFound: No call found."),
        RowOutcome(4, "rejected", None, "=cmd|' /C calc'!A0"),
        RowOutcome(5, "rejected", None, "-2+3+cmd|' /C calc'!A0"),
        RowOutcome(6, "rejected", None, "-12.5"),
    ]
    path = write_report(tmp_path, summary(path="in/=evil.csv"), rows, RUN_TIME, LA)
    assert path == tmp_path / "=evil-20260308T070005-0700-report.csv"
    lines = read(path)
    blank = lines.index([])
    head = dict(lines[:blank])
    assert head["file"] == "in/=evil.csv"  # starts with "i": nothing to evaluate
    # The tenant's zone with its offset, for both: 09:59 UTC was 01:59 PST, a minute before the
    # clocks went forward; the run at 14:00:05 UTC was 07:00:05 PDT.
    assert head["received"] == "2026-03-08 01:59:00-08:00"
    assert head["processed"] == "2026-03-08 07:00:05-07:00"
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


def test_report_is_written_atomically_with_mode_0640_and_sealed(tmp_path: Path) -> None:
    path = write_report(tmp_path, summary(path="in/unique-name-4711.csv"), [], RUN_TIME, LA)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [item.name for item in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    assert is_encrypted(path) and b"unique-name-4711" not in path.read_bytes()
    assert read(path)[0] == ["file", "in/unique-name-4711.csv"]
    assert _keys[0].read_bytes(path).startswith(codecs.BOM_UTF8)  # Excel reads accents right


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
    assert second != first and second.name == "day-20260308T070005-0700-8-report.csv"
    assert first.exists() and second.exists()


def test_every_time_is_in_the_tenants_zone_with_its_offset(tmp_path: Path) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    path = write_report(tmp_path, summary(received_at="2026-11-01T09:30:00.000Z"), [], RUN_TIME, tokyo)
    head = dict(read(path)[:5])
    assert (head["received"], head["processed"]) == ("2026-11-01 18:30:00+09:00", "2026-03-08 23:00:05+09:00")
    assert path.name == "sales-20260308T230005+0900-report.csv"
    # The same wall time on both sides of the autumn fold: the offset tells them apart.
    first, second = datetime(2026, 11, 1, 8, 30, tzinfo=UTC), datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    assert (local_time(first, LA), local_time(second, LA)) == ("2026-11-01 01:30:00-07:00", "2026-11-01 01:30:00-08:00")
    assert report_path(tmp_path, "in/a.csv", first.astimezone(LA)) != report_path(tmp_path, "in/a.csv",
                                                                                  second.astimezone(LA))


@pytest.mark.parametrize(("posted", "failed", "rejected", "state"), [
    (3, 0, 0, UploadState.POSTED),
    (0, 0, 0, UploadState.POSTED),  # an empty file: nothing went wrong
    (2, 1, 0, UploadState.PARTLY_FAILED),
    (2, 0, 1, UploadState.PARTLY_FAILED),
    (0, 3, 0, UploadState.FAILED),  # not one row posted
    (0, 1, 2, UploadState.FAILED),
])
def test_a_file_ends_posted_partly_failed_or_failed_by_what_was_posted(
    posted: int, failed: int, rejected: int, state: UploadState
) -> None:
    assert FileSummary.final_state(UploadState.PROCESSING, posted, failed, rejected) == state


@pytest.mark.parametrize("state", [UploadState.POSTED, UploadState.PARTLY_FAILED, UploadState.FAILED,
                                   UploadState.REJECTED])
def test_a_finished_file_keeps_its_state(state: UploadState) -> None:
    assert FileSummary.final_state(state.value, 0, 5, 0) == state


def test_a_call_not_found_tells_the_customer_what_to_check_not_to_read_the_apis_documentation(
    tmp_path: Path
) -> None:
    # The ledger answers in Invoca's words (API clients match on them); the report does not.
    server_text = f"RecordNotFound: {NO_CALL_MESSAGE}"
    rows = [RowOutcome(2, "failed", None, server_text), RowOutcome(3, "failed", None, "HTTP 500: boom")]
    lines = read(write_report(tmp_path, summary(), rows, RUN_TIME, LA))
    errors = [line[3] for line in lines[-2:]]
    assert "documentation" not in errors[0].lower() and errors[0].startswith("RecordNotFound: No call found")
    assert "call_start_time" in errors[0] and "transaction_id" in errors[0]
    assert errors[1] == "HTTP 500: boom"
    assert customer_error(server_text) == errors[0]
