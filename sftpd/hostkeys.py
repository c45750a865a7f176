"""Host keys: generated once on first start, then the same keys on every start.

Clients pin the host key on first contact, so a key that changed across a restart would look
like an attack to every customer. Keys are written with mode 0600 in a 0700 directory, the way
OpenSSH wants them, and a key file readable by others is refused rather than used.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from core.logs import get_logger

log = get_logger(__name__)

KEY_FILE_MODE = 0o600
PUBLIC_KEY_FILE_MODE = 0o644
KEYS_DIR_MODE = 0o700

RSA_KEY_BITS = 3072
# RSA host keys sign with SHA-2 only; "ssh-rsa" (SHA-1 signatures) is never offered.
RSA_HOST_KEY_ALGORITHMS = (b"rsa-sha2-512", b"rsa-sha2-256")


class HostKeyError(RuntimeError):
    """A host key file exists but cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class _KeySpec:
    filename: str
    algorithm: str
    key_size: int | None = None


_KEY_SPECS = (
    _KeySpec("ssh_host_ed25519_key", "ssh-ed25519"),
    _KeySpec("ssh_host_rsa_key", "ssh-rsa", RSA_KEY_BITS),
)


def load_or_create_host_keys(keys_dir: Path) -> list[asyncssh.SSHKey]:
    """The Ed25519 and RSA host keys in ``keys_dir``, generating any that do not exist yet."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=KEYS_DIR_MODE)
    os.chmod(keys_dir, KEYS_DIR_MODE)
    return [_load_or_create(keys_dir / spec.filename, spec) for spec in _KEY_SPECS]


def host_key_pairs(keys: list[asyncssh.SSHKey]) -> list[asyncssh.SSHKeyPair]:
    """The keys as asyncssh serves them, with RSA limited to SHA-2 signatures."""
    pairs = list(asyncssh.load_keypairs(keys))
    for pair in pairs:
        if pair.algorithm == b"ssh-rsa":
            pair.host_key_algorithms = RSA_HOST_KEY_ALGORITHMS
            pair.sig_algorithms = RSA_HOST_KEY_ALGORITHMS
    return pairs


def _load_or_create(path: Path, spec: _KeySpec) -> asyncssh.SSHKey:
    try:
        info = path.stat()
    except FileNotFoundError:
        return _create(path, spec)
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise HostKeyError(
            f"host key {path} is accessible by other users (mode {stat.S_IMODE(info.st_mode):04o});"
            f" run: chmod 600 {path}"
        )
    try:
        key = asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise HostKeyError(f"host key {path} cannot be read: {exc}") from None
    if key.get_algorithm() != spec.algorithm:
        raise HostKeyError(f"host key {path} is {key.get_algorithm()}, expected {spec.algorithm}")
    return key


def _create(path: Path, spec: _KeySpec) -> asyncssh.SSHKey:
    """Generate a key and publish it atomically; if another process won the race, use theirs."""
    options = {"key_size": spec.key_size} if spec.key_size else {}
    key = asyncssh.generate_private_key(
        spec.algorithm, comment=f"sftpd {spec.algorithm}", **options
    )
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    _write_new(temporary, key.export_private_key("openssh"), KEY_FILE_MODE)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return _load_or_create(path, spec)
    finally:
        temporary.unlink()
    public = path.with_name(path.name + ".pub")
    public.unlink(missing_ok=True)
    _write_new(public, key.export_public_key("openssh"), PUBLIC_KEY_FILE_MODE)
    log.info(
        "hostkey.created",
        path=str(path),
        algorithm=spec.algorithm,
        fingerprint=key.get_fingerprint(),
    )
    return key


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
