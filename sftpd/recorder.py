"""Turns a finished upload into a durable record and an event for the ingest side."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.logs import get_logger
from core.uploads import Upload, UploadStore
from sftpd.events import UploadCompleted, UploadListener

log = get_logger(__name__)


class UploadRecorder:
    """Records completed uploads, then tells the listener; shared by all sessions of a server.

    Records are written by a thread of their own: the database may be busy (another process, a
    long transaction of the pipeline), which must never stall the event loop, and the client's
    close reply waits for the record, so it must not queue behind work in the loop's default
    executor (staging, scans) either. One thread suffices: the database serialises writers anyway.
    """

    def __init__(self, uploads: UploadStore, listener: UploadListener | None) -> None:
        self._uploads = uploads
        self._listener = listener
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sftpd-recorder")

    async def completed(
        self, tenant: str, relative_path: str, local_path: Path, size: int, sha256: str
    ) -> Upload:
        """Record the upload and hand it on."""
        upload = await asyncio.get_running_loop().run_in_executor(
            self._writer, self._uploads.record, tenant, relative_path, size, sha256, "sftp"
        )
        log.info(
            "upload.completed",
            tenant=tenant,
            path=relative_path,
            size=size,
            sha256=sha256,
            upload_id=upload.id,
        )
        if self._listener is not None:
            try:
                self._listener(UploadCompleted(upload, local_path))
            except Exception:
                log.error(
                    "upload.listener_failed",
                    exc_info=True,
                    tenant=tenant,
                    path=relative_path,
                    upload_id=upload.id,
                )
        return upload

    def close(self) -> None:
        """Stop taking records; those already queued are still written."""
        self._writer.shutdown(wait=False)
