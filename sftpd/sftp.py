"""The SFTP subsystem of one tenant session: what a tenant may do inside its chroot.

- ``/`` and the folders ``/in`` and ``/out`` themselves: list and stat, nothing else.
- ``/out/...``: reports, read-only: list, stat, read.
- ``/in/...``: uploads (by the upload rules), folders, delete, rename within ``in/``, and file
  times (``put -p``); reading back one's own uploads is allowed. When the server knows the
  tenant's feed folders, a sub-folder of ``in/`` must be one of them.
- Permission and owner changes on a tenant's own files and folders are accepted and ignored
  (as SFTPGo's ``setstat_mode = 1``), so ``put -r``, ``put -p``, ``scp`` and WinSCP stay quiet;
  times are applied. A size change is applied only to an upload still open (it is the client's
  own bytes, like a write); a stored file's size is never changed (refused).
- Never: links (symbolic or hard), special files, and nothing outside the root, whatever the
  path says.

An upload in progress is visible at its path (stat, lstat, fstat, setstat of times) to every
session of the tenant as written so far (:mod:`sftpd.inflight`); it still counts only once its
client closes it, and an empty one is published but not recorded as an upload.

The session ends with exit status 0 when the client ends it (``scp`` checks it), and 1 with the
reason on stderr when it ends on an error such as a malformed request.

Refusals are SFTP statuses whose message says what was refused and why; clients such as WinSCP
and FileZilla show it. OpenSSH's ``sftp`` prints only the status code, so for upload-rule
refusals the message is also written to the channel's stderr, which ``sftp`` shows.

The connection's :class:`~sftpd.limits.Admission` sees every request (idle timeout), counts open
files and listings, and watches each upload's pace. Folders are listed in chunks of
:data:`LISTING_CHUNK` names read by a worker thread as the client asks for them, so a folder of
100,000 files never holds up the event loop, and with it every other session.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Sequence
from functools import partial
from pathlib import Path
from typing import NoReturn

import asyncssh
from asyncssh import (
    FXF_APPEND,
    FXF_CREAT,
    FXF_EXCL,
    FXF_TRUNC,
    FXF_WRITE,
    SFTPAttrs,
    SFTPError,
    SFTPFailure,
    SFTPName,
    SFTPNoSuchFile,
    SFTPOpUnsupported,
    SFTPPermissionDenied,
)

from core.crypto import AtRest
from core.db import DatabaseUnavailable
from core.logs import get_logger
from core.tenants import IN_DIR, OUT_DIR
from sftpd.asyncssh_compat import client_requested_close, session_end
from sftpd.events import FeedFolders
from sftpd.handles import IncomingFile, ReadHandle, UploadTooLarge
from sftpd.inflight import UploadsInProgress
from sftpd.limits import Admission, UploadPace
from sftpd.recorder import UploadRecorder
from sftpd.rules import UploadRules
from sftpd.stored import Refused, Unreadable, plaintext_digest, plaintext_size, refusal
from sftpd.vfs import TenantFileSystem, VirtualPath, folder_extent, name_error

log = get_logger(__name__)

_MODIFYING_FLAGS = FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC | FXF_EXCL
_WRITE_BITS = 0o222
_FILE_TYPES = {
    stat.S_IFREG: asyncssh.FILEXFER_TYPE_REGULAR,
    stat.S_IFDIR: asyncssh.FILEXFER_TYPE_DIRECTORY,
    stat.S_IFLNK: asyncssh.FILEXFER_TYPE_SYMLINK,
    stat.S_IFCHR: asyncssh.FILEXFER_TYPE_CHAR_DEVICE,
    stat.S_IFBLK: asyncssh.FILEXFER_TYPE_BLOCK_DEVICE,
    stat.S_IFIFO: asyncssh.FILEXFER_TYPE_FIFO,
    stat.S_IFSOCK: asyncssh.FILEXFER_TYPE_SOCKET,
}
_NANOSECONDS = 1_000_000_000
_KEPT_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# Names a worker thread reads (and stats) from a folder at a time. A folder that fits in one
# chunk is listed sorted; a larger one in the order the file system gives (clients sort anyway).
LISTING_CHUNK = 1000

OpenFile = ReadHandle | IncomingFile


class TenantSFTPServer(asyncssh.SFTPServer):
    """One SFTP session, chrooted to a tenant's folders."""

    def __init__(
        self,
        chan: asyncssh.SSHServerChannel[bytes],
        tenant: str,
        fs: TenantFileSystem,
        rules: UploadRules,
        recorder: UploadRecorder,
        admission: Admission,
        in_progress: UploadsInProgress | None = None,
        feed_folders: FeedFolders | None = None,
        refusal: str | None = None,
        *,
        at_rest: AtRest,
    ) -> None:
        """``refusal``: every request of this session fails with it (a session opened while
        the server stops; see :meth:`sftpd.server.SftpServer.drain`). ``at_rest``: what stored
        files are sealed and read through."""
        super().__init__(chan)
        self._tenant = tenant
        self._fs = fs
        self._at_rest = at_rest
        self._rules = rules
        self._recorder = recorder
        self._admission = admission
        self._in_progress = in_progress if in_progress is not None else UploadsInProgress()
        self._feed_folders = feed_folders
        # Uploads watched for their pace, and those aborted as too slow (already discarded).
        self._paces: dict[IncomingFile, UploadPace] = {}
        self._too_slow: dict[IncomingFile, SFTPFailure] = {}
        peer = chan.get_extra_info("peername")
        self._source = str(peer[0]) if peer else "unknown"
        self._refusal = refusal
        if refusal is None:
            log.info("sftp.session.started", tenant=tenant, source=self._source)
        else:
            log.info("sftp.session.refused", tenant=tenant, source=self._source, reason=refusal)
            chan.write_stderr(f"sftpd: {refusal}\n".encode())

    # Names and attributes

    def realpath(self, path: bytes) -> bytes:
        return str(self._parse(path)).encode()

    def stat(self, path: bytes) -> SFTPAttrs:
        """Links are never followed, so stat reports what lstat does."""
        return self.lstat(path)

    def lstat(self, path: bytes) -> SFTPAttrs:
        """An upload in progress to ``path`` answers as written so far (see sftpd.inflight)."""
        target = self._parse(path)
        upload = self._in_progress.find(self._tenant, target)
        if upload is not None:
            return _attrs(*upload.stat(), target, self._tenant)
        info = self._fs.lstat(target)
        size = info.st_size
        if stat.S_ISREG(info.st_mode):
            size = plaintext_size(self._fs.open_for_reading(target), target.name)
        return _attrs(info, size, target, self._tenant)

    def fstat(self, file_obj: object) -> SFTPAttrs:
        handle = self._file(file_obj)
        return _attrs(*handle.stat(), handle.path, self._tenant)

    def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        """The folder is checked now; its names are read when the client asks for them."""
        folder = self._parse(path)
        with self._fs.directory(folder):
            pass
        return self._names(folder)

    def format_user(self, uid: int | None) -> str:
        return self._tenant

    def format_group(self, gid: int | None) -> str:
        return self._tenant

    # Files

    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> OpenFile:
        target = self._parse(path)
        self._admission.take_handle()
        try:
            handle = await self._open(target, pflags)
        except Refused as exc:
            self._admission.release_handle()
            self._tell(exc)
        except BaseException:
            self._admission.release_handle()
            raise
        if isinstance(handle, IncomingFile):
            self._in_progress.add(self._tenant, handle)
            pace = self._admission.watch_upload(
                target.relative, partial(self._abort_upload, handle)
            )
            if pace is not None:
                self._paces[handle] = pace
        return handle

    async def _open(self, target: VirtualPath, pflags: int) -> OpenFile:
        if not pflags & _MODIFYING_FLAGS:
            if target.is_root:
                raise SFTPFailure("/ is a folder, not a file")
            return ReadHandle(target, self._fs.open_for_reading(target), self._at_rest, self._tenant)
        self._check_writable(target, "upload to")
        problem = (name_error(target.name) or self._rules.name_error(target.name)
                   or self._rules.path_error(target, folder=False)
                   or await self._feed_folder_error(target, folder=False))
        if problem:
            self._refuse_upload(target, problem)
        existing = self._fs.lookup(target)
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                raise SFTPFailure(f"{target} is a folder, not a file")
            if not stat.S_ISREG(existing.st_mode):
                raise SFTPPermissionDenied(f"{target} is not a regular file and cannot be replaced")
            if pflags & FXF_EXCL:
                raise asyncssh.SFTPFileAlreadyExists(f"{target} already exists")
        elif not pflags & FXF_CREAT:
            raise SFTPNoSuchFile(f"{target}: no such file")
        incoming = IncomingFile(self._fs, target, self._rules, append=bool(pflags & FXF_APPEND),
                                at_rest=self._at_rest)
        if existing is not None and not pflags & FXF_TRUNC:
            try:
                await asyncio.to_thread(incoming.seed, self._fs.open_for_reading(target))
            except BaseException:
                incoming.discard()
                raise
        return incoming

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        try:
            return self._file(file_obj).read(offset, size)
        except Refused as exc:
            self._tell(exc)

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        handle = self._file(file_obj)
        if isinstance(handle, IncomingFile) and handle in self._too_slow:
            raise self._too_slow[handle]
        try:
            written = handle.write(offset, data)
        except UploadTooLarge as exc:
            self._refuse_upload(handle.path, str(exc.reason), exc)
        pace = self._paces.get(handle) if isinstance(handle, IncomingFile) else None
        if pace is not None:
            pace.add(written)
        return written

    def close(self, file_obj: object) -> Awaitable[None] | None:
        """Publish an upload the client closed; discard one left open when the session ended."""
        # asyncssh closes the handles a session left open the same way: see asyncssh_compat.
        by_client = client_requested_close()
        handle = self._file(file_obj)
        self._admission.release_handle()
        if isinstance(handle, ReadHandle):
            handle.close()
            return None
        self._in_progress.remove(self._tenant, handle)
        pace = self._paces.pop(handle, None)
        if pace is not None:
            pace.stop()
        too_slow = self._too_slow.pop(handle, None)
        if too_slow is not None:
            if by_client:
                raise too_slow
            return None
        if by_client:
            return self._finish(handle)
        if handle.is_open:
            handle.discard()
            log.warning(
                "upload.aborted",
                tenant=self._tenant,
                path=handle.path.relative,
                received=handle.size,
                reason="session ended before the file was closed",
            )
        return None

    def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        handle = self._file(file_obj)
        if isinstance(handle, ReadHandle):
            raise SFTPPermissionDenied(f"{handle.path} was opened for reading only")
        self._change_upload(handle, attrs)

    def fsync(self, file_obj: object) -> None:
        handle = self._file(file_obj)
        if isinstance(handle, IncomingFile):
            handle.fsync()

    # Changes to names

    def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        """Times are applied; permissions and owners are accepted and ignored; a size only on an
        upload still open (see the module's docstring)."""
        target = self._parse(path)
        self._check_writable(target, "change")
        upload = self._in_progress.find(self._tenant, target)
        if upload is not None:
            self._change_upload(upload, attrs)
            return
        if attrs.size is not None:
            raise SFTPPermissionDenied(
                f"{target}: the size of a stored file cannot be changed; upload it again instead"
            )
        times = _requested_times(attrs)
        if times:
            self._fs.set_times(target, times)
        else:
            self._fs.lstat(target)  # nothing to apply, but the path must exist

    def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        self.setstat(path, attrs)

    def remove(self, path: bytes) -> None:
        target = self._parse(path)
        self._check_writable(target, "delete")
        self._fs.unlink(target)

    async def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        target = self._parse(path)
        self._check_writable(target, "create folders in")
        problem = (name_error(target.name) or self._rules.path_error(target, folder=True)
                   or await self._feed_folder_error(target, folder=True))
        if problem:
            self._refuse_upload(target, problem, action="folder")
        self._fs.mkdir(target)

    def rmdir(self, path: bytes) -> None:
        target = self._parse(path)
        self._check_writable(target, "delete")
        self._fs.rmdir(target)

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._rename(oldpath, newpath, replace=False)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._rename(oldpath, newpath, replace=True)

    # Refused outright

    def readlink(self, path: bytes) -> NoReturn:
        raise SFTPPermissionDenied("symbolic links are not supported on this server")

    def symlink(self, oldpath: bytes, newpath: bytes) -> NoReturn:
        raise SFTPPermissionDenied("creating symbolic links is not allowed on this server")

    def link(self, oldpath: bytes, newpath: bytes) -> NoReturn:
        raise SFTPPermissionDenied("creating hard links is not allowed on this server")

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: SFTPAttrs) -> NoReturn:
        raise SFTPOpUnsupported("only SFTP version 3 is supported")

    def statvfs(self, path: bytes) -> NoReturn:
        raise SFTPOpUnsupported("file system statistics are not available")

    def fstatvfs(self, file_obj: object) -> NoReturn:
        raise SFTPOpUnsupported("file system statistics are not available")

    def exit(self) -> None:
        for pace in self._paces.values():
            pace.stop()
        self._paces.clear()
        self._fs.close()
        end = session_end()
        error = end.error if end is not None else None
        log.info("sftp.session.ended", tenant=self._tenant, source=self._source,
                 error=str(error) if error else None)
        if self.channel.is_closing():
            return
        if error is None:
            self.channel.exit(0)
        else:
            self.channel.write_stderr(f"sftpd: the SFTP session ended: {error}\n".encode())
            self.channel.exit(1)

    # Helpers

    def _parse(self, path: bytes) -> VirtualPath:
        """A request naming a path: the connection is not idle."""
        self._refuse_if_closing()
        self._admission.touch()
        return VirtualPath.parse(path)

    def _file(self, file_obj: object) -> OpenFile:
        """A request on an open file: the connection is not idle."""
        self._admission.touch()
        if not isinstance(file_obj, (ReadHandle, IncomingFile)):
            raise asyncssh.SFTPInvalidHandle("invalid file handle")
        return file_obj

    def _refuse_if_closing(self) -> None:
        """A refused session opens no file, so a request on a path is the only one to refuse."""
        if self._refusal is not None:
            raise SFTPFailure(self._refusal)

    def _abort_upload(self, upload: IncomingFile, reason: str) -> None:
        """Throw away an upload too slow to go on (see :class:`~sftpd.limits.UploadPace`); its
        later writes and its close fail with ``reason``."""
        self._paces.pop(upload, None)
        upload.discard()
        self._too_slow[upload] = SFTPFailure(reason)
        self.channel.write_stderr(f"sftpd: {upload.path}: {reason}\n".encode())

    async def _finish(self, upload: IncomingFile) -> None:
        """Publish the upload; record it unless its name is temporary or it is empty (a file a
        client created and gave up on, or an empty file: nothing to process either way)."""
        temporary = self._rules.is_temporary(upload.path.name)
        empty = upload.size == 0
        published = await upload.finish(
            keep=self._recorder.wants_files and not temporary and not empty
        )
        if empty and not temporary:
            self._log_empty(upload.path)
        elif not temporary:
            self._recorder.completed(self._tenant, upload.path.relative, self._local(upload.path),
                                     published.size, published.sha256, published.kept)

    async def _rename(self, oldpath: bytes, newpath: bytes, replace: bool) -> None:
        source = self._parse(oldpath)
        target = self._parse(newpath)
        self._check_writable(source, "move")
        self._check_writable(target, "move to")
        mode = self._fs.lstat(source).st_mode
        if stat.S_ISREG(mode):
            problem = (name_error(target.name) or self._rules.name_error(target.name)
                       or self._rules.path_error(target, folder=False)
                       or await self._feed_folder_error(target, folder=False))
            if problem:
                self._refuse_upload(target, problem, action="rename")
        elif stat.S_ISDIR(mode):
            # The folder's contents move with it: their depth and path lengths count too.
            below = await asyncio.to_thread(folder_extent, self._fs.open_folder(source))
            problem = (name_error(target.name) or self._rules.path_error(target, True, *below)
                       or await self._feed_folder_error(target, folder=True))
            if problem:
                self._refuse_upload(target, problem, action="rename")
        else:
            raise SFTPPermissionDenied(f"{source}: only files and folders can be renamed")
        self._fs.rename(source, target, replace)
        completes_upload = (
            stat.S_ISREG(mode)
            and self._rules.is_temporary(source.name)
            and not self._rules.is_temporary(target.name)
        )
        if completes_upload:
            # Hashed through a kept name, as the client may replace the target meanwhile.
            kept = self._fs.keep(target)
            try:
                size, sha256 = await asyncio.to_thread(
                    plaintext_digest, self._at_rest, os.open(kept, _KEPT_FLAGS), target
                )
            except Unreadable as exc:
                os.unlink(kept)
                self._tell(refusal(self._tenant, target, exc, "hashing a renamed upload"))
            except BaseException:
                os.unlink(kept)
                raise
            if size == 0:
                os.unlink(kept)
                self._log_empty(target)
                return
            self._recorder.completed(self._tenant, target.relative, self._local(target), size,
                                     sha256, kept)

    def _tell(self, refused: Refused) -> NoReturn:
        """Refuse a stored file that cannot be served, telling OpenSSH users too (see
        :class:`~sftpd.stored.Refused`)."""
        self.channel.write_stderr(f"sftpd: {refused.reason}\n".encode())
        raise refused

    def _log_empty(self, path: VirtualPath) -> None:
        log.info("upload.empty", tenant=self._tenant, path=path.relative,
                 reason="an empty file is published but not recorded as an upload")

    def _change_upload(self, upload: IncomingFile, attrs: SFTPAttrs) -> None:
        """A setstat of an upload still open: a size is applied like a write (within the size
        limit), times too; permissions and owners are ignored."""
        if attrs.size is not None:
            try:
                upload.truncate(attrs.size)
            except UploadTooLarge as exc:
                self._refuse_upload(upload.path, str(exc.reason), exc)
        times = _requested_times(attrs)
        if times:
            upload.set_times(times)

    async def _feed_folder_error(self, path: VirtualPath, folder: bool) -> str | None:
        """Why ``path`` (a file, or with ``folder`` a folder) may not be in the sub-folder of
        ``in/`` it names, or None: only the tenant's feed folders are processed. Without a
        :data:`~sftpd.events.FeedFolders` every sub-folder is allowed."""
        if self._feed_folders is None or len(path.parts) < (2 if folder else 3):
            return None
        name = path.parts[1]
        try:
            feeds: Sequence[str] = await asyncio.to_thread(self._feed_folders, self._tenant)
        except DatabaseUnavailable as exc:
            log.error("sftp.feed_folders_unavailable", tenant=self._tenant, reason=str(exc))
            raise SFTPFailure(f"cannot check {IN_DIR}/{name}/ right now (the server's database is"
                              f" unreachable); put files directly in {IN_DIR}/ or try again later") from exc
        if name in feeds:
            return None
        known = ", ".join(f"{IN_DIR}/{feed}/" for feed in sorted(feeds))
        return (f"{IN_DIR}/{name}/ is not a feed folder; put files directly in {IN_DIR}/"
                + (f" or in one of the feed folders: {known}" if known else ""))

    def _check_writable(self, path: VirtualPath, action: str) -> None:
        if path.in_inbox:
            return
        if path.parts and path.parts[0] == OUT_DIR:
            raise SFTPPermissionDenied(f"cannot {action} {path}: {OUT_DIR}/ is read-only")
        raise SFTPPermissionDenied(
            f"cannot {action} {path}: only the contents of {IN_DIR}/ can be changed"
        )

    def _refuse_upload(
        self,
        path: VirtualPath,
        problem: str,
        cause: SFTPError | None = None,
        action: str = "upload",
    ) -> NoReturn:
        """Refuse by an upload rule (a file, a folder or a move), telling OpenSSH users too
        (they see only stderr)."""
        message = (
            problem if problem.startswith(f"{action} refused") else f"{action} refused: {problem}"
        )
        log.warning("upload.refused", tenant=self._tenant, path=path.relative, reason=message)
        self.channel.write_stderr(f"sftpd: {path}: {message}\n".encode())
        if cause is not None:
            raise cause
        raise SFTPPermissionDenied(message)

    def _local(self, path: VirtualPath) -> Path:
        return self._fs.root.joinpath(*path.parts)

    async def _names(self, folder: VirtualPath) -> AsyncIterator[SFTPName]:
        """The folder's names, read :data:`LISTING_CHUNK` at a time by a worker thread; counted
        as an open handle while the client reads them."""
        self._admission.take_handle()
        try:
            listing = self._fs.listing(folder)
            try:
                chunk = await asyncio.to_thread(listing.read, LISTING_CHUNK, plaintext_size)
                if len(chunk) < LISTING_CHUNK:
                    chunk.sort()
                while chunk:
                    for name, info, size in chunk:
                        yield SFTPName(name.encode(),
                                       attrs=_attrs(info, size, folder.child(name), self._tenant))
                    self._admission.touch()
                    chunk = await asyncio.to_thread(listing.read, LISTING_CHUNK, plaintext_size)
            finally:
                listing.close()
        finally:
            self._admission.release_handle()


def _attrs(info: os.stat_result, size: int, path: VirtualPath, owner: str) -> SFTPAttrs:
    """The attributes shown to the tenant: ``size`` (a stored file's plaintext size), its own
    name as owner and group, as in listings, and write bits only where it may write.

    Made here rather than by ``SFTPAttrs.from_local``, which looks the host's user and group up
    in the password database on every call, for names a tenant has no business seeing.
    """
    mode = info.st_mode if path.parts[:1] == (IN_DIR,) else info.st_mode & ~_WRITE_BITS
    atime, atime_ns = divmod(info.st_atime_ns, _NANOSECONDS)
    mtime, mtime_ns = divmod(info.st_mtime_ns, _NANOSECONDS)
    ctime, ctime_ns = divmod(info.st_ctime_ns, _NANOSECONDS)
    return SFTPAttrs(
        type=_FILE_TYPES.get(stat.S_IFMT(mode), asyncssh.FILEXFER_TYPE_UNKNOWN), size=size,
        uid=info.st_uid, gid=info.st_gid, owner=owner, group=owner, permissions=mode,
        atime=atime, atime_ns=atime_ns, crtime=mtime, crtime_ns=mtime_ns, mtime=mtime,
        mtime_ns=mtime_ns, ctime=ctime, ctime_ns=ctime_ns, nlink=info.st_nlink,
    )


def _requested_times(attrs: SFTPAttrs) -> tuple[int, int] | None:
    """The (atime, mtime) in nanoseconds a setstat asks for, if any.

    Everything else but the size is ignored: permissions, owners and groups sent by ``put -p``,
    ``put -r``, ``scp`` or WinSCP's "preserve" options are accepted and never applied, so those
    transfers succeed quietly and no tenant changes a real mode or owner.
    """
    atime = _nanoseconds(attrs.atime, attrs.atime_ns)
    mtime = _nanoseconds(attrs.mtime, attrs.mtime_ns)
    if mtime is None:
        return None if atime is None else (atime, atime)
    return (mtime if atime is None else atime), mtime


def _nanoseconds(seconds: int | None, nanoseconds: int | None) -> int | None:
    return None if seconds is None else seconds * _NANOSECONDS + (nanoseconds or 0)
