"""An upload in progress answers at its own path, as written so far, to every session of its
tenant; it still counts only after its client's close, and an empty one is never recorded."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from tests.conftest import TEST_PASSWORD
from tests.sftpd.commands import run
from tests.sftpd.conftest import OTHER_TENANT, TENANT, RunningServer
from tests.support.clients import HOST, asyncssh_sftp, paramiko_sftp

CSV = b"call_record_id,name\n1,Sale\n2,Lead\n"
SSHFS_OPTIONS = ("password_stdin,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,"
                 "PreferredAuthentications=password,PubkeyAuthentication=no,LogLevel=ERROR")


async def test_open_stat_write_stat_close_sees_the_file_as_written(server: RunningServer) -> None:
    async with (
        asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp,
        asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as other_session,
        asyncssh_sftp(server.port, OTHER_TENANT, TEST_PASSWORD) as other_tenant,
    ):
        remote = await sftp.open("/in/calls.csv", "wb")
        assert (await sftp.stat("/in/calls.csv")).size == 0
        assert (await sftp.lstat("/in/calls.csv")).size == 0
        await remote.write(CSV)
        assert (await sftp.stat("/in/calls.csv")).size == len(CSV)
        assert (await remote.stat()).size == len(CSV)
        assert (await other_session.lstat("/in/calls.csv")).size == len(CSV)
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await other_tenant.lstat("/in/calls.csv")
        await sftp.utime("/in/calls.csv", (1_600_000_000, 1_600_000_000))
        assert not (server.inbox() / "calls.csv").exists()
        assert await server.recorded() == []
        await remote.close()
        assert (await other_session.stat("/in/calls.csv")).mtime == 1_600_000_000
    assert server.stored(server.inbox() / "calls.csv") == CSV
    [upload] = await server.recorded()
    assert (upload.size, upload.sha256) == (len(CSV), hashlib.sha256(CSV).hexdigest())


async def test_a_replacement_in_progress_answers_instead_of_the_stored_file(
    server: RunningServer,
) -> None:
    (server.inbox() / "calls.csv").write_bytes(b"old, much longer content\n" * 10)
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        async with sftp.open("/in/calls.csv", "wb") as remote:
            await remote.write(CSV[:5])
            assert (await sftp.stat("/in/calls.csv")).size == 5
        assert (await sftp.stat("/in/calls.csv")).size == 5


async def test_setstat_size_of_an_open_upload_applies_to_it(server: RunningServer) -> None:
    async with (
        asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp,
        sftp.open("/in/calls.csv", "wb") as remote,
    ):
        await remote.write(CSV)
        await remote.truncate(10)
        assert (await sftp.stat("/in/calls.csv")).size == 10
    assert server.stored(server.inbox() / "calls.csv") == CSV[:10]
    [upload] = await server.recorded()
    assert upload.sha256 == hashlib.sha256(CSV[:10]).hexdigest()


async def test_an_empty_upload_is_published_but_not_recorded(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await (await sftp.open("/in/empty.csv", "wb")).close()
        assert (await sftp.stat("/in/empty.csv")).size == 0
        await (await sftp.open("/in/other.csv.filepart", "wb")).close()
        await sftp.rename("/in/other.csv.filepart", "/in/other.csv")
    assert server.stored(server.inbox() / "empty.csv") == b""
    assert server.stored(server.inbox() / "other.csv") == b""
    assert list(server.in_flight().iterdir()) == []
    assert await server.recorded() == []
    assert await server.completed() == []


async def test_a_never_closed_upload_is_forgotten_with_its_session(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        remote = await sftp.open("/in/calls.csv", "wb")
        await remote.write(CSV)
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.stat("/in/calls.csv")
    assert await server.recorded() == []


async def test_paramiko_open_stat_write_stat_close(server: RunningServer) -> None:
    def upload() -> list[int]:
        sizes = []
        with paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            remote = sftp.open("/in/calls.csv", "wb")
            sizes.append(sftp.stat("/in/calls.csv").st_size or 0)
            remote.write(CSV)
            remote.flush()
            sizes.append(sftp.stat("/in/calls.csv").st_size or 0)
            remote.close()
        return sizes

    assert await asyncio.to_thread(upload) == [0, len(CSV)]
    assert len(await server.recorded()) == 1


@pytest.fixture
async def sshfs_mount(server: RunningServer, tmp_path: Path) -> AsyncIterator[Path]:
    """The tenant's root mounted with sshfs (FUSE); unmounted after the test."""
    sshfs, fusermount = shutil.which("sshfs"), shutil.which("fusermount")
    assert sshfs and fusermount, "sshfs is not installed (apt-get install sshfs)"
    mount = tmp_path / "mnt"
    mount.mkdir()
    process = await asyncio.create_subprocess_exec(
        sshfs, "-p", str(server.port), f"{TENANT}@{HOST}:/", str(mount), "-o", SSHFS_OPTIONS,
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(f"{TEST_PASSWORD}\n".encode()), 30)
    assert process.returncode == 0, stderr.decode()
    try:
        yield mount
    finally:
        await run([fusermount, "-u", "-z", str(mount)], tmp_path)


async def test_sshfs_cp_into_in(
    server: RunningServer, sshfs_mount: Path, tmp_path: Path
) -> None:
    """sshfs creates the file (OPEN) and looks it up (LSTAT) before writing: both must work."""
    content = os.urandom(100_000)
    local = tmp_path / "new.csv"
    local.write_bytes(content)

    copy = await run(["cp", str(local), str(sshfs_mount / "in" / "new.csv")], tmp_path)

    assert (copy.returncode, copy.stderr) == (0, "")
    listed = await asyncio.to_thread(os.listdir, sshfs_mount / "in")
    assert listed == ["new.csv"]
    await run(["fusermount", "-u", str(sshfs_mount)], tmp_path)
    assert server.stored(server.inbox() / "new.csv") == content
    [upload] = await server.recorded()
    assert (upload.path, upload.sha256) == ("in/new.csv", hashlib.sha256(content).hexdigest())
