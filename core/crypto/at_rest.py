"""The one door between stored files and the master key: every upload, snapshot and report
written or read at rest goes through an :class:`AtRest`.

New files are always sealed (:class:`core.crypto.sealed.EncryptedWriter`). Reading takes either
kind: a file that does not start with the format's magic is a plaintext file from a data dir
older than encryption at rest, and is read as it is until it is rewritten (no migration pass
on start). A sealed file that fails authentication raises ``TamperedFile``, never plaintext.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from core.crypto.keys import Keyring, MasterKeyError, load_keyring
from core.crypto.sealed import HEADER_BYTES, MAGIC, EncryptedReader, EncryptedWriter, Header, layout


class AtRest:
    """Seals what is written and opens what is read, with the keys of ``keys_dir``.

    The keyring is loaded once and again by :meth:`reload` (after ``sftpctl keys rotate``, a
    process still holding the old key would keep sealing with it: a ``MasterKeyError`` while
    reading is the sign to reload).
    """

    def __init__(self, keys_dir: Path, keyring: Keyring) -> None:
        self.keys_dir = keys_dir
        self.keyring = keyring

    @classmethod
    def load(cls, keys_dir: Path, data_dir: Path, *, create: bool) -> AtRest:
        """The keys of ``keys_dir`` (refused inside ``data_dir``); ``create`` makes a first
        master key when there is none."""
        return cls(keys_dir, load_keyring(keys_dir, create=create, data_dir=data_dir))

    def reload(self) -> None:
        self.keyring = load_keyring(self.keys_dir)

    def create(self, path: Path, *, durable: bool = False) -> EncryptedWriter:
        """A writer sealing a new file at ``path`` (refused if it exists) with the current key."""
        return EncryptedWriter.create(path, self.keyring.current, durable=durable)

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

    def write_bytes(self, path: Path, data: bytes, *, durable: bool = False) -> None:
        """Seal ``data`` as a new file at ``path``, published whole: written beside it under a
        temporary name, then renamed over it."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.sealing")
        try:
            with self.create(temporary, durable=durable) as writer:
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
        if not head.startswith(MAGIC):
            return stored
        header = Header.parse(head, name)
        return layout(stored - HEADER_BYTES, header.chunk_size, name)[1]
