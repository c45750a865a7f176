"""The per-file report a customer reads in ``out/``: a short summary, then one line per row.

Reports are opened in spreadsheets, so every cell that a spreadsheet would take for a formula
(``= + - @``, tab, carriage return; plain numbers aside) is prefixed with ``'`` by
:func:`core.csvsafe.safe_cell`, as in the Transactions API's CSV (OWASP's CSV injection
advice). They are UTF-8 with a byte-order mark so Excel reads accents right, sealed at rest
(``core.crypto``: the SFTP server decrypts them for the tenant's ``get``), and written to a hidden
temporary file and renamed, so a client listing ``out/`` never sees half a report.

Every time a report shows is in the tenant's zone with its UTC offset, never a bare local time
or a second zone: in the summary as ``2026-03-08 07:00:05-07:00`` (:func:`local_time`, RFC 3339
with a space), in the file name as ISO 8601's basic form ``20260308T070005-0700`` (the run's
start), so a name says the same instant on either side of a daylight-saving change.

A report is read by the customer, who has none of the destination's documentation: a row error
that sends them there (the Signal API's "No call found. Please refer to the documentation.") is
written with what they can check instead (:func:`customer_error`); the outbox keeps the
destination's own words for operators.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

from core.clock import parse_iso
from core.crypto import AtRest
from core.csvsafe import safe_cell
from core.tenants import IN_DIR
from core.uploads import FINAL_STATES, UploadState
from ingest.delivery.outbox import RowOutcome

REPORT_SUFFIX = "-report.csv"
RUN_TIME_FORMAT = "%Y%m%dT%H%M%S%z"
#: Destination messages that send the customer to documentation they do not have, and what
#: the report says instead (the first is ``ledger.errors.NO_CALL_MESSAGE``, Invoca's own words).
CUSTOMER_TEXTS = {
    "No call found. Please refer to the documentation.":
        "No call found: no call of your account has this row's transaction_id or call_record_id,"
        " or starts close enough to its call_start_time (with its calling_phone_number and other"
        " search columns, when given).",
}
ROW_HEADER = ("row", "status", "transaction_id", "error")
REPORT_MODE = 0o640
FOLDER_MODE = 0o750


@dataclass(frozen=True)
class FileSummary:
    """One processed file: what it was, where it went and how its rows ended."""

    upload_id: int
    tenant: str
    path: str
    feed: str
    received_at: str
    state: str
    rows_total: int
    posted: int
    failed: int
    rejected: int
    pending: int
    error: str = ""
    report: str | None = None

    @staticmethod
    def final_state(current: str, posted: int, failed: int, rejected: int) -> UploadState:
        """The state a file with no pending row ends in: the one it has if it already ended;
        else ``posted`` when every row went, ``failed`` when none did, ``partly failed`` between."""
        if current in FINAL_STATES:  # a finished file keeps its state when summed up again
            return UploadState(current)
        if not (failed or rejected):
            return UploadState.POSTED
        return UploadState.PARTLY_FAILED if posted else UploadState.FAILED

    @property
    def needs_notice(self) -> bool:
        """Whether the contact must hear of this file: rejected whole, or a row failed or rejected."""
        return self.state == "rejected" or bool(self.failed or self.rejected)


def local_time(moment: datetime | str, zone: ZoneInfo) -> str:
    """``moment`` (aware, or an ISO 8601 text in UTC) in ``zone``, with the offset:
    ``2026-03-08 07:00:05-07:00``."""
    aware = parse_iso(moment) if isinstance(moment, str) else moment
    return aware.astimezone(zone).isoformat(sep=" ", timespec="seconds")


def customer_error(error: str) -> str:
    """A row's error as the report shows it: :data:`CUSTOMER_TEXTS` put in place."""
    for theirs, ours in CUSTOMER_TEXTS.items():
        error = error.replace(theirs, ours)
    return error


def report_path(out_dir: Path, upload_path: str, run_time: datetime) -> Path:
    """``out/[feed/]<name>-<YYYYMMDDTHHMMSS±HHMM>-report.csv`` for an upload at ``in/[feed/]<name>.<ext>``,
    ``run_time`` (aware) in the tenant's zone with its offset.

    Sub-folders of ``in/`` are mirrored, so two files of the same name in different feeds get
    different reports.
    """
    relative = PurePosixPath(upload_path.lstrip("/"))
    if relative.parts and relative.parts[0] == IN_DIR:
        relative = PurePosixPath(*relative.parts[1:])
    name = f"{relative.stem}-{run_time.strftime(RUN_TIME_FORMAT)}{REPORT_SUFFIX}"
    return out_dir.joinpath(*relative.parent.parts, name)


def summary_lines(summary: FileSummary, processed_at: datetime, zone: ZoneInfo) -> list[tuple[str, str]]:
    lines = [
        ("file", summary.path),
        ("feed", summary.feed),
        ("received", local_time(summary.received_at, zone)),
        ("processed", local_time(processed_at, zone)),
        ("result", summary.state),
    ]
    if summary.error:
        lines.append(("reason", summary.error))
    lines += [
        ("rows total", str(summary.rows_total)),
        ("rows posted", str(summary.posted)),
        ("rows failed", str(summary.failed)),
        ("rows rejected", str(summary.rejected)),
    ]
    if summary.pending:
        lines.append(("rows pending", str(summary.pending)))
    return lines


def choose_report_path(
    out_dir: Path, summary: FileSummary, run_time: datetime, zone: ZoneInfo,
    taken: Callable[[str], bool] = lambda path: False,
) -> Path:
    """Where the report of ``summary`` goes: :func:`report_path`, or, when that is taken (by a
    file there or by another upload, as ``taken`` says), the same with the upload id added."""
    target = report_path(out_dir, summary.path, run_time.astimezone(zone))
    if target.exists() or taken(str(target)):
        target = target.with_name(target.name.replace(REPORT_SUFFIX, f"-{summary.upload_id}{REPORT_SUFFIX}"))
    return target


def write_report_at(
    target: Path, out_dir: Path, summary: FileSummary, rows: Sequence[RowOutcome], run_time: datetime,
    zone: ZoneInfo, at_rest: AtRest,
) -> Path:
    """Write the report of one file at ``target`` (replacing what is there), sealed by
    ``at_rest``, and return it."""
    _make_folders(out_dir, target.parent)
    lines: list[Iterable[object]] = [*summary_lines(summary, run_time, zone), ()]
    lines.append(ROW_HEADER)
    lines += [(row.row_number, row.status, row.transaction_id, customer_error(row.error)) for row in rows]
    at_rest.write_bytes(target, _csv(lines), durable=True, mode=REPORT_MODE)
    return target


def _make_folders(out_dir: Path, folder: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    for part in reversed([folder, *folder.parents]):
        if part.is_relative_to(out_dir) and part != out_dir:
            part.mkdir(exist_ok=True, mode=FOLDER_MODE)


def _csv(lines: Iterable[Iterable[object]]) -> bytes:
    """The report's bytes: UTF-8 with a byte-order mark, every cell made safe."""
    stream = io.StringIO(newline="")
    writer = csv.writer(stream)
    for line in lines:
        writer.writerow([safe_cell(cell) for cell in line])
    return stream.getvalue().encode("utf-8-sig")
