"""A full disk never publishes a broken upload: real clients, a real ENOSPC.

The tenant's folder is a tiny tmpfs of its own, so the server's writes hit a genuinely full file
system without filling the machine's disk. Mounting needs root; anyone else runs this module
again inside a user and mount namespace of their own (``unshare -Urm``), where they are root.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncssh
import pytest

from core.crypto import CHUNK_SIZE
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import TENANT, RunningServer
from tests.support.clients import OpenSSHClient, asyncssh_sftp, paramiko_sftp

DISK_BYTES = 256 * 1024
CHUNK = b"row,with,some,bytes\n" * 3277  # 65,540 bytes
SMALL = b"a,b\n1,2\n"
REPO = Path(__file__).resolve().parents[2]


def as_root_in_a_namespace_of_our_own(test: str) -> None:
    """Run ``test`` of this module as root in a new user and mount namespace; it must pass."""
    unshare = shutil.which("unshare")
    assert unshare, "this test needs root, or util-linux's unshare for a user namespace"
    run = subprocess.run(
        [unshare, "-Urm", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{__file__}::{test}"],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


@pytest.fixture
def as_root(request: pytest.FixtureRequest) -> bool:
    """True if this process may mount; otherwise the test has just run, and passed, as root in
    a namespace of its own, and the caller returns."""
    if os.geteuid() == 0:
        return True
    as_root_in_a_namespace_of_our_own(request.node.name)
    return False


@contextmanager
def full_disk(server: RunningServer) -> Iterator[Path]:
    """The tenant's root on a 256 KiB tmpfs, with its in/ and out/ made again on it."""
    root = server.tenants.folders(TENANT).root
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0750", "tmpfs", str(root)],
        check=True, capture_output=True,
    )
    try:
        server.tenants.folders(TENANT).create()
        yield root
    finally:
        # Lazy: sessions the server has not closed yet may still hold the folders open.
        subprocess.run(["umount", "-l", str(root)], check=True)


def nothing_published(server: RunningServer, names: list[str]) -> None:
    for name in names:
        assert not (server.inbox() / name).exists(), name
    assert not any(server.in_flight().iterdir()), "the partial file is deleted at once"


async def test_a_write_that_fails_for_lack_of_space_fails_the_upload(
    as_root: bool, server: RunningServer
) -> None:
    if not as_root:
        return
    with full_disk(server):
        await fail_a_write(server)
    assert [upload.path for upload in await server.recorded()] == ["in/small.csv"]
    assert [event.upload.path for event in await server.completed()] == ["in/small.csv"]


async def fail_a_write(server: RunningServer) -> None:
    written = 0
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        upload = await sftp.open("/in/big.csv", "wb")
        with pytest.raises(asyncssh.SFTPError) as failed:
            for _ in range(DISK_BYTES // len(CHUNK) + 2):
                await upload.write(CHUNK, written)
                written += len(CHUNK)
        # Sealing holds the last chunk in memory until it is full: ENOSPC comes within one.
        assert 0 < written < DISK_BYTES + CHUNK_SIZE
        assert "out of space" in failed.value.reason
        with pytest.raises(asyncssh.SFTPError, match="out of space"):
            await upload.write(CHUNK[:10], written)  # later writes fail too...
        with pytest.raises(asyncssh.SFTPError, match="upload was discarded"):
            await upload.close()  # ...and so does the close that used to publish it
        nothing_published(server, ["big.csv"])

        async with sftp.open("/in/small.csv", "wb") as small:  # the space came back
            await small.write(SMALL)
    assert server.stored(server.inbox() / "small.csv") == SMALL


async def test_clients_that_close_after_a_failed_write_publish_nothing(
    as_root: bool, server: RunningServer, tmp_path: Path
) -> None:
    """OpenSSH's ``put`` and paramiko's ``put`` against a full disk: an error, and no file."""
    if not as_root:
        return
    with full_disk(server):
        await put_too_much(server, tmp_path)
    assert await server.recorded() == []
    assert await server.completed() == []


async def put_too_much(server: RunningServer, tmp_path: Path) -> None:
    work_dir = tmp_path / "client"
    work_dir.mkdir()
    (work_dir / "big.csv").write_bytes(CHUNK * 8)  # 512 KiB, twice the disk
    openssh = OpenSSHClient(work_dir, server.port)
    run = await openssh.run(TENANT, TEST_PASSWORD, ["put big.csv in/big.csv"])
    assert run.returncode != 0, run.stdout
    nothing_published(server, ["big.csv"])

    def put_with_paramiko() -> None:
        with paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            sftp.put(str(work_dir / "big.csv"), "/in/other.csv")

    with pytest.raises(OSError):
        await asyncio.to_thread(put_with_paramiko)
    nothing_published(server, ["big.csv", "other.csv"])


async def test_resuming_onto_a_full_disk_keeps_the_earlier_file(
    as_root: bool, server: RunningServer
) -> None:
    """Appending copies the existing file first (see IncomingFile.seed); if that copy runs out
    of space, the open fails and the file already there stays as it was."""
    if not as_root:
        return
    first = CHUNK * 2  # 128 KiB of 256: a copy of it cannot fit beside it with the rest
    with full_disk(server):
        async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            async with sftp.open("/in/data.csv", "wb") as upload:
                await upload.write(first)
            filler = await sftp.open("/in/filler.csv", "wb")
            await filler.write(CHUNK[: len(CHUNK) // 2])
            await filler.close()
            with pytest.raises(asyncssh.SFTPError, match="out of space"):
                await sftp.open("/in/data.csv", "ab")
        assert server.stored(server.inbox() / "data.csv") == first
        await server.server.settled()  # kept copies go once their records are written
        assert not any(server.in_flight().iterdir())
    assert [upload.path for upload in await server.recorded()] == ["in/data.csv", "in/filler.csv"]
