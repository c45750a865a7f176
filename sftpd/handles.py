"""Open files of an SFTP session: plain reads, and uploads that become files only when finished.

An upload is written to a in-flight file outside ``in/`` (see :mod:`sftpd.vfs`) and moved to its
name in one atomic rename when the client closes it normally. Until then nothing in ``in/``
changes, so a transfer that breaks off leaves no partial file for anyone to process; the in-flight
file is simply deleted.

Every upload is stored sealed (:mod:`core.crypto`, through the server's ``AtRest``): the bytes
are encrypted as they arrive, and the sha256, the size and every stat show the plaintext. The
sha256 is computed as the bytes are sealed, in order (see :class:`IncomingFile`).

A write the file system refuses (disk full, quota, I/O error) fails the whole upload: the partial
file is discarded at once, freeing its space, and every later write and the client's close get
the same error. A client that ignores a failed write and closes the handle anyway (OpenSSH's
``sftp`` and asyncssh do) must never have a truncated file published, recorded or processed.
"""

from __future__ import annotations

import errno
import hashlib
import os
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, NamedTuple, NoReturn

from asyncssh import SFTPError, SFTPFailure, SFTPNoSpaceOnFilesystem, SFTPPermissionDenied

from core.crypto import AtRest, EncryptedWriter
from core.logs import get_logger
from sftpd.ordering import HeldTooMuch, HeldWrites
from sftpd.rules import UploadRules
from sftpd.stored import Refused, Unreadable, open_plaintext, refusal
from sftpd.vfs import FILE_MODE, TenantFileSystem, VirtualPath

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
    """A file being uploaded to ``target``, sealed as it arrives into the in-flight folder and
    published when the client closes it.

    The sealed format is written front to back only (:class:`core.crypto.EncryptedWriter`), so a
    write at the next offset goes straight in, one further on is held until the bytes before it
    come (:mod:`sftpd.ordering`), and anything else the client may do to its own open file (write
    again over what it sent, cut it short, keep writing after reading it back) writes the upload
    again from its plaintext into a new in-flight file (:meth:`_reseal`): uploads are at most
    ``max_upload_bytes``, and common clients never do it. Reading back seals what was written so
    far and reads that.
    """

    def __init__(
        self, fs: TenantFileSystem, target: VirtualPath, rules: UploadRules, append: bool,
        at_rest: AtRest,
    ) -> None:
        self.path = target
        # The upload's size as the client sees it: the end of the furthest byte it wrote.
        self.size = 0
        self._fs = fs
        self._at_rest = at_rest
        self._max_bytes = rules.max_bytes
        self._too_large_message = rules.too_large_message()
        self._append = append
        self._held = HeldWrites()
        self._refusal: SFTPError | None = None
        self._times: tuple[int, int] | None = None
        self._reader: BinaryIO | None = None
        self._written = 0  # plaintext bytes sealed into the in-flight file, in order
        self._sha256 = hashlib.sha256()
        self._writer: EncryptedWriter | None
        self._in_flight_name, self._fd, self._writer = self._new_file()

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
        self._check_open()
        if self._append:
            offset = self.size
        end = offset + len(data)
        if end > self._max_bytes:
            self._too_large()
        try:
            if offset > self._written:
                self._held.hold(offset, data)
            elif offset == self._written:
                self._emit(data)
            else:
                self._reseal(self._written, (offset, data))
            self._release()
        except OSError as exc:
            self._fail(exc, "writing")
        except HeldTooMuch as exc:
            self._refuse(f"{self.path}: the upload failed ({exc}) and was discarded", str(exc))
        self.size = max(self.size, end)
        return len(data)

    def read(self, offset: int, size: int) -> bytes:
        """What the client wrote so far at ``offset`` (bytes it has not written read as zeros)."""
        self._check_open()
        count = min(size, MAX_READ_BYTES, self.size - offset)
        if count <= 0:
            return b""
        out = bytearray(count)
        try:
            if offset < self._written:
                reader = self._sealed_reader()
                reader.seek(offset)
                part = reader.read(min(count, self._written - offset))
                out[: len(part)] = part
        except OSError as exc:
            self._fail(exc, "reading back")
        self._held.overlay(offset, out)
        return bytes(out)

    def truncate(self, size: int) -> None:
        """Cut or extend the upload to ``size`` bytes (a client's setstat of its own open
        upload), under the same size limit as a write; bytes it adds read as zeros."""
        self._check_open()
        if size > self._max_bytes:
            self._too_large()
        try:
            self._held.cut(size)
            if size < self._written:
                self._reseal(size)
            end = max(self._written, self._held.end)
            if size > end and end > self._written:
                self._held.hold(end, bytes(size - end))
            else:
                for start in range(end, size, _COPY_CHUNK_BYTES):
                    self._emit(bytes(min(_COPY_CHUNK_BYTES, size - start)))
            self._release()
        except OSError as exc:
            self._fail(exc, "resizing")
        except HeldTooMuch as exc:
            self._refuse(f"{self.path}: the upload failed ({exc}) and was discarded", str(exc))
        self.size = size

    def stat(self) -> tuple[os.stat_result, int]:
        """The in-flight file's attributes, and the upload's size as written so far."""
        self._check_open()
        return os.fstat(self._fd), self.size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check_open()
        return data_seek(offset, whence, self.size)

    def set_times(self, times_ns: tuple[int, int]) -> None:
        """Applied now, and again once the last chunk is sealed (which changes the mtime):
        ``put -p`` sets them before it closes."""
        if self.is_open:
            self._times = times_ns
            os.utime(self._fd, ns=times_ns)

    def fsync(self) -> None:
        """Make what is sealed so far durable (the last, unsealed chunk is sealed at close)."""
        self._check_open()
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._fail(exc, "flushing")

    async def finish(self, keep: bool) -> Published:
        """Publish the file under its name, with a kept name too if asked (see
        :meth:`TenantFileSystem.publish`).

        A refused upload stays refused: closing it repeats the refusal, so even a client that
        ignored the failed write learns that nothing was stored. So is one with a gap no write
        filled.
        """
        if self._refusal is not None:
            raise self._refusal
        try:
            if self._held:
                start, end = self._held.first_gap(self._written)
                self._refuse(
                    f"{self.path}: the upload failed (bytes {start} to {end - 1} were never written)"
                    " and was discarded", f"a gap at bytes {start} to {end - 1}"
                )
            self._seal()
            if self._times is not None:
                os.utime(self._fd, ns=self._times)
            # Published while its descriptor (and so its lock, sftpd.vfs) is still held.
            kept = self._fs.publish(self._in_flight_name, self.path, keep)
            self._in_flight_name = ""
            os.close(self._fd)
            self._fd = -1
        except OSError as exc:
            self._fail(exc, "finishing")
        except BaseException:
            self.discard()
            raise
        self.size = self._written
        return Published(self._written, self._sha256.hexdigest(), kept)

    def discard(self) -> None:
        """Throw the partial file away; safe to call more than once."""
        self._held.clear()
        if self._writer is not None:
            with suppress(OSError):  # its buffer cannot reach a full disk: nothing is lost
                self._writer.discard()
            self._writer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._in_flight_name:
            self._fs.discard_in_flight_file(self._in_flight_name)
            self._in_flight_name = ""

    def _new_file(self) -> tuple[str, int, EncryptedWriter]:
        """A new in-flight file, sealed by a new writer, and a descriptor of it."""
        name, path = self._fs.new_in_flight_path()
        writer = self._at_rest.create(path)
        try:
            fd = self._fs.open_in_flight(name)
            try:
                os.fchmod(fd, FILE_MODE)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            with suppress(OSError):
                writer.discard()
            self._fs.discard_in_flight_file(name)
            raise
        return name, fd, writer

    def _emit(self, data: bytes | bytearray | memoryview) -> None:
        """Seal ``data`` at the next offset (the writer only appends)."""
        if self._writer is None:
            self._reseal(self._written)
        assert self._writer is not None
        self._writer.write(data)
        self._sha256.update(data)
        self._written += len(data)

    def _release(self) -> None:
        for piece in self._held.release(self._written):
            self._emit(piece)

    def _reseal(self, keep: int, patch: tuple[int, bytes] | None = None) -> None:
        """Write the upload again into a new in-flight file: its first ``keep`` plaintext bytes,
        with ``patch`` (an offset and bytes, at most ``keep`` from the start) laid over them."""
        source = self._sealed_reader()
        self._reader = None
        old_name, old_fd = self._in_flight_name, self._fd
        try:
            self._in_flight_name, self._fd, self._writer = self._new_file()
            self._written = 0
            self._sha256 = hashlib.sha256()
            if patch is None:
                self._copy(source, 0, keep)
            else:
                offset, data = patch
                self._copy(source, 0, offset)
                self._emit(data)
                self._copy(source, offset + len(data), keep)
            if self._times is not None:
                os.utime(self._fd, ns=self._times)
        finally:
            source.close()
            if old_fd != self._fd:
                os.close(old_fd)
                self._fs.discard_in_flight_file(old_name)

    def _copy(self, source: BinaryIO, start: int, stop: int) -> None:
        source.seek(start)
        while start < stop and (chunk := source.read(min(_COPY_CHUNK_BYTES, stop - start))):
            self._emit(chunk)
            start += len(chunk)

    def _sealed_reader(self) -> BinaryIO:
        """The plaintext written so far, sealing it first if it is still being written."""
        self._seal()
        if self._reader is None:
            self._reader = open_plaintext(self._at_rest, os.dup(self._fd), self.path)
        return self._reader

    def _seal(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def _check_open(self) -> None:
        if self._refusal is not None:
            raise self._refusal
        if not self.is_open:
            raise SFTPFailure(f"{self.path}: the upload was discarded")

    def _too_large(self) -> NoReturn:
        self.discard()
        self._refusal = SFTPFailure(self._too_large_message)
        raise UploadTooLarge(self._too_large_message)

    def _refuse(self, message: str, reason: str) -> NoReturn:
        """Fail the upload for what the client did: discard it, and refuse it from now on."""
        self.discard()
        self._refusal = SFTPFailure(message)
        log.error("upload.failed", tenant=self._fs.root.name, path=self.path.relative,
                  received=self.size, reason=reason)
        raise self._refusal

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
