"""The encrypted file format: a header, then AES-256-GCM chunks, each authenticated on its own.

A file is never one big buffer: it is written and read a chunk (64 KiB of plaintext) at a time,
and a reader can start at any chunk, so SFTP ``get``/``reget`` at an offset decrypts only the
chunks it serves. Layout (all integers big-endian)::

    offset  size  field
         0     8  magic b"\\x89SIENC\\r\\n"
         8     1  format version (1)
         9     3  reserved, zero
        12     4  plaintext bytes per chunk (chunk size)
        16     8  nonce prefix, random per file
        --- the 24 bytes above are the "fixed header": in every chunk's and the key's AD ---
        24     8  master key id (core.crypto.keys.key_id_of)
        32    12  nonce of the key wrap, random
        44    48  the file's data key (32 bytes) sealed with AES-256-GCM under the master key
        92        chunks: ciphertext (chunk size bytes, fewer in the last) + 16-byte tag

Each file has its own random 256-bit data key. Chunk ``i`` is sealed with nonce
``prefix || i`` (u32) and associated data ``fixed header || i (u64) || final (u8)``; the last
chunk, and only it, has final = 1 (an empty file is one empty final chunk; a file of exactly
n chunks ends with a full final chunk). So a chunk moved, repeated, cut off at the end or taken
from another file fails authentication, and so does any change to the fixed header. The key wrap
has the fixed header as AD too; the key id is checked after the unwrap, so a wrong key in place
(:class:`~core.crypto.keys.MasterKeyError`) is told from a tampered header (:class:`TamperedFile`).

Only bytes 24-92 (the key slot) ever change after a file is written: a master key rotation
rewrites them in place with one 68-byte write inside the first disk sector (:func:`rewrap`),
leaving the data untouched.
"""

from __future__ import annotations

import io
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.crypto.keys import KEY_BYTES, Keyring, MasterKey, MasterKeyError
from core.errors import SftpInboxError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

MAGIC = b"\x89SIENC\r\n"
FORMAT_VERSION = 1
CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
TAG_BYTES = 16
NONCE_PREFIX_BYTES = 8
WRAP_NONCE_BYTES = 12
_FIXED = struct.Struct("!8sB3xI8s")
_SLOT = struct.Struct(f"!8s{WRAP_NONCE_BYTES}s{KEY_BYTES + TAG_BYTES}s")
FIXED_HEADER_BYTES = _FIXED.size
SLOT_OFFSET = FIXED_HEADER_BYTES
HEADER_BYTES = FIXED_HEADER_BYTES + _SLOT.size
MAX_CHUNKS = 2**32
_CHUNK_AD = struct.Struct("!QB")
_WRAP_AD = b"sftp-inbox data key v1\x00"


class TamperedFile(SftpInboxError):
    """An encrypted file failed authentication (changed, cut, extended or damaged): refused,
    never served or processed. The message names the file and the part that failed."""


@dataclass(frozen=True)
class Header:
    """A parsed header; :meth:`parse` checks its form, the unwrap checks its authenticity."""

    fixed: bytes
    chunk_size: int
    nonce_prefix: bytes
    key_id: bytes
    wrap_nonce: bytes
    wrapped_key: bytes

    @classmethod
    def parse(cls, raw: bytes, name: str) -> Header:
        if len(raw) < HEADER_BYTES:
            raise TamperedFile(f"{name}: not an encrypted file, or its header is cut ({len(raw)} bytes)")
        if raw[: len(MAGIC)] != MAGIC:
            raise TamperedFile(f"{name}: not an encrypted file (its header's magic is wrong)")
        version = raw[len(MAGIC)]
        if version != FORMAT_VERSION:
            raise TamperedFile(f"{name}: unknown format version {version} (tampered, or from a newer release)")
        if raw[len(MAGIC) + 1 : len(MAGIC) + 4] != b"\0\0\0":
            raise TamperedFile(f"{name}: the header's reserved bytes are not zero")
        fixed = raw[:FIXED_HEADER_BYTES]
        _, _, chunk_size, nonce_prefix = _FIXED.unpack(fixed)
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise TamperedFile(f"{name}: the header's chunk size {chunk_size} is out of range")
        key_id, wrap_nonce, wrapped_key = _SLOT.unpack(raw[SLOT_OFFSET:HEADER_BYTES])
        return cls(fixed, chunk_size, nonce_prefix, key_id, wrap_nonce, wrapped_key)

    def unwrap(self, keyring: Keyring, name: str) -> bytes:
        """The file's data key. Tries the key the header names first, then the others, so that
        a changed key id reads as tampering and an absent key as the wrong master key."""
        named = keyring.by_id(self.key_id)
        candidates = [named] if named else []
        candidates += [key for key in keyring.keys if key is not named]
        for key in candidates:
            try:
                data_key = AESGCM(key.secret).decrypt(self.wrap_nonce, self.wrapped_key, _WRAP_AD + self.fixed)
            except InvalidTag:
                continue
            if key is not named:
                raise TamperedFile(f"{name}: the header's master key id was changed")
            return data_key
        if named is not None:
            raise TamperedFile(f"{name}: the header fails authentication (its data key or fixed fields were changed)")
        raise MasterKeyError(
            f"{name} was sealed with master key id {self.key_id.hex()}, but {keyring.current.path} is key id"
            f" {keyring.current.key_id.hex()}: the master key in place is not the one this file needs;"
            f" restore the right {keyring.current.path.name}"
        )


def seal_slot(fixed: bytes, data_key: bytes, key: MasterKey) -> bytes:
    """The key slot (bytes 24-92) for ``data_key`` wrapped by ``key``, with a fresh nonce."""
    nonce = secrets.token_bytes(WRAP_NONCE_BYTES)
    wrapped = AESGCM(key.secret).encrypt(nonce, data_key, _WRAP_AD + fixed)
    return _SLOT.pack(key.key_id, nonce, wrapped)


def layout(body_bytes: int, chunk_size: int, name: str) -> tuple[int, int]:
    """(chunk count, plaintext size) of a body of ``body_bytes`` sealed chunks; no decryption."""
    sealed = chunk_size + TAG_BYTES
    full, rest = divmod(body_bytes, sealed)
    if rest == 0 and full > 0:
        return full, full * chunk_size
    if rest >= TAG_BYTES:
        return full + 1, full * chunk_size + rest - TAG_BYTES
    raise TamperedFile(f"{name}: cut inside a chunk ({body_bytes} bytes after the header)")


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


def _chunk_ad(fixed: bytes, index: int, final: bool) -> bytes:
    return fixed + _CHUNK_AD.pack(index, final)


def plaintext_size(path: Path) -> int:
    """The plaintext size of the encrypted file at ``path`` from its header and length, without
    a key or any decryption (what stat and ``ls -l`` show). Not proof the file is intact."""
    with open(path, "rb") as raw:
        return sealed_size(raw.read(HEADER_BYTES), os.fstat(raw.fileno()).st_size, str(path))


def sealed_size(head: bytes, stored: int, name: str) -> int:
    """The plaintext size of an encrypted file from its first :data:`HEADER_BYTES` and its
    length on disk, ``stored``; ``name`` is for messages."""
    header = Header.parse(head, name)
    return layout(stored - HEADER_BYTES, header.chunk_size, name)[1]


def is_encrypted(path: Path) -> bool:
    """Whether ``path`` starts like a file of this format (a plaintext file from before
    encryption was on does not)."""
    with open(path, "rb") as raw:
        return raw.read(len(MAGIC)) == MAGIC


class EncryptedWriter:
    """Writes plaintext as an encrypted file, a chunk at a time; holds at most one chunk.

    The header goes out at once; :meth:`close` seals the last chunk. A writer left without
    :meth:`close` (or whose ``with`` block raised) leaves a file with no final chunk, which
    every reader refuses: discard it. Owns ``raw`` and closes it.
    """

    def __init__(self, raw: BinaryIO, key: MasterKey, *, chunk_size: int = CHUNK_SIZE, durable: bool = False) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {chunk_size} is out of range 1..{MAX_CHUNK_SIZE}")
        self._raw = raw
        self._chunk_size = chunk_size
        self._durable = durable
        self._prefix = secrets.token_bytes(NONCE_PREFIX_BYTES)
        self._fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, chunk_size, self._prefix)
        data_key = secrets.token_bytes(KEY_BYTES)
        self._aead = AESGCM(data_key)
        self._buffer = bytearray()
        self._index = 0
        self._written = 0
        self._closed = False
        raw.write(self._fixed + seal_slot(self._fixed, data_key, key))

    @classmethod
    def create(cls, path: Path, key: MasterKey, *, chunk_size: int = CHUNK_SIZE, durable: bool = False) -> Self:
        """A writer of a new file at ``path`` (refused if it exists)."""
        return cls(open(path, "xb"), key, chunk_size=chunk_size, durable=durable)

    @property
    def plaintext_written(self) -> int:
        return self._written

    def write(self, data: ReadableBuffer) -> int:
        """Take ``data``; every full chunk but the last goes out sealed. Returns its length."""
        if self._closed:
            raise ValueError("write to a closed EncryptedWriter")
        view = memoryview(data).cast("B")
        taken = 0
        while taken < len(view):
            if len(self._buffer) == self._chunk_size:
                self._seal(final=False)
            room = self._chunk_size - len(self._buffer)
            self._buffer += view[taken : taken + room]
            taken += min(room, len(view) - taken)
        self._written += taken
        return taken

    def close(self) -> None:
        """Seal the last chunk (empty for an empty file) and close the file."""
        if self._closed:
            return
        try:
            self._seal(final=True)
            self._raw.flush()
            if self._durable:
                os.fsync(self._raw.fileno())
        finally:
            self._closed = True
            self._raw.close()

    def discard(self) -> None:
        """Close without sealing: what was written stays unreadable (the caller removes it)."""
        self._closed = True
        self._buffer.clear()
        self._raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()

    def _seal(self, *, final: bool) -> None:
        if self._index >= MAX_CHUNKS:
            raise ValueError(f"a file of more than {MAX_CHUNKS} chunks cannot be sealed")
        sealed = self._aead.encrypt(
            _nonce(self._prefix, self._index), bytes(self._buffer), _chunk_ad(self._fixed, self._index, final)
        )
        self._raw.write(sealed)
        self._buffer.clear()
        self._index += 1


class EncryptedReader(io.RawIOBase):
    """Reads an encrypted file as its plaintext, with ``read``, ``seek`` and ``tell``.

    Opening checks the header and the last chunk (so a file cut short or extended by whole
    chunks is refused before a byte is served); each other chunk is checked when first read.
    One decrypted chunk is kept, so sequential reads decrypt each chunk once. Owns ``raw``.
    """

    def __init__(self, raw: BinaryIO, keyring: Keyring, *, name: str = "") -> None:
        super().__init__()
        self._raw = raw
        self._name = name or str(getattr(raw, "name", "<encrypted file>"))
        try:
            header, data_key = self._read_header(keyring)
            size = os.fstat(raw.fileno()).st_size
            self._chunk_size = header.chunk_size
            self._prefix = header.nonce_prefix
            self._fixed = header.fixed
            self._chunks, self._size = layout(size - HEADER_BYTES, header.chunk_size, self._name)
            if self._chunks > MAX_CHUNKS:
                raise TamperedFile(f"{self._name}: more chunks than the format allows")
            self._aead = AESGCM(data_key)
            self._cached: tuple[int, bytes] | None = None
            self._position = 0
            self._chunk(self._chunks - 1)
        except BaseException:
            raw.close()
            raise

    @classmethod
    def open(cls, path: Path, keyring: Keyring) -> Self:
        return cls(open(path, "rb"), keyring, name=str(path))

    def plaintext_size(self) -> int:
        """The plaintext's size, from the header and the file's length (checked at opening)."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Move to a plaintext offset; past the end is allowed (reads there give b"")."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence}")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` plaintext bytes from the position (all the rest if negative)."""
        if self.closed:
            raise ValueError("read from a closed EncryptedReader")
        remaining = max(0, self._size - self._position)
        wanted = remaining if size is None or size < 0 else min(size, remaining)
        parts: list[bytes] = []
        while wanted > 0:
            index, start = divmod(self._position, self._chunk_size)
            piece = self._chunk(index)[start : start + wanted]
            parts.append(piece)
            self._position += len(piece)
            wanted -= len(piece)
        return b"".join(parts)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()

    def _read_header(self, keyring: Keyring) -> tuple[Header, bytes]:
        """The header and data key. A header that fails is read once more: a rotation's slot
        write seen half done by this read is the one change a header may honestly undergo."""
        first = self._pread(0, HEADER_BYTES)
        try:
            header = Header.parse(first, self._name)
            return header, header.unwrap(keyring, self._name)
        except TamperedFile:
            again = self._pread(0, HEADER_BYTES)
            if again == first:
                raise
        header = Header.parse(again, self._name)
        return header, header.unwrap(keyring, self._name)

    def _pread(self, offset: int, count: int) -> bytes:
        self._raw.seek(offset)
        return self._raw.read(count)

    def _chunk(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        final = index == self._chunks - 1
        sealed_size = self._chunk_size + TAG_BYTES
        expected = (self._size - index * self._chunk_size + TAG_BYTES) if final else sealed_size
        sealed = self._pread(HEADER_BYTES + index * sealed_size, expected)
        if len(sealed) != expected:
            raise TamperedFile(f"{self._name}: cut while being read (chunk {index})")
        try:
            plain = self._aead.decrypt(_nonce(self._prefix, index), sealed, _chunk_ad(self._fixed, index, final))
        except InvalidTag:
            raise TamperedFile(
                f"{self._name}: chunk {index} of {self._chunks} fails authentication"
                " (changed, moved, cut or from another file)"
            ) from None
        self._cached = (index, plain)
        return plain


def rewrap(path: Path, keyring: Keyring, new: MasterKey) -> bool:
    """Wrap the data key of the file at ``path`` with ``new``: one in-place write of the 68-byte
    key slot, fsynced; the chunks are not touched. False if ``new`` already wraps it.

    The slot lies in the file's first 512 bytes, a sector a disk writes whole, so a crash leaves
    either the old slot or the new one, and the old key is kept until every file has the new.
    """
    with open(path, "r+b") as raw:
        header = Header.parse(raw.read(HEADER_BYTES), str(path))
        if header.key_id == new.key_id:
            header.unwrap(Keyring(new), str(path))
            return False
        data_key = header.unwrap(keyring, str(path))
        os.pwrite(raw.fileno(), seal_slot(header.fixed, data_key, new), SLOT_OFFSET)
        os.fsync(raw.fileno())
    return True
