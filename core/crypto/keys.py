"""The master key: one 256-bit AES key in ``keys/master.key`` that wraps every file's data key.

Created on first use (mode 0600 in a 0700 directory, as the host keys are) and then the same on
every start: a lost or replaced master key makes every encrypted file unreadable, so a key file
others can read, a malformed one, or a missing one when it must exist is refused with a message
naming the file, never silently regenerated. The key never reaches a log; only its id does.

The id (8 bytes of a SHA-256 over the key) is written in each file's header, so a reader knows
which key sealed a file: a wrong key in place is told apart from a tampered file, and during a
rotation (:mod:`core.crypto.rotation`) both the new key (``master.key``) and the one being
retired (``master-retiring.key``) are loaded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UsageError
from core.logs import get_logger

log = get_logger(__name__)

KEY_BYTES = 32
KEY_ID_BYTES = 8
KEY_FILE_MODE = 0o600
KEYS_DIR_MODE = 0o700
MASTER_KEY_FILE = "master.key"
RETIRING_KEY_FILE = "master-retiring.key"
# The first word of a key file says what it is, for an operator who finds it in a backup.
_KEY_FILE_TAG = "sftp-inbox-master-key-v1"
_KEY_ID_CONTEXT = b"sftp-inbox master key id v1\x00"


class MasterKeyError(UsageError):
    """The master key is missing, unreadable, too open, or not the one a file was sealed with.

    The message names the key file and what to do; the daemon refuses to start on it.
    """


@dataclass(frozen=True)
class MasterKey:
    """A master key and the file it was read from (for messages); ``secret`` is never logged."""

    secret: bytes = field(repr=False)
    path: Path

    @property
    def key_id(self) -> bytes:
        return key_id_of(self.secret)


def key_id_of(secret: bytes) -> bytes:
    """The id a file header names its master key by; reveals nothing useful about the key."""
    return hashlib.sha256(_KEY_ID_CONTEXT + secret).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True)
class Keyring:
    """The keys a reader may unwrap with: the current one, and the one a rotation is retiring."""

    current: MasterKey
    retiring: MasterKey | None = None

    @property
    def keys(self) -> tuple[MasterKey, ...]:
        return (self.current,) if self.retiring is None else (self.current, self.retiring)

    def by_id(self, key_id: bytes) -> MasterKey | None:
        return next((key for key in self.keys if key.key_id == key_id), None)


def load_keyring(keys_dir: Path, *, create: bool = False, data_dir: Path | None = None) -> Keyring:
    """The keys in ``keys_dir``; with ``create``, a first master key is made if there is none.

    The caller decides ``create``: on a first start, yes; once files were encrypted, a missing
    key means a lost one, and making a new one would hide that. With ``data_dir``, a keys dir
    inside it is refused: a key kept beside the files it protects protects nothing.
    """
    if data_dir is not None:
        check_outside(keys_dir, data_dir)
    path = keys_dir / MASTER_KEY_FILE
    current = create_key_file(path) if create and not path.exists() else read_key_file(path)
    retiring_path = keys_dir / RETIRING_KEY_FILE
    retiring = read_key_file(retiring_path) if retiring_path.exists() else None
    return Keyring(current, retiring)


def check_outside(keys_dir: Path, data_dir: Path) -> None:
    """Refuse a keys dir that is, or is inside, the data dir (links resolved)."""
    keys, data = keys_dir.resolve(), data_dir.resolve()
    if keys == data or data in keys.parents:
        raise MasterKeyError(
            f"keys dir {keys_dir} is inside the data dir {data_dir}: the master key must be kept"
            " apart from the files it encrypts; set [server] keys_dir elsewhere"
        )


def read_key_file(path: Path) -> MasterKey:
    """The key in ``path``; a missing, malformed or group/other-accessible file is refused."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise MasterKeyError(
            f"master key {path} is missing: restore it from your backup (files encrypted with it"
            " cannot be read without it)"
        ) from None
    except OSError as exc:
        raise MasterKeyError(f"master key {path} cannot be read: {exc.strerror}") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise MasterKeyError(
            f"master key {path} is accessible by other users (mode {mode:04o}); run: chmod 600 {path}"
        )
    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise MasterKeyError(f"master key {path} cannot be read: {exc}") from None
    return MasterKey(_parse(text, path), path)


def create_key_file(path: Path) -> MasterKey:
    """A new random key written to ``path`` (0600, fsynced); if another process made one first,
    theirs. The directory is made 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=KEYS_DIR_MODE)
    os.chmod(path.parent, KEYS_DIR_MODE)
    key = MasterKey(secrets.token_bytes(KEY_BYTES), path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    write_key_file(temporary, key.secret)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return read_key_file(path)
    finally:
        temporary.unlink()
    sync_dir(path.parent)
    log.info("masterkey.created", path=str(path), key_id=key.key_id.hex())
    return key


def write_key_file(path: Path, secret: bytes) -> None:
    """Write a new key file (never over an existing one), mode 0600, fsynced."""
    encoded = base64.b64encode(secret).decode("ascii")
    data = f"{_KEY_FILE_TAG} {encoded}\n".encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse(text: str, path: Path) -> bytes:
    parts = text.split()
    if len(parts) != 2 or parts[0] != _KEY_FILE_TAG:
        raise MasterKeyError(f"master key {path} is not a master key file (expected '{_KEY_FILE_TAG} <base64>')")
    try:
        secret = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"master key {path} is damaged (its key is not base64)") from None
    if len(secret) != KEY_BYTES:
        raise MasterKeyError(f"master key {path} is damaged ({len(secret)} bytes, expected {KEY_BYTES})")
    return secret
