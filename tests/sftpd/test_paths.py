"""Paths the OS (or the processor, or an operator's shell) would refuse are refused at upload:
folder depth below in/, name length and whole-path length, with a real client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest

from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import TENANT, RunningServer, ServerFactory
from tests.support.clients import OpenSSHClient, asyncssh_sftp, paramiko_sftp

CSV = b"a,b\n1,2\n"


async def put(sftp: asyncssh.SFTPClient, path: str, data: bytes = CSV) -> None:
    async with sftp.open(path, "wb") as remote:
        await remote.write(data)


def levels(count: int) -> str:
    return "/in" + "".join(f"/l{number}" for number in range(1, count + 1))


async def test_folders_nest_at_most_eight_levels_below_in(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        for depth in range(1, 9):
            await sftp.mkdir(levels(depth))
        await put(sftp, f"{levels(8)}/deepest.csv")
        with pytest.raises(asyncssh.SFTPPermissionDenied) as refused:
            await sftp.mkdir(levels(9))
        assert "nested at most 8 deep below in/" in refused.value.reason
    assert server.stored(server.inbox() / levels(8)[4:] / "deepest.csv") == CSV
    assert not (server.inbox() / levels(9)[4:]).exists()
    assert [upload.path for upload in await server.recorded()] == [f"{levels(8)[1:]}/deepest.csv"]


async def test_long_names_and_paths_are_refused_for_folders_files_and_renames(
    make_server: ServerFactory,
) -> None:
    server = await make_server(server__max_name_bytes=20, server__max_path_bytes=40)
    long_name = "n" * 17 + ".csv"  # 21 bytes
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="limited to 20 bytes"):
            await put(sftp, f"/in/{long_name}")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="limited to 20 bytes"):
            await sftp.mkdir("/in/" + "d" * 21)
        await sftp.mkdir("/in/" + "d" * 20)  # /in/ + 20 = 24 bytes
        deep = "/in/" + "d" * 20 + "/" + "e" * 15  # 40 bytes: the limit itself
        await sftp.mkdir(deep)
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="limited to 40 bytes"):
            await put(sftp, f"{deep}/x.csv")
        await put(sftp, "/in/x.csv")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="limited to 40 bytes"):
            await sftp.rename("/in/x.csv", f"{deep}/x.csv")
        assert await sftp.listdir(deep) == []

    def with_paramiko() -> str:
        with paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            with pytest.raises(PermissionError) as refused:
                sftp.mkdir(f"{deep}/f")
            return str(refused.value)

    assert "limited to 40 bytes" in await asyncio.to_thread(with_paramiko)


async def test_moving_a_folder_counts_the_folders_and_paths_inside_it(
    make_server: ServerFactory,
) -> None:
    server = await make_server(server__max_folder_depth=3, server__max_path_bytes=50)
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        for path in ("/in/a", "/in/a/b", "/in/x", "/in/x/y"):
            await sftp.mkdir(path)
        await put(sftp, "/in/x/y/" + "f" * 30 + ".csv")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="at most 3 deep") as refused:
            await sftp.rename("/in/x", "/in/a/b/x")  # y would sit 4 levels below in/
        assert "would make 4" in refused.value.reason
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="limited to 50 bytes"):
            await sftp.rename("/in/x", "/in/a/" + "x" * 10)  # the file's path: 53 bytes
        await sftp.rename("/in/x", "/in/a/x")  # 3 levels, 44 bytes: fine
        assert await sftp.listdir("/in/a/x/y") == ["f" * 30 + ".csv"]
    assert (server.inbox() / "a" / "x" / "y").is_dir()


async def test_openssh_users_see_why_an_upload_was_refused(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = await make_server(server__max_folder_depth=1)
    work_dir = tmp_path / "client"
    work_dir.mkdir()
    (work_dir / "data.csv").write_bytes(CSV)
    (server.inbox() / "a" / "b").mkdir(parents=True)  # arrived another way, deeper than allowed
    openssh = OpenSSHClient(work_dir, server.port)
    run = await openssh.run(TENANT, TEST_PASSWORD, ["put data.csv in/a/b/data.csv"])
    assert run.returncode != 0
    assert "folders may be nested at most 1 deep below in/" in run.stderr
    assert not (server.inbox() / "a" / "b" / "data.csv").exists()
    assert await server.recorded() == []
