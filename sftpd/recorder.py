"""Turns a finished upload into a durable record and an event for the ingest side."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.clock import now_iso
from core.db import DatabaseUnavailable
from core.logs import get_logger
from core.uploads import Upload, UploadState, UploadStore
from core.workers import caught_up
from sftpd.events import UploadCompleted, UploadListener

log = get_logger(__name__)

#: How often a record the database could not take is tried again while it is unreachable.
RETRY_SECONDS = 1.0


class UploadRecorder:
    """Records completed uploads, then tells the listener; shared by all sessions of a server.

    The client's close is answered once the file is in place under its name, without waiting
    for the record: the database may be busy (another process, a long transaction of the
    pipeline), and a reply that waits for a thread and a commit costs a small file half its
    upload time. Nothing is lost should the server stop in between: the file is in ``in/``, and
    the ingest side's periodic scan stages files that no event announced.

    Records are written and handed on in upload order by a thread of their own, never the event
    loop (which only queues the job), and not the loop's default executor either, where staging
    and scans would hold them up. One thread suffices: the database serialises writers anyway.

    While the database is unreachable (:class:`~core.db.DatabaseUnavailable`) a record waits and
    is tried again every :data:`RETRY_SECONDS`, the ones behind it queued in order: the file is
    in ``in/`` already, and is recorded once the database is back. One the ingest side's scan
    recorded meanwhile (or whose commit was lost with the connection after it landed) is not
    recorded twice. If the server stops first, the waiting ones are left to that scan.
    """

    def __init__(self, uploads: UploadStore, listener: UploadListener | None) -> None:
        self._uploads = uploads
        self._listener = listener
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sftpd-recorder")
        self._closed = False
        self._stopping = threading.Event()

    @property
    def wants_files(self) -> bool:
        """Whether anyone takes the kept name of an upload (see :class:`UploadCompleted`)."""
        return self._listener is not None

    def completed(
        self, tenant: str, relative_path: str, local_path: Path, size: int, sha256: str,
        kept: Path | None,
    ) -> None:
        """Record the upload and hand it on, in the background; once closed, leave it to the
        ingest side's scan."""
        if self._closed:
            log.warning("upload.not_recorded", reason="the server is stopping", tenant=tenant,
                        path=relative_path)
            _remove(kept)
            return
        self._writer.submit(self._record, tenant, relative_path, local_path, size, sha256, kept, now_iso())

    async def settled(self) -> None:
        """Wait until every upload completed so far is recorded and handed on (the thread takes
        jobs in order)."""
        if not self._closed:
            await caught_up(self._writer)

    async def close(self) -> None:
        """Finish the records under way (but those waiting for the database), then stop taking
        new ones."""
        self._stopping.set()
        await self.settled()
        self._closed = True
        self._writer.shutdown(wait=False)

    def _record(
        self, tenant: str, relative_path: str, local_path: Path, size: int, sha256: str,
        kept: Path | None, completed_at: str,
    ) -> None:
        try:
            upload = self._record_when_possible(tenant, relative_path, size, sha256, completed_at)
        except DatabaseUnavailable as exc:
            log.warning("upload.not_recorded", tenant=tenant, path=relative_path, size=size, sha256=sha256,
                        reason=f"the server is stopping and the database is unreachable ({exc});"
                               " the file stays in in/, where the next scan finds it")
            _remove(kept)
            return
        except Exception:
            log.error("upload.record_failed", exc_info=True, tenant=tenant, path=relative_path,
                      size=size, sha256=sha256)
            _remove(kept)
            return
        if upload is None:
            _remove(kept)
            return
        log.info("upload.completed", tenant=tenant, path=relative_path, size=size, sha256=sha256,
                 upload_id=upload.id)
        if self._listener is not None:
            try:
                self._listener(UploadCompleted(upload, local_path, kept))
            except Exception:
                log.error("upload.listener_failed", exc_info=True, tenant=tenant,
                          path=relative_path, upload_id=upload.id)
        _remove(kept)


    def _record_when_possible(
        self, tenant: str, relative_path: str, size: int, sha256: str, completed_at: str,
    ) -> Upload | None:
        """The new upload's record, once the database takes it; None if it needs none (the
        scan recorded it and staged it while this one waited). Raises
        :class:`DatabaseUnavailable` if the server stops while the database is still away."""
        try:
            return self._uploads.record(tenant, relative_path, size, sha256, "sftp")
        except DatabaseUnavailable as exc:
            log.warning("upload.record_waiting", tenant=tenant, path=relative_path, size=size,
                        reason=str(exc), retry_every_seconds=RETRY_SECONDS)
        while True:
            if self._stopping.wait(RETRY_SECONDS):
                raise DatabaseUnavailable("still unreachable")
            try:
                last = self._uploads.last_of_path(tenant, relative_path)
                if (last is not None and last.sha256 == sha256 and last.size == size
                        and last.received_at >= completed_at):
                    # Recorded already: by the scan, or by the try whose answer was lost.
                    log.info("upload.recorded_meanwhile", tenant=tenant, path=relative_path,
                             upload_id=last.id, source=last.source)
                    return last if last.state == UploadState.RECEIVED else None
                upload = self._uploads.record(tenant, relative_path, size, sha256, "sftp")
            except DatabaseUnavailable:
                continue
            log.info("upload.recorded_late", tenant=tenant, path=relative_path, upload_id=upload.id)
            return upload


def _remove(kept: Path | None) -> None:
    """Delete what the listener left of a kept name; one it moved away is gone already."""
    if kept is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(kept)
