"""Uploads are sealed as they arrive and read back, listed and downloaded as their plaintext;
writes out of order are put in order, rewrites and cuts write the upload again, and a gap no
write filled fails the upload at its close."""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets

import asyncssh
import pytest

from core.crypto import CHUNK_SIZE
from core.crypto.sealed import MAGIC
from sftpd.ordering import MAX_HELD_RUNS
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import TENANT, RunningServer
from tests.sftpd.test_stored import ls_sizes
from tests.support.clients import OpenSSHClient, asyncssh_sftp, paramiko_sftp


def marked_csv(marker: str, rows: int) -> bytes:
    return b"call_record_id,name\n" + b"".join(b"%d,%s\n" % (i, marker.encode()) for i in range(rows))


async def test_an_upload_is_stored_sealed_and_served_as_its_plaintext(
    server: RunningServer, openssh: OpenSSHClient
) -> None:
    marker = f"MARKER-{secrets.token_hex(8)}"
    content = marked_csv(marker, 8000)  # several chunks
    assert len(content) > 3 * CHUNK_SIZE
    (openssh.work_dir / "calls.csv").write_bytes(content)
    (openssh.work_dir / "partial.csv").write_bytes(content[: CHUNK_SIZE + 1000])

    run = await openssh.run(TENANT, TEST_PASSWORD, [
        "put calls.csv in/", "ls -l in", "get in/calls.csv back.csv", "reget in/calls.csv partial.csv",
    ])

    assert run.returncode == 0, run.stderr
    stored = (server.inbox() / "calls.csv").read_bytes()
    assert stored.startswith(MAGIC)
    assert marker.encode() not in stored and b"call_record_id" not in stored
    assert ls_sizes(run.stdout)["calls.csv"] == len(content)
    assert (openssh.work_dir / "back.csv").read_bytes() == content
    assert (openssh.work_dir / "partial.csv").read_bytes() == content
    [upload] = await server.recorded()
    assert (upload.size, upload.sha256) == (len(content), hashlib.sha256(content).hexdigest())


async def test_reput_resumes_a_sealed_upload(server: RunningServer, openssh: OpenSSHClient) -> None:
    content = marked_csv("resumed", 12_000)
    (openssh.work_dir / "calls.csv").write_bytes(content)
    async with (
        asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp,
        sftp.open("/in/calls.csv", "wb") as remote,
    ):
        await remote.write(content[:70_000])

    run = await openssh.run(TENANT, TEST_PASSWORD, ["reput calls.csv in/calls.csv"])

    assert run.returncode == 0, run.stderr
    assert (server.inbox() / "calls.csv").read_bytes().startswith(MAGIC)
    assert server.stored(server.inbox() / "calls.csv") == content
    _, second = await server.recorded()
    assert second.sha256 == hashlib.sha256(content).hexdigest()


async def test_writes_out_of_order_are_put_in_order(server: RunningServer) -> None:
    """A pipelining client's writes may arrive in any order within its window."""
    content = marked_csv("shuffled", 30_000)
    pieces = [(offset, content[offset : offset + 32_768]) for offset in range(0, len(content), 32_768)]
    random.Random(7).shuffle(pieces)
    async with (
        asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp,
        sftp.open("/in/calls.csv", "wb") as remote,
    ):
        await asyncio.gather(*(remote.write(data, offset) for offset, data in pieces[:40]))
        for offset, data in pieces[40:]:
            await remote.write(data, offset)
        assert (await remote.stat()).size == len(content)
    assert server.stored(server.inbox() / "calls.csv") == content
    [upload] = await server.recorded()
    assert upload.sha256 == hashlib.sha256(content).hexdigest()


async def test_writes_from_last_to_first_with_paramiko(server: RunningServer) -> None:
    content = marked_csv("backwards", 3000)
    size = 8192

    def upload() -> None:
        with paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp, sftp.open("/in/calls.csv", "wb") as remote:
            for offset in reversed(range(0, len(content), size)):
                remote.seek(offset)
                remote.write(content[offset : offset + size])

    await asyncio.to_thread(upload)
    assert server.stored(server.inbox() / "calls.csv") == content


async def test_a_gap_never_filled_fails_the_upload_at_close(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        remote = await sftp.open("/in/calls.csv", "wb")
        await remote.write(b"a,b\n1,2\n")
        await remote.write(b"3,4\n", 100)
        with pytest.raises(asyncssh.SFTPFailure, match=r"bytes 8 to 99 were never written"):
            await remote.close()
        assert not (server.inbox() / "calls.csv").exists()
    assert list(server.in_flight().iterdir()) == []
    assert await server.recorded() == []


async def test_writes_too_far_out_of_order_are_refused(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        remote = await sftp.open("/in/calls.csv", "wb")
        with pytest.raises(asyncssh.SFTPFailure, match="out of order"):
            for run in range(MAX_HELD_RUNS + 1):
                await remote.write(b"x", 10 + 2 * run)
        with pytest.raises(asyncssh.SFTPFailure, match="out of order"):
            await remote.close()
    assert list(server.in_flight().iterdir()) == []


async def test_rewrites_read_back_and_cuts_of_an_open_upload(server: RunningServer) -> None:
    """What a client may do to its own open file still works, though the writer only appends."""
    content = bytearray(marked_csv("edited", 9000))
    async with (
        asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp,
        sftp.open("/in/calls.csv", "wb") as remote,
    ):
        await remote.write(bytes(content))
        await remote.write(b"REWRITTEN", CHUNK_SIZE - 4)  # over two sealed chunks
        content[CHUNK_SIZE - 4 : CHUNK_SIZE + 5] = b"REWRITTEN"
        await remote.seek(CHUNK_SIZE - 10)
        assert await remote.read(20) == bytes(content[CHUNK_SIZE - 10 : CHUNK_SIZE + 10])
        await remote.write(b"more\n", len(content))  # a write after reading back
        content += b"more\n"
        await remote.truncate(100_000)
        del content[100_000:]
        await remote.truncate(100_010)
        content += bytes(10)
        assert (await sftp.stat("/in/calls.csv")).size == len(content)
    assert server.stored(server.inbox() / "calls.csv") == bytes(content)
    [upload] = await server.recorded()
    assert (upload.size, upload.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    assert list(server.in_flight().iterdir()) == []
