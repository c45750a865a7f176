"""One staged file read, validated and mapped: the work a run does on untrusted bytes.

:func:`prepare_file` runs in a limited child process (``ingest.sandbox``), so everything it needs comes
in one picklable :class:`PrepareJob` and everything it finds goes back in one :class:`Prepared`;
it touches no database. A refused file is a :class:`Prepared` with an ``error``, never an exception.

A snapshot is sealed at rest (``core.crypto``): the child decrypts it into memory (an anonymous
``memfd``, at most ``max_upload_bytes``), never onto a disk, and the readers read that. The keys
come in the job's :class:`~core.crypto.AtRest` (it is never logged: its keys have no ``repr``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from core.config import ParseSettings
from core.crypto import AtRest, TamperedFile, is_encrypted
from core.digests import file_digest
from core.gcpause import collection_paused
from ingest.delivery.outbox import QueuedRows, RejectedRow
from ingest.rows.errors import FileRejected
from ingest.rows.feeds import Feed
from ingest.rows.precheck import check_workbook

if TYPE_CHECKING:
    from ingest.rows.readers import Table

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
    #: The keys a sealed snapshot is read with; None reads plaintext files only (a sample).
    at_rest: AtRest | None = None


DAMAGED = ("the stored copy of this upload is damaged (its sha256 no longer matches the upload);"
           " please upload the file again")
COPY_CHUNK_BYTES = 1024 * 1024


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
    # Imported here, in the child (``ingest.sandbox`` preloads them into its fork server): the
    # parent that only sends the job does not load polars.
    from ingest.rows.readers import read_table
    from ingest.rows.validate import check_file
    snapshot = job.snapshot
    problem = check_file(snapshot, job.max_upload_bytes, job.allowed_extensions)
    if problem:
        return Prepared.refused(problem)
    try:
        with _plaintext(job) as (plain, digest):
            # Snapshots are not fsynced: after a power cut one may be short or empty. Never read it then.
            if job.sha256 is not None and digest != job.sha256:
                return Prepared.refused(DAMAGED)
            check_workbook(plain, job.limits)
            table = read_table(plain)
    except TamperedFile:
        return Prepared.refused(DAMAGED)
    except FileRejected as exc:
        return Prepared.refused(exc.reason)
    return _prepared(job, table)


def _prepared(job: PrepareJob, table: Table) -> Prepared:
    """Validate and map the rows of ``table``."""
    from ingest.rows.mapping import map_rows
    from ingest.rows.validate import validate

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


@contextmanager
def _plaintext(job: PrepareJob) -> Iterator[tuple[Path, str]]:
    """A path the readers can open to read ``job.snapshot``'s plaintext, and its sha256: the
    file itself if it is plaintext, else its plaintext decrypted into an anonymous in-memory
    file (``/proc/self/fd/<n>``), closed on exit."""
    if not is_encrypted(job.snapshot):
        yield job.snapshot, file_digest(job.snapshot)[1]
        return
    if job.at_rest is None:
        raise FileRejected("the file is encrypted and no master key was given to read it")
    fd = os.memfd_create("snapshot", os.MFD_CLOEXEC)
    try:
        digest = hashlib.sha256()
        left = job.max_upload_bytes
        with job.at_rest.open(job.snapshot) as source, open(fd, "wb", closefd=False) as memory:
            while left > 0 and (chunk := source.read(min(COPY_CHUNK_BYTES, left))):
                digest.update(chunk)
                memory.write(chunk)  # whole, where os.write may write part of it
                left -= len(chunk)
        yield Path(f"/proc/self/fd/{fd}"), digest.hexdigest()
    finally:
        os.close(fd)
