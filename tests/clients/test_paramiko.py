"""paramiko driven the way WinSCP uploads: to ``NAME.filepart``, renamed to ``NAME`` when
complete, then the local times set on the final name. Only ``NAME`` counts as an upload.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko
import pytest

from tests.clients.checks import assert_same_bytes, assert_uploaded_once
from tests.clients.conftest import HOST, SIZES, TENANT, ServerThread
from tests.conftest import TEST_PASSWORD

MTIME = 1_600_000_000


@contextmanager
def session(server: ServerThread, known_hosts: Path) -> Iterator[paramiko.SFTPClient]:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        HOST, server.port, TENANT, TEST_PASSWORD, timeout=30, allow_agent=False, look_for_keys=False
    )
    try:
        with client.open_sftp() as sftp:
            sftp.get_channel().settimeout(30)
            yield sftp
    finally:
        client.close()


@pytest.mark.parametrize("label", SIZES)
def test_filepart_rename_then_times(
    label: str, server: ServerThread, known_hosts: Path, payloads: dict[str, Path], tmp_path: Path
) -> None:
    remote = f"in/paramiko-{label}.csv"

    with session(server, known_hosts) as sftp:
        sftp.put(str(payloads[label]), f"/{remote}.filepart", confirm=True)
        sftp.rename(f"/{remote}.filepart", f"/{remote}")
        sftp.utime(f"/{remote}", (MTIME, MTIME))

    assert_uploaded_once(server, remote, payloads[label])
    assert server.recorded(f"{remote}.filepart") == []
    assert not (server.inbox.parent / f"{remote}.filepart").exists()
    assert os.stat(server.inbox.parent / remote).st_mtime == MTIME

    with session(server, known_hosts) as sftp:
        sftp.get(f"/{remote}", str(tmp_path / "back.csv"))
        assert sftp.stat(f"/{remote}").st_mtime == MTIME
    assert_same_bytes(tmp_path / "back.csv", payloads[label])
