"""Turns a finished upload into a durable record and an event for the ingest side."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.logs import get_logger
from core.uploads import Upload, UploadStore
from sftpd.events import UploadCompleted, UploadListener

log = get_logger(__name__)


class UploadRecorder:
    """Records completed uploads, then tells the listener; shared by all sessions of a server."""

    def __init__(self, uploads: UploadStore, listener: UploadListener | None) -> None:
        self._uploads = uploads
        self._listener = listener

    async def completed(
        self, tenant: str, relative_path: str, local_path: Path, size: int, sha256: str
    ) -> Upload:
        """Record the upload (in a thread: the database may be busy) and hand it on."""
        upload = await asyncio.to_thread(
            self._uploads.record, tenant, relative_path, size, sha256, "sftp"
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
