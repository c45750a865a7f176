"""One staged file read, validated and mapped: the work a run does on untrusted bytes.

:func:`prepare_file` runs in a limited child process (``ingest.sandbox``), so everything it needs comes
in one picklable :class:`PrepareJob` and everything it finds goes back in one :class:`Prepared`;
it touches no database. A refused file is a :class:`Prepared` with an ``error``, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from core.config import ParseSettings
from core.digests import file_digest
from ingest.delivery.outbox import QueuedRows, RejectedRow
from ingest.rows.errors import FileRejected
from ingest.rows.feeds import Feed
from ingest.rows.gcpause import collection_paused
from ingest.rows.mapping import map_rows
from ingest.rows.precheck import check_workbook
from ingest.rows.readers import read_table
from ingest.rows.validate import check_file, validate

__all__ = ["PrepareJob", "Prepared", "prepare_file"]


@dataclass(frozen=True)
class PrepareJob:
    """One staged file and every rule it is read by."""

    snapshot: Path
    #: The digest the upload had; None for a file that is not a snapshot (``sftpctl check``).
    sha256: str | None
    feed: Feed
    dictionary: tuple[str, ...]
    timezone: str
    base_url: str
    max_upload_bytes: int
    allowed_extensions: tuple[str, ...]
    max_bad_row_share: float
    limits: ParseSettings


@dataclass(frozen=True)
class Prepared:
    """What to queue for one file, or why the whole file is refused (``error``)."""

    rows_total: int
    requests: QueuedRows
    rejected: list[RejectedRow]
    error: str = ""

    @classmethod
    def refused(cls, reason: str, rows_total: int = 0, rejected: list[RejectedRow] | None = None) -> Prepared:
        return cls(rows_total, QueuedRows(), rejected or [], reason)


def prepare_file(job: PrepareJob) -> Prepared:
    """Check, read, validate and map ``job.snapshot``."""
    snapshot = job.snapshot
    problem = check_file(snapshot, job.max_upload_bytes, job.allowed_extensions)
    if problem:
        return Prepared.refused(problem)
    # Snapshots are not fsynced: after a power cut one may be short or empty. Never read it then.
    if job.sha256 is not None and file_digest(snapshot)[1] != job.sha256:
        return Prepared.refused("the stored copy of this upload is damaged (its sha256 no longer"
                                " matches the upload); please upload the file again")
    try:
        check_workbook(snapshot, job.limits)
        table = read_table(snapshot)
    except FileRejected as exc:
        return Prepared.refused(exc.reason)
    zone = ZoneInfo(job.timezone)
    feed = job.feed
    checked = validate(table, feed, job.dictionary, zone, job.max_bad_row_share)
    rejected = [RejectedRow(row.number, row.error) for row in checked.bad if row.error]
    if checked.file_error:
        return Prepared.refused(checked.file_error, checked.row_count, rejected)
    with collection_paused():
        mapped = map_rows(feed, checked, zone)
        token = feed.destination.token
        requests = QueuedRows()
        urls: dict[str, str] = {}
        for number, kind, method, path, text, key in mapped.rows():
            url = urls.get(path) or urls.setdefault(path, job.base_url + path)
            requests.append(number, kind, method, url, token, key, text)
    rejected.extend(RejectedRow(number, error) for number, error in mapped.failures)
    return Prepared(checked.row_count, requests, rejected)
