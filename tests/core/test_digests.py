"""The file fingerprint: size and sha256, from a path or from where an open descriptor stands."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from core.digests import fd_digest, file_digest


def test_file_digest(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(data)
    assert file_digest(path) == (len(data), hashlib.sha256(data).hexdigest())


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.touch()
    assert file_digest(path) == (0, hashlib.sha256(b"").hexdigest())


def test_fd_digest_reads_from_where_the_descriptor_stands_and_closes_it(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"header|body")
    fd = os.open(path, os.O_RDONLY)
    os.lseek(fd, len(b"header|"), os.SEEK_SET)
    assert fd_digest(fd) == (4, hashlib.sha256(b"body").hexdigest())
    with pytest.raises(OSError):
        os.fstat(fd)
