"""The one door between stored files and the master key: every upload, snapshot, report and
spooled mail written or read at rest goes through an :class:`AtRest`.

New files are always sealed (:class:`core.crypto.sealed.EncryptedWriter`). Reading takes either
kind: a file that does not start with the format's magic is a plaintext file from a data dir
older than encryption at rest, and is read as it is until it is rewritten (no migration pass
on start). A sealed file that fails authentication raises ``TamperedFile``, never plaintext.

Whether a first master key may be made is decided by a marker in the data dir
(:data:`MARKER_FILE`, written once the key exists): without it no file can have been sealed yet,
so a key is made; with it, a missing ``master.key`` is a lost key and everything refuses to start,
naming the file. One ``stat``, never a walk of the data dir.

A rotation (``sftpctl keys rotate``) may run while a process holds an :class:`AtRest`: before
sealing a new file it looks whether ``master.key`` was replaced (one ``stat``) and reloads, and a
read that finds a key it does not hold reloads too; so nothing keeps sealing with a retired key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from core.clock import now_iso
from core.crypto.keys import MASTER_KEY_FILE, Keyring, MasterKeyError, load_keyring
from core.crypto.sealed import HEADER_BYTES, MAGIC, EncryptedReader, EncryptedWriter, sealed_size

#: In the data dir: files here were (or may have been) sealed; ``master.key`` must exist.
MARKER_FILE = "encrypted-at-rest"
#: In the data dir, beside the marker: a few bytes sealed with the master key, opened at every
#: start, so a key that is not this data dir's is refused before anything is read or written. A
#: rotation rewraps it with every other sealed file.
KEY_CHECK_FILE = "encrypted-at-rest.check"
_KEY_CHECK_TEXT = b"sftp-inbox: this data dir's master key\n"
READ_CHUNK_BYTES = 1024 * 1024


class AtRest:
    """Seals what is written and opens what is read, with the keys of ``keys_dir``.

    The keyring is loaded at construction and again by :meth:`reload`, which :meth:`create` and
    :meth:`open` call on their own after a rotation (see the module docstring). Picklable: a
    sandboxed child that must read a sealed snapshot gets one (the key never reaches a log).
    """

    def __init__(self, keys_dir: Path, keyring: Keyring) -> None:
        self.keys_dir = keys_dir
        self.keyring = keyring
        self._stamp = self._key_stamp()

    @classmethod
    def load(cls, keys_dir: Path, data_dir: Path, *, create: bool) -> AtRest:
        """The keys of ``keys_dir`` (refused inside ``data_dir``); ``create`` makes a first
        master key when there is none."""
        return cls(keys_dir, load_keyring(keys_dir, create=create, data_dir=data_dir))

    @classmethod
    def for_data_dir(cls, keys_dir: Path, data_dir: Path) -> AtRest:
        """The keys of ``data_dir``'s files: a first master key is made only while the data dir
        has no :data:`MARKER_FILE`; the marker is written once the key exists (so a crash between
        the two leaves a key and no marker, which the next start completes)."""
        marker = data_dir / MARKER_FILE
        if marker.exists():
            try:
                at_rest = cls.load(keys_dir, data_dir, create=False)
            except MasterKeyError as exc:
                key = keys_dir / MASTER_KEY_FILE
                if key.exists():
                    raise
                raise MasterKeyError(
                    f"master key {key} is missing, but {marker} says files in {data_dir} were encrypted"
                    f" with it: restore {key} from your backup (without it they cannot be read); do not"
                    " delete the marker to get a new key, the files would stay unreadable"
                ) from exc
            at_rest.check_key(data_dir)
            return at_rest
        at_rest = cls.load(keys_dir, data_dir, create=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        temporary = marker.with_name(f".{marker.name}.{os.getpid()}")
        temporary.write_text(
            f"Files in this folder are encrypted at rest (first master key made {now_iso()}).\n"
            f"They can be read only with the master key in {keys_dir / MASTER_KEY_FILE}: back it up.\n",
            "utf-8",
        )
        os.replace(temporary, marker)
        at_rest.check_key(data_dir)
        return at_rest

    def check_key(self, data_dir: Path) -> None:
        """Refuse a master key that is not the one ``data_dir``'s files were sealed with (a
        :data:`KEY_CHECK_FILE` it cannot open); a data dir without the check gets one."""
        check = data_dir / KEY_CHECK_FILE
        try:
            with EncryptedReader.open(check, self.keyring) as sealed:
                if sealed.read() == _KEY_CHECK_TEXT:
                    return
        except FileNotFoundError:
            self.write_bytes(check, _KEY_CHECK_TEXT, mode=0o600)
            return
        except MasterKeyError:
            pass
        key = self.keys_dir / MASTER_KEY_FILE
        raise MasterKeyError(
            f"master key {key} is not the key the files in {data_dir} were sealed with ({check} does"
            f" not open with it): put this data dir's own {key} back from your backup"
        )

    def reload(self) -> None:
        self.keyring = load_keyring(self.keys_dir)
        self._stamp = self._key_stamp()

    def create(self, path: Path, *, durable: bool = False, mode: int | None = None) -> EncryptedWriter:
        """A writer sealing a new file at ``path`` (refused if it exists; ``mode``, if given, is
        its permissions from the start) with the current key, reloaded first if a rotation
        replaced it."""
        if self._key_stamp() != self._stamp:
            self.reload()
        if mode is None:
            return EncryptedWriter.create(path, self.keyring.current, durable=durable)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)  # whatever the umask
            raw = open(fd, "wb")  # noqa: SIM115 - the writer owns it
        except BaseException:
            os.close(fd)
            raise
        return EncryptedWriter(raw, self.keyring.current, durable=durable)

    def open(self, path: Path) -> BinaryIO:
        """``path``'s plaintext, seekable: decrypted as read, or as stored if it is an older
        plaintext file."""
        return self.open_fd(os.open(path, os.O_RDONLY | os.O_CLOEXEC), str(path))

    def open_fd(self, fd: int, name: str) -> BinaryIO:
        """:meth:`open` for a file already open as ``fd`` (which the result owns and closes);
        ``name`` is for messages."""
        raw = open(fd, "rb")  # noqa: SIM115 - handed to the caller
        if raw.read(len(MAGIC)) != MAGIC:
            raw.seek(0)
            return raw
        spare = os.dup(fd)  # the reader closes what it was given when it refuses
        try:
            try:
                return EncryptedReader(raw, self.keyring, name=name)  # type: ignore[return-value]
            except MasterKeyError:
                self.reload()  # a rotation may have run since the keys were loaded
                again, spare = open(spare, "rb"), -1  # noqa: SIM115 - the reader owns it
                return EncryptedReader(again, self.keyring, name=name)  # type: ignore[return-value]
        finally:
            if spare >= 0:
                os.close(spare)

    def read_bytes(self, path: Path) -> bytes:
        with self.open(path) as source:
            return source.read()

    def digest(self, path: Path) -> tuple[int, str]:
        """The plaintext's size and sha256 (what the front door recorded for an upload)."""
        return self.digest_fd(os.open(path, os.O_RDONLY | os.O_CLOEXEC), str(path))

    def digest_fd(self, fd: int, name: str) -> tuple[int, str]:
        """:meth:`digest` of a file already open as ``fd`` (closed here)."""
        digest = hashlib.sha256()
        size = 0
        with self.open_fd(fd, name) as source:
            while chunk := source.read(READ_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()

    def write_bytes(self, path: Path, data: bytes, *, durable: bool = False, mode: int | None = None) -> None:
        """Seal ``data`` as a new file at ``path``, published whole: written beside it under a
        temporary name (given ``mode``, if any), then renamed over it."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.sealing")
        temporary.unlink(missing_ok=True)  # left by a crash of this very pid number
        try:
            with self.create(temporary, durable=durable, mode=mode) as writer:
                writer.write(data)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    @staticmethod
    def size(path: Path) -> int:
        """The plaintext size of ``path`` (what ``ls -l`` shows a tenant), without a key."""
        with open(path, "rb") as raw:
            return AtRest.file_size(raw, str(path))

    @staticmethod
    def file_size(raw: BinaryIO, name: str) -> int:
        """Like :meth:`size`, for a file the caller opened (read from its start)."""
        head = raw.read(HEADER_BYTES)
        stored = os.fstat(raw.fileno()).st_size
        return sealed_size(head, stored, name) if head.startswith(MAGIC) else stored

    def _key_stamp(self) -> tuple[int, int] | None:
        """What tells a replaced ``master.key`` (a rotation renames a new one in)."""
        try:
            info = (self.keys_dir / MASTER_KEY_FILE).stat()
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns
