"""Uploads in progress, by tenant and path, shared by every session of one server.

An upload lives in the hidden in-flight folder until its client closes it (see
:mod:`sftpd.handles`), so the path the client writes to does not exist yet, or still holds the
file it will replace. Clients that look at that path while they write must see the file as
written so far: sshfs answers ``cp new.csv in/`` with OPEN and then LSTAT of the new path, and
"open, stat, write" scripts do the same, in the same session or another one of the tenant.
This registry says which upload a path names; it is used on the event loop only.
"""

from __future__ import annotations

from collections.abc import Iterator

from sftpd.handles import IncomingFile
from sftpd.vfs import VirtualPath


class UploadsInProgress:
    """The open uploads of every tenant, by the path each will be published at."""

    def __init__(self) -> None:
        self._by_path: dict[tuple[str, VirtualPath], list[IncomingFile]] = {}

    def add(self, tenant: str, upload: IncomingFile) -> None:
        self._by_path.setdefault((tenant, upload.path), []).append(upload)

    def remove(self, tenant: str, upload: IncomingFile) -> None:
        """Forget ``upload`` (published or discarded); safe to call more than once."""
        key = (tenant, upload.path)
        uploads = self._by_path.get(key)
        if uploads is None:
            return
        if upload in uploads:
            uploads.remove(upload)
        if not uploads:
            del self._by_path[key]

    def find(self, tenant: str, path: VirtualPath) -> IncomingFile | None:
        """The latest upload to ``path`` still being written, if any (a discarded one is not)."""
        for upload in reversed(self._by_path.get((tenant, path), ())):
            if upload.is_open:
                return upload
        return None

    def __iter__(self) -> Iterator[tuple[str, IncomingFile]]:
        """Each upload still being written, with its tenant."""
        for (tenant, _), uploads in list(self._by_path.items()):
            for upload in uploads:
                if upload.is_open:
                    yield tenant, upload

    def __len__(self) -> int:
        return sum(len(uploads) for uploads in self._by_path.values())
