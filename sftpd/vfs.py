"""A tenant's chroot: virtual paths, and safe access to the files behind them.

A client path is normalised lexically (``..`` stops at the virtual root, as in an OpenSSH
chroot) and then walked one directory at a time with ``O_NOFOLLOW`` from the tenant's root, so
no symbolic link is ever followed: not a link planted in ``in/`` pointing elsewhere, not a link
swapped in while the walk runs. Every operation ends in an ``*at`` call on the directory the walk
opened, never on a path string the kernel would resolve again.

The root shows only ``in/`` and ``out/``. Uploads in progress are written to a hidden in-flight
folder, :data:`IN_FLIGHT_DIR`, beside them; it is not reachable from any client path, and it is not
inside ``in/``, so no one scanning ``in/`` ever sees a partial file.

A session keeps the root, ``in/``, ``out/`` and the in-flight folder open once it has used them,
so a request walks only the folders below those: the descriptors were opened by the same
link-refusing walk, and like an OpenSSH chroot they keep naming the folders the session started
with. They are used only on the event loop's thread; work handed to threads gets a descriptor of
its own first, so :meth:`TenantFileSystem.close` at the end of a session can never pull one from
under a running thread.

Policy (who may write where) is :mod:`sftpd.sftp`'s business; this module only makes sure an
operation lands on the file the path names, inside the root.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from asyncssh import (
    SFTPError,
    SFTPFailure,
    SFTPFileAlreadyExists,
    SFTPInvalidFilename,
    SFTPNoSpaceOnFilesystem,
    SFTPNoSuchFile,
    SFTPPermissionDenied,
)

from core.tenants import IN_DIR, TENANT_DIRS

IN_FLIGHT_DIR = ".incoming"
# The name a published upload keeps in the in-flight folder for the ingest side (see publish).
KEPT_SUFFIX = ".kept"

FILE_MODE = 0o640
DIR_MODE = 0o750
IN_FLIGHT_MODE = 0o700
# The longest file name Linux file systems accept, in bytes.
MAX_NAME_BYTES = 255

_P = ParamSpec("_P")
_R = TypeVar("_R")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# The root itself is the operator's choice and may be a link (a tenant moved to another disk).
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# The key under which the root's descriptor is kept; no folder name inside the root is empty.
_ROOT_KEY = ""
# The size a tenant sees of the regular file open at a descriptor (which it closes), by name.
Measure = Callable[[int, str], int]


@dataclass(frozen=True)
class VirtualPath:
    """A normalised path inside a tenant's root: ``()`` is the root, ``("in", "a.csv")`` a file."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, raw: bytes) -> VirtualPath:
        """Normalise a client path; relative paths are relative to the root."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SFTPInvalidFilename("file names must be UTF-8") from None
        if "\x00" in text:
            raise SFTPInvalidFilename("file names must not contain NUL")
        parts: list[str] = []
        for part in text.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(part)
        return cls(tuple(parts))

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else ""

    @property
    def parent(self) -> VirtualPath:
        return VirtualPath(self.parts[:-1])

    @property
    def is_root(self) -> bool:
        return not self.parts

    @property
    def is_root_folder(self) -> bool:
        """``/in`` or ``/out`` themselves, which a tenant may use but never change."""
        return len(self.parts) == 1

    @property
    def in_inbox(self) -> bool:
        """Strictly below ``/in``: the only place a tenant may create, change or delete."""
        return len(self.parts) >= 2 and self.parts[0] == IN_DIR

    @property
    def relative(self) -> str:
        """The path relative to the tenant's root, as the upload history records it."""
        return "/".join(self.parts)

    def child(self, name: str) -> VirtualPath:
        return VirtualPath((*self.parts, name))

    def __str__(self) -> str:
        return "/" + self.relative


def name_error(name: str) -> str | None:
    """Why ``name`` cannot be given to a new file or folder, or None if it can."""
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"{name[:40]!r}...: names are limited to {MAX_NAME_BYTES} bytes"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return f"{name!r}: names must not contain control characters"
    if "\\" in name:
        return f"{name!r}: names must not contain a backslash"
    return None


class Listing:
    """The entries of one folder, read a chunk at a time, in a worker thread.

    It holds a descriptor of its own with its own read position (a ``dup`` would share the
    position with the session's kept folder, and with every other listing of that folder), so
    the session may end, or list the same folder again, while a chunk is read. ``read`` and
    ``close`` take a lock, so the folder is never closed under a running read.
    """

    def __init__(self, fd: int, root: bool) -> None:
        self._fd = fd
        self._root = root
        self._lock = threading.Lock()
        try:
            self._scan = os.scandir(fd)
        except BaseException:
            os.close(fd)
            raise

    def read(self, limit: int, measure: Measure | None = None) -> list[tuple[str, os.stat_result, int]]:
        """Up to ``limit`` more names with their attributes and sizes (a regular file's by
        ``measure``, if given); empty at the end. Blocking."""
        entries: list[tuple[str, os.stat_result, int]] = []
        with self._lock:
            if self._fd < 0:
                return entries
            for entry in self._scan:
                if self._root and entry.name not in TENANT_DIRS:
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                size = info.st_size
                if measure is not None and stat.S_ISREG(info.st_mode):
                    with suppress(OSError):  # gone or replaced meanwhile: as stat saw it
                        size = measure(os.open(entry.name, _READ_FLAGS, dir_fd=self._fd), entry.name)
                entries.append((entry.name, info, size))
                if len(entries) >= limit:
                    break
        return entries

    def close(self) -> None:
        """Safe to call more than once; waits for a read under way."""
        with self._lock:
            if self._fd >= 0:
                self._scan.close()
                os.close(self._fd)
                self._fd = -1


class TenantFileSystem:
    """The files under one tenant's root, reached without following any link."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._kept: dict[str, int] = {}
        self._closed = False

    def close(self) -> None:
        """Close the folders kept open; later calls still work, walking from the root each time."""
        self._closed = True
        kept, self._kept = self._kept, {}
        for fd in kept.values():
            os.close(fd)

    @contextmanager
    def directory(self, path: VirtualPath) -> Iterator[int]:
        """An open descriptor of the directory ``path`` names."""
        fd, owned = self._walk(path)
        try:
            yield fd
        finally:
            if owned:
                os.close(fd)

    @contextmanager
    def parent(self, path: VirtualPath) -> Iterator[tuple[int, str]]:
        """The open parent directory of ``path`` and the name inside it (not the root)."""
        if path.is_root:
            raise SFTPPermissionDenied("/: the root folder cannot be changed")
        if path.is_root_folder and path.name not in TENANT_DIRS:
            raise SFTPNoSuchFile(f"{path}: no such file or folder")
        with self.directory(path.parent) as fd:
            yield fd, path.name

    def lstat(self, path: VirtualPath) -> os.stat_result:
        """The attributes of ``path`` itself; a link is reported as a link, never followed."""
        if path.is_root:
            with self.directory(path) as fd:
                return os.fstat(fd)
        with self.parent(path) as (fd, name):
            try:
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                raise translate(exc, path) from None

    def lookup(self, path: VirtualPath) -> os.stat_result | None:
        """Like :meth:`lstat`, but None when only the last part of ``path`` is missing."""
        with self.parent(path) as (fd, name):
            try:
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise translate(exc, path) from None

    def listing(self, path: VirtualPath) -> Listing:
        """The folder ``path``, to be read in chunks (see :class:`Listing`); the root shows
        in/ and out/ only."""
        with self.directory(path) as fd:
            own = os.open(".", _DIR_FLAGS, dir_fd=fd)
        return Listing(own, root=path.is_root)

    def open_for_reading(self, path: VirtualPath) -> int:
        """A descriptor for reading the regular file ``path``."""
        with self.parent(path) as (dir_fd, name):
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                raise translate(exc, path) from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            if stat.S_ISDIR(mode):
                raise SFTPFailure(f"{path} is a folder, not a file")
            raise SFTPPermissionDenied(f"{path} is not a regular file")
        return fd

    def open_folder(self, path: VirtualPath) -> int:
        """A descriptor of its own for the folder ``path``, for work handed to a thread."""
        with self.directory(path) as fd:
            return os.open(".", _DIR_FLAGS, dir_fd=fd)

    def mkdir(self, path: VirtualPath) -> None:
        with self.parent(path) as (fd, name):
            _call(path, os.mkdir, name, DIR_MODE, dir_fd=fd)

    def rmdir(self, path: VirtualPath) -> None:
        with self.parent(path) as (fd, name):
            _call(path, os.rmdir, name, dir_fd=fd)

    def unlink(self, path: VirtualPath) -> None:
        with self.parent(path) as (fd, name):
            if stat.S_ISDIR(_call(path, os.stat, name, dir_fd=fd, follow_symlinks=False).st_mode):
                raise SFTPFailure(f"{path} is a folder; remove it with rmdir")
            _call(path, os.unlink, name, dir_fd=fd)

    def rename(self, source: VirtualPath, target: VirtualPath, replace: bool) -> None:
        """Move ``source`` to ``target``; without ``replace`` an existing target is an error."""
        with (
            self.parent(source) as (source_fd, source_name),
            self.parent(target) as (target_fd, target_name),
        ):
            if not replace and _exists(target_name, target_fd):
                raise SFTPFileAlreadyExists(f"{target} already exists")
            try:
                os.rename(source_name, target_name, src_dir_fd=source_fd, dst_dir_fd=target_fd)
            except OSError as exc:
                raise translate(exc, source if exc.errno == errno.ENOENT else target) from None

    def set_times(self, path: VirtualPath, times_ns: tuple[int, int]) -> None:
        with self.parent(path) as (fd, name):
            _call(path, os.utime, name, ns=times_ns, dir_fd=fd, follow_symlinks=False)

    @contextmanager
    def in_flight(self, create: bool = True) -> Iterator[int]:
        """The in-flight folder of uploads in progress, created on first use."""
        fd = self._kept.get(IN_FLIGHT_DIR)
        if fd is not None:
            yield fd
            return
        with self.directory(VirtualPath(())) as root_fd:
            try:
                fd = os.open(IN_FLIGHT_DIR, _DIR_FLAGS, dir_fd=root_fd)
            except FileNotFoundError:
                if not create:
                    raise
                with suppress(FileExistsError):
                    os.mkdir(IN_FLIGHT_DIR, IN_FLIGHT_MODE, dir_fd=root_fd)
                fd = os.open(IN_FLIGHT_DIR, _DIR_FLAGS, dir_fd=root_fd)
        if self._keep(IN_FLIGHT_DIR, fd):
            yield fd
            return
        try:
            yield fd
        finally:
            os.close(fd)

    def new_in_flight_path(self) -> tuple[str, Path]:
        """A fresh name in the in-flight folder (created if need be) and its path, for a file
        the caller creates there (see :mod:`sftpd.handles`); only the server writes there."""
        name = f"{secrets.token_hex(8)}.part"
        with self.in_flight():
            pass
        return name, self.root / IN_FLIGHT_DIR / name

    def open_in_flight(self, name: str) -> int:
        """A read-only descriptor of the in-flight file ``name`` (for its attributes, its times,
        fsync and reading it back), holding the file's ``flock`` while it is open: the sign, to
        :meth:`clear_in_flight` on any node sharing the folder, that the upload is alive."""
        with self.in_flight() as fd:
            file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        try:
            fcntl.flock(file_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(file_fd)
            raise
        return file_fd

    def discard_in_flight_file(self, name: str) -> None:
        with self.in_flight() as fd, suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)

    def publish(self, in_flight_name: str, target: VirtualPath, keep: bool = False) -> Path | None:
        """Move a finished in-flight file to ``target`` in one atomic step, replacing a file there.

        With ``keep``, the bytes also keep a name in the in-flight folder (see :meth:`keep`), made
        before they appear at ``target``; returns its path, or None without ``keep``.
        """
        with self.in_flight() as in_flight_fd, self.parent(target) as (target_fd, name):
            kept = f"{in_flight_name}{KEPT_SUFFIX}" if keep else None
            if kept is not None:
                os.link(in_flight_name, kept, src_dir_fd=in_flight_fd, dst_dir_fd=in_flight_fd,
                        follow_symlinks=False)
            try:
                os.rename(in_flight_name, name, src_dir_fd=in_flight_fd, dst_dir_fd=target_fd)
            except OSError as exc:
                if kept is not None:
                    os.unlink(kept, dir_fd=in_flight_fd)
                raise translate(exc, target) from None
        return None if kept is None else self.root / IN_FLIGHT_DIR / kept

    def keep(self, path: VirtualPath) -> Path:
        """A second name for the file ``path`` in the in-flight folder, which no client path reaches.

        Whatever a client does to ``path`` afterwards (replace it, delete it, rename it), that
        name holds the bytes as they are now: the front door never writes into a file once it is
        published. Whoever takes the returned path must remove it.
        """
        kept = f"{secrets.token_hex(8)}{KEPT_SUFFIX}"
        with self.in_flight() as in_flight_fd, self.parent(path) as (dir_fd, name):
            try:
                os.link(name, kept, src_dir_fd=dir_fd, dst_dir_fd=in_flight_fd, follow_symlinks=False)
            except OSError as exc:
                raise translate(exc, path) from None
        return self.root / IN_FLIGHT_DIR / kept

    def clear_in_flight(self, kept_for_seconds: float = 0.0) -> int:
        """Delete leftovers of uploads that never finished (after a crash); returns how many.

        An in-flight file whose ``flock`` is held is an upload alive in some process (another
        node's, on a shared folder) and stays; a kept name stays while younger than
        ``kept_for_seconds`` (another node's recorder may be about to take it)."""
        removed = 0
        try:
            with self.in_flight(create=False) as fd:
                for name in os.listdir(fd):
                    if name.endswith(KEPT_SUFFIX):
                        with suppress(FileNotFoundError):
                            changed = os.stat(name, dir_fd=fd, follow_symlinks=False).st_ctime
                            if time.time() - changed >= kept_for_seconds:
                                os.unlink(name, dir_fd=fd)
                                removed += 1
                    elif _unlink_unless_locked(name, fd):
                        removed += 1
        except FileNotFoundError:
            return removed
        return removed

    def _walk(self, path: VirtualPath) -> tuple[int, bool]:
        """A descriptor of the directory ``path``, and whether the caller must close it."""
        fd, owned = self._root()
        try:
            for depth, part in enumerate(path.parts):
                if (depth == 0 and part not in TENANT_DIRS) or part in (".", ".."):
                    raise SFTPNoSuchFile(f"{path}: no such file or folder")
                kept = self._kept.get(part) if depth == 0 else None
                if kept is not None:
                    if owned:
                        os.close(fd)
                    fd, owned = kept, False
                    continue
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    here = VirtualPath(path.parts[: depth + 1])
                    if exc.errno == errno.ENOTDIR and _is_link(part, fd):
                        exc = OSError(errno.ELOOP, "symbolic link")
                    raise translate(exc, here) from None
                if owned:
                    os.close(fd)
                fd = next_fd
                owned = not (depth == 0 and self._keep(part, fd))
        except BaseException:
            if owned:
                os.close(fd)
            raise
        return fd, owned

    def _root(self) -> tuple[int, bool]:
        fd = self._kept.get(_ROOT_KEY)
        if fd is not None:
            return fd, False
        fd = os.open(self.root, _ROOT_FLAGS)
        return fd, not self._keep(_ROOT_KEY, fd)

    def _keep(self, key: str, fd: int) -> bool:
        """Keep ``fd`` open for the rest of the session, unless the session is over."""
        if self._closed:
            return False
        self._kept[key] = fd
        return True


def folder_extent(fd: int) -> tuple[int, int]:
    """How many levels of folders the open folder ``fd`` holds below it, and how many bytes its
    longest path below it adds (``/a/b.csv`` adds 9); closes ``fd``. Blocking: run it in a thread.

    Links are not followed; a folder that vanishes during the walk is skipped.
    """
    deepest = longest = 0
    try:
        for top, folders, files, _ in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
            relative = os.fsencode(top)[1:]  # "./a/b" -> "/a/b"; "." -> ""
            if folders:
                deepest = max(deepest, relative.count(b"/") + 1)
            for name in (*folders, *files):
                longest = max(longest, len(relative) + 1 + len(os.fsencode(name)))
    finally:
        os.close(fd)
    return deepest, longest


def translate(exc: OSError, path: VirtualPath) -> SFTPError | OSError:
    """An SFTP status that names the virtual path, never the real one."""
    code = exc.errno
    if code == errno.ENOENT:
        return SFTPNoSuchFile(f"{path}: no such file or folder")
    if code == errno.ELOOP:
        return SFTPPermissionDenied(f"{path} is a symbolic link; links are not followed")
    if code == errno.ENOTDIR:
        return SFTPNoSuchFile(f"{path}: a part of this path is not a folder")
    if code == errno.EEXIST:
        return SFTPFileAlreadyExists(f"{path} already exists")
    if code == errno.ENOTEMPTY:
        return SFTPFailure(f"{path}: the folder is not empty")
    if code == errno.EISDIR:
        return SFTPFailure(f"{path} is a folder")
    if code in (errno.EACCES, errno.EPERM):
        return SFTPPermissionDenied(f"{path}: permission denied")
    if code == errno.EINVAL:
        return SFTPFailure(f"{path}: invalid operation (a folder cannot move into itself)")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return SFTPNoSpaceOnFilesystem("the server is out of space; try again later")
    if code == errno.ENAMETOOLONG:
        return SFTPInvalidFilename(f"{path}: name too long")
    return exc


def _call(path: VirtualPath, func: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Run an ``*at`` call, turning its OSError into a status that names ``path``."""
    try:
        return func(*args, **kwargs)
    except OSError as exc:
        raise translate(exc, path) from None


def _unlink_unless_locked(name: str, dir_fd: int) -> bool:
    """Unlink ``name`` unless a process holds its ``flock``; whether it was unlinked."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError:  # not a file we made (a link, a fifo): ours to remove all the same
        fd = -1
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
            return True
        return False
    finally:
        if fd >= 0:
            os.close(fd)


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
