"""The dry run behind `sftpctl check`: file checks, read, validate, map, and its report."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

from core.config import ParseSettings
from ingest.check import CheckResult, check_sample, format_check
from ingest.rows.feeds import Feed, default_feeds
from tests.ingest import hostile

PACIFIC = ZoneInfo("America/Los_Angeles")
SIGNALS = default_feeds()["signals"]
ALLOWED = ("csv", "xlsx", "xls")
MAX_BYTES = 5 * 1024 * 1024
FIXTURES = Path(__file__).parent / "fixtures"
LIMITS = ParseSettings()


def check(path: Path, feed: Feed = SIGNALS, share: float = 0.5, sample: int = 5) -> CheckResult:
    return check_sample(
        path,
        feed,
        ["plan_type", "account_number", "ratio"],
        PACIFIC,
        share,
        MAX_BYTES,
        ALLOWED,
        LIMITS,
        sample_requests=sample,
    )


def write(tmp_path: Path, text: str, name: str = "signals.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "transaction_id,name,sale_amount,plan_type\nT1,Sale,10.00,gold\nT2,Sale,,\nT3,Quote,1,\n",
    )
    result = check(path, sample=2)
    assert result.ok and (result.rows, result.good, result.bad) == (3, 3, 0)
    assert [number for number, _ in result.requests] == [2, 3]
    assert result.requests[0][1].body["custom_data"] == [{"name": "plan_type", "value": "gold"}]
    text = format_check(result)
    assert "feed:     signals (template signals, time zone America/Los_Angeles)" in text
    assert "result:   OK: all 3 rows would be posted" in text
    assert "first mapped requests (not posted):" in text
    assert f"row 2: POST /transactions/signals.json (key {result.requests[0][1].key[:12]})" in text
    assert '      "name": "Sale",' in text


def test_the_printed_bodies_are_json(tmp_path: Path) -> None:
    result = check(write(tmp_path, "transaction_id,name\nT1,Sälé\n"))
    text = format_check(result)
    body = text.split("(key ", 1)[1].split("\n", 1)[1]
    assert json.loads(body) == result.requests[0][1].body
    assert "Sälé" in body


def test_row_errors_are_listed_and_capped(tmp_path: Path) -> None:
    lines = (
        ["transaction_id,name,value"] + [f"T{i},Sale,maybe" for i in range(3)] + ["T9,Sale,yes"] * 7
    )
    result = check(write(tmp_path, "\n".join(lines) + "\n"))
    assert result.file_error is None and (result.good, result.bad) == (7, 3)
    text = format_check(result, max_errors=2)
    assert "result:   3 of 10 rows would be rejected; the others would be posted" in text
    assert "  row 2: value: 'maybe' is not a boolean: expected true/false, 1/0 or yes/no" in text
    assert "  row 3: value:" in text and "  row 4: value:" not in text
    assert "  ... and 1 more" in text
    assert len(result.requests) == 5 and result.requests[0][0] == 5


def test_too_many_bad_rows(tmp_path: Path) -> None:
    result = check(write(tmp_path, "transaction_id,name\nT1,\nT2,\nT3,Sale\n"))
    assert not result.ok
    text = format_check(result)
    assert "result:   REJECTED: 2 of 3 rows are bad (67%), more than the 50% allowed" in text
    assert "  row 2: name: missing value" in text


def test_refused_by_name(tmp_path: Path) -> None:
    result = check(write(tmp_path, "transaction_id,name\n", name="signals.v2.csv"))
    assert (
        result.file_error
        == "'signals.v2.csv': the name may contain no '.' except before the extension"
    )
    assert format_check(result).endswith(f"result:   REJECTED: {result.file_error}")


def test_refused_by_size(tmp_path: Path) -> None:
    path = write(tmp_path, "transaction_id,name\n" + "T1,Sale\n" * 10)
    result = check_sample(path, SIGNALS, [], PACIFIC, 0.5, 50, ALLOWED, LIMITS)
    assert result.file_error is not None and "files may be at most" in result.file_error


def test_refused_by_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "signals.csv"
    path.write_bytes("transaction_id,name\nT1,Café\n".encode("cp1252"))
    result = check(path)
    assert result.file_error is not None and "not valid UTF-8" in result.file_error
    assert "REJECTED" in format_check(result)


def test_refused_by_the_header(tmp_path: Path) -> None:
    result = check(write(tmp_path, "transaction_id,nam\nT1,Sale\n"))
    assert result.file_error == "missing required column: name"
    assert result.rows == 0 and not result.requests


def test_a_workbook(tmp_path: Path) -> None:
    result = check(FIXTURES / "signals.xlsx")
    assert result.ok and result.rows == 3
    first = result.requests[0][1].body
    assert first["search"] == {"calling_phone_number": "+18885551212", "transaction_id": "00012345"}
    assert first["signal"]["occurred_at_time"] == "2016-04-11T20:00:00.000Z"
    assert {"name": "account_number", "value": "000777"} in first["custom_data"]
    third = result.requests[2][1].body
    # Midnight at the start of the spring-forward day exists (the gap is 02:00-03:00).
    assert third["signal"]["occurred_at_time"] == "2026-03-08T08:00:00.000Z"
    assert third["signal"]["sale_amount"] == "12345678901"


def test_a_workbook_that_aborts_the_reader_is_refused_and_the_caller_lives(tmp_path: Path) -> None:
    path = tmp_path / "far.xlsx"
    path.write_bytes(hostile.far_cell(declare=False))
    result = check(path)
    assert not result.ok and result.file_error is not None and "stray cell" in result.file_error
    assert check(FIXTURES / "signals.xlsx").rows > 0
