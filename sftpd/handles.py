"""Open files of an SFTP session: plain reads, and uploads that become files only when finished.

An upload is written to a in-flight file outside ``in/`` (see :mod:`sftpd.vfs`) and moved to its
name in one atomic rename when the client closes it normally. Until then nothing in ``in/``
changes, so a transfer that breaks off leaves no partial file for anyone to process; the in-flight
file is simply deleted.

The sha256 is computed as the bytes arrive, which is free when the client writes in order (every
common client does); otherwise the finished file is read once more.

A write the file system refuses (disk full, quota, I/O error) fails the whole upload: the partial
file is discarded at once, freeing its space, and every later write and the client's close get
the same error. A client that ignores a failed write and closes the handle anyway (OpenSSH's
``sftp`` and asyncssh do) must never have a truncated file published, recorded or processed.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from pathlib import Path
from typing import NamedTuple, NoReturn

from asyncssh import SFTPError, SFTPFailure, SFTPNoSpaceOnFilesystem, SFTPPermissionDenied

from core.crypto import AtRest
from core.logs import get_logger
from sftpd.rules import UploadRules
from sftpd.stored import Refused, Unreadable, open_plaintext, refusal
from sftpd.vfs import TenantFileSystem, VirtualPath

log = get_logger(__name__)

# asyncssh advertises this as its largest read (limits@openssh.com); a client asking for more
# gets a short read, as the protocol allows, instead of making the server allocate it.
MAX_READ_BYTES = 4 * 1024 * 1024
_COPY_CHUNK_BYTES = 1024 * 1024


class Published(NamedTuple):
    """A finished upload: its size, its sha256 and, if asked for, the name it keeps in the in-flight folder."""

    size: int
    sha256: str
    kept: Path | None


class UploadTooLarge(SFTPFailure):
    """The write that took an upload past the size limit; later writes get a plain failure."""


class ReadHandle:
    """A file opened for reading only: its plaintext (see :mod:`sftpd.stored`)."""

    def __init__(self, path: VirtualPath, fd: int, at_rest: AtRest, tenant: str) -> None:
        """Takes ``fd`` over; a file that cannot be served is refused here (see
        :func:`sftpd.stored.refusal`)."""
        self.path = path
        self._fd = fd
        self._tenant = tenant
        self._refused: Refused | None = None
        try:
            self._plain = open_plaintext(at_rest, os.dup(fd), path)
            self.size = self._plain.seek(0, os.SEEK_END)
        except Unreadable as exc:
            os.close(fd)
            raise refusal(tenant, path, exc, "opening") from None
        except BaseException:
            os.close(fd)
            raise

    def read(self, offset: int, size: int) -> bytes:
        """Plaintext at ``offset``; once a chunk failed authentication, every later read of this
        handle is refused too (a client reading ahead gets nothing more of a tampered file)."""
        if self._refused is not None:
            raise self._refused
        try:
            self._plain.seek(offset)
            return self._plain.read(min(size, MAX_READ_BYTES))
        except Unreadable as exc:
            self._refused = refusal(self._tenant, self.path, exc, "reading")
            raise self._refused from None

    def write(self, offset: int, data: bytes) -> int:
        raise SFTPPermissionDenied(f"{self.path} was opened for reading only")

    def stat(self) -> tuple[os.stat_result, int]:
        """The file's attributes, and its size as the tenant sees it (the plaintext's)."""
        return os.fstat(self._fd), self.size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return data_seek(offset, whence, self.size)

    def close(self) -> None:
        self._plain.close()
        os.close(self._fd)


def data_seek(offset: int, whence: int, size: int) -> int:
    """For asyncssh's ``ranges@asyncssh.com``, which looks for the data in sparse files: a file
    a tenant sees (plaintext, ``size`` bytes) is data from start to end, with no holes."""
    if whence == os.SEEK_DATA:
        if offset >= size:
            raise OSError(errno.ENXIO, "no data past the end of the file")
        return offset
    if whence == os.SEEK_HOLE:
        if offset > size:
            raise OSError(errno.ENXIO, "past the end of the file")
        return size
    if whence == os.SEEK_END:
        return size + offset
    return offset


class IncomingFile:
    """A file being uploaded to ``target``, held in the in-flight folder until the client closes it."""

    def __init__(
        self, fs: TenantFileSystem, target: VirtualPath, rules: UploadRules, append: bool,
        at_rest: AtRest,
    ) -> None:
        self.path = target
        self.size = 0
        self._fs = fs
        self._at_rest = at_rest
        self._max_bytes = rules.max_bytes
        self._too_large_message = rules.too_large_message()
        self._append = append
        self._in_flight_name, self._fd = fs.new_in_flight_file()
        self._sha256 = hashlib.sha256()
        self._hashed = 0
        self._in_order = True
        self._refusal: SFTPError | None = None

    @property
    def is_open(self) -> bool:
        """False once the upload was published or discarded."""
        return self._fd >= 0

    def seed(self, source: int) -> None:
        """Start from the plaintext of the file open at ``source`` (taken over): the client
        reopened a file to resume.

        Blocking; the caller opens ``source`` on the event loop (see :mod:`sftpd.vfs`).
        """
        try:
            with open_plaintext(self._at_rest, source, self.path) as plain:
                while chunk := plain.read(_COPY_CHUNK_BYTES):
                    self.write(self.size, chunk)
        except OSError as exc:
            self._fail(exc, "copying the existing file")
        except Unreadable as exc:
            self.discard()
            self._refusal = refusal(self._fs.root.name, self.path, exc, "resuming")
            raise self._refusal from None

    def write(self, offset: int, data: bytes) -> int:
        if self._refusal is not None:
            raise self._refusal
        if self._append:
            offset = self.size
        end = offset + len(data)
        if end > self._max_bytes:
            self.discard()
            self._refusal = SFTPFailure(self._too_large_message)
            raise UploadTooLarge(self._too_large_message)
        view = memoryview(data)
        position = offset
        try:
            while view:
                written = os.pwrite(self._fd, view, position)
                view = view[written:]
                position += written
        except OSError as exc:
            self._fail(exc, "writing")
        if self._in_order and offset == self._hashed:
            self._sha256.update(data)
            self._hashed = end
        else:
            self._in_order = False
        self.size = max(self.size, end)
        return len(data)

    def read(self, offset: int, size: int) -> bytes:
        if not self.is_open:
            raise SFTPFailure(f"{self.path}: the upload was discarded")
        return os.pread(self._fd, min(size, MAX_READ_BYTES), offset)

    def truncate(self, size: int) -> None:
        """Cut or extend the upload to ``size`` bytes (a client's setstat of its own open
        upload), under the same size limit as a write."""
        if self._refusal is not None:
            raise self._refusal
        if not self.is_open:
            raise SFTPFailure(f"{self.path}: the upload was discarded")
        if size > self._max_bytes:
            self.discard()
            self._refusal = SFTPFailure(self._too_large_message)
            raise UploadTooLarge(self._too_large_message)
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            self._fail(exc, "resizing")
        if size < self._hashed:
            self._in_order = False
        self.size = size

    def stat(self) -> tuple[os.stat_result, int]:
        """The in-flight file's attributes, and the upload's size as written so far."""
        if not self.is_open:
            raise SFTPFailure(f"{self.path}: the upload was discarded")
        return os.fstat(self._fd), self.size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """For asyncssh's ``ranges@asyncssh.com``, which finds the data in sparse files."""
        if not self.is_open:
            raise SFTPFailure(f"{self.path}: the upload was discarded")
        return os.lseek(self._fd, offset, whence)

    def set_times(self, times_ns: tuple[int, int]) -> None:
        if self.is_open:
            os.utime(self._fd, ns=times_ns)

    def fsync(self) -> None:
        if self._refusal is not None:
            raise self._refusal
        if self.is_open:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._fail(exc, "flushing")

    async def finish(self, keep: bool) -> Published:
        """Publish the file under its name, with a kept name too if asked (see
        :meth:`TenantFileSystem.publish`).

        A refused upload stays refused: closing it repeats the refusal, so even a client that
        ignored the failed write learns that nothing was stored.
        """
        if self._refusal is not None:
            raise self._refusal
        try:
            if not (self._in_order and self._hashed == self.size):
                await asyncio.to_thread(self._rehash)
            os.close(self._fd)
            self._fd = -1
            kept = self._fs.publish(self._in_flight_name, self.path, keep)
            self._in_flight_name = ""
        except OSError as exc:
            self._fail(exc, "finishing")
        except BaseException:
            self.discard()
            raise
        return Published(self.size, self._sha256.hexdigest(), kept)

    def discard(self) -> None:
        """Throw the partial file away; safe to call more than once."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._in_flight_name:
            self._fs.discard_in_flight_file(self._in_flight_name)
            self._in_flight_name = ""

    def _fail(self, exc: OSError, doing: str) -> NoReturn:
        """The file system refused the upload's bytes: discard it, and refuse it from now on."""
        self.discard()
        refusal: SFTPError
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            refusal = SFTPNoSpaceOnFilesystem(
                f"{self.path}: the server is out of space; the upload was discarded,"
                " try again later"
            )
        else:
            refusal = SFTPFailure(
                f"{self.path}: the upload failed ({exc.strerror}) and was discarded"
            )
        self._refusal = refusal
        log.error(
            "upload.failed",
            tenant=self._fs.root.name,
            path=self.path.relative,
            received=self.size,
            reason=f"{doing}: {exc.strerror or exc}",
            errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
        )
        raise refusal from None

    def _rehash(self) -> None:
        digest = hashlib.sha256()
        offset = 0
        while chunk := os.pread(self._fd, _COPY_CHUNK_BYTES, offset):
            digest.update(chunk)
            offset += len(chunk)
        self._sha256 = digest
        self.size = offset
