"""The SSH host keys' fingerprints as OpenSSH clients print them (``SHA256:`` and base64), so an
operator can read them to a customer who is asked to confirm one on first connection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncssh


@dataclass(frozen=True)
class HostKeyFingerprint:
    algorithm: str
    fingerprint: str


def fingerprints(keys_dir: Path) -> list[HostKeyFingerprint]:
    """Of the public key files ``sftpd/hostkeys.py`` writes beside the private keys."""
    found = []
    for path in sorted(keys_dir.glob("ssh_host_*_key.pub")):
        try:
            key = asyncssh.read_public_key(path)
        except (OSError, asyncssh.KeyImportError):
            continue
        found.append(HostKeyFingerprint(key.get_algorithm(), key.get_fingerprint("sha256")))
    return found
