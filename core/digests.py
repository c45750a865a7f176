"""The size and sha256 of a file's bytes: the fingerprint that uploads, snapshots and runs compare.

The front door computes it while the bytes arrive; these read it back from the disk, where the
front door must re-read a file (a rename completed its upload) and where ingest checks a snapshot.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["fd_digest", "file_digest"]


def fd_digest(fd: int) -> tuple[int, str]:
    """The size and sha256 of what ``fd`` reads from where it stands to its end; closes ``fd``."""
    with open(fd, "rb", closefd=True) as reader:
        start = reader.tell()
        digest = hashlib.file_digest(reader, "sha256")
        return reader.tell() - start, digest.hexdigest()


def file_digest(path: Path) -> tuple[int, str]:
    """The size and sha256 of the file at ``path``."""
    return fd_digest(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
