"""Stored files are served as their plaintext: sealed ones decrypted, older plaintext ones as
they are; a sealed file that fails authentication, or that the key in place cannot open, is
refused with a message that says so, never served."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest

from core.crypto import CHUNK_SIZE, AtRest, is_encrypted
from core.crypto.sealed import HEADER_BYTES
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import TENANT, RunningServer
from tests.support.clients import OpenSSHClient, asyncssh_sftp, paramiko_sftp

# Three chunks and a bit, each line numbered, so any misplaced byte shows.
REPORT = b"".join(b"row %08d,status,ok\n" % i for i in range(3 * CHUNK_SIZE // 20 + 7))


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as raw:
        raw.seek(offset)
        byte = raw.read(1)
        raw.seek(offset)
        raw.write(bytes([byte[0] ^ 0x01]))


def ls_sizes(stdout: str) -> dict[str, int]:
    """``ls -l`` lines of ``sftp`` as {name: size}."""
    sizes = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 9 and fields[0].startswith("-"):
            sizes[fields[-1].rsplit("/", 1)[-1]] = int(fields[4])
    return sizes


async def test_a_sealed_report_is_served_as_its_plaintext(
    server: RunningServer, openssh: OpenSSHClient
) -> None:
    stored = server.reports_dir() / "report.csv"
    server.at_rest.write_bytes(stored, REPORT)
    assert is_encrypted(stored) and stored.stat().st_size > len(REPORT)

    run = await openssh.run(TENANT, TEST_PASSWORD, ["ls -l out", "get out/report.csv fetched.csv"])

    assert run.returncode == 0, run.stderr
    assert ls_sizes(run.stdout)["report.csv"] == len(REPORT)
    assert (openssh.work_dir / "fetched.csv").read_bytes() == REPORT


async def test_reget_resumes_a_sealed_file_at_its_plaintext_offset(
    server: RunningServer, openssh: OpenSSHClient
) -> None:
    server.at_rest.write_bytes(server.reports_dir() / "report.csv", REPORT)
    partial = CHUNK_SIZE + 12_345  # inside the second chunk
    (openssh.work_dir / "report.csv").write_bytes(REPORT[:partial])

    run = await openssh.run(TENANT, TEST_PASSWORD, ["reget out/report.csv report.csv"])

    assert run.returncode == 0, run.stderr
    assert (openssh.work_dir / "report.csv").read_bytes() == REPORT


async def test_stat_and_reads_at_offsets_see_the_plaintext(server: RunningServer) -> None:
    server.at_rest.write_bytes(server.reports_dir() / "report.csv", REPORT)
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        assert (await sftp.stat("/out/report.csv")).size == len(REPORT)
        [name] = [n for n in await sftp.readdir("/out") if n.filename == "report.csv"]
        assert name.attrs.size == len(REPORT)
        async with sftp.open("/out/report.csv", "rb") as remote:
            assert (await remote.stat()).size == len(REPORT)
            for offset in (2 * CHUNK_SIZE - 5, 17, len(REPORT) - 3):
                await remote.seek(offset)
                assert await remote.read(40) == REPORT[offset : offset + 40]
            await remote.seek(len(REPORT))
            assert await remote.read(10) == b""


async def test_an_older_plaintext_file_is_still_served(
    server: RunningServer, openssh: OpenSSHClient
) -> None:
    (server.inbox() / "legacy.csv").write_bytes(REPORT)
    (server.reports_dir() / "legacy-report.csv").write_bytes(b"row,status\n1,ok\n")

    run = await openssh.run(TENANT, TEST_PASSWORD, [
        "ls -l in", "get in/legacy.csv legacy.csv", "get out/legacy-report.csv report.csv",
    ])

    assert run.returncode == 0, run.stderr
    assert ls_sizes(run.stdout)["legacy.csv"] == len(REPORT)
    assert (openssh.work_dir / "legacy.csv").read_bytes() == REPORT
    assert (openssh.work_dir / "report.csv").read_bytes() == b"row,status\n1,ok\n"


@pytest.mark.parametrize("where", ["last chunk", "header's key slot"])
async def test_a_tampered_file_is_refused_on_get_with_a_clear_error(
    server: RunningServer, openssh: OpenSSHClient, where: str
) -> None:
    stored = server.reports_dir() / "report.csv"
    server.at_rest.write_bytes(stored, REPORT)
    flip_byte(stored, stored.stat().st_size - 20 if where == "last chunk" else 50)

    run = await openssh.run(TENANT, TEST_PASSWORD, ["get out/report.csv fetched.csv"])

    assert run.returncode != 0
    assert "/out/report.csv: refused: the stored file fails its integrity check" in run.stderr
    fetched = openssh.work_dir / "fetched.csv"
    assert not fetched.exists() or fetched.read_bytes() == b""


async def test_a_chunk_tampered_mid_file_stops_the_download_there(
    server: RunningServer, tmp_path: Path
) -> None:
    """Opening checks the last chunk; one in the middle fails when read, and from then on the
    handle serves nothing more, whatever offset the client asks for."""
    stored = server.reports_dir() / "report.csv"
    server.at_rest.write_bytes(stored, REPORT)
    flip_byte(stored, HEADER_BYTES + 100)  # chunk 0
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        async with sftp.open("/out/report.csv", "rb") as remote:
            with pytest.raises(asyncssh.SFTPFailure, match="fails its integrity check"):
                await remote.read(100)
            await remote.seek(2 * CHUNK_SIZE)
            with pytest.raises(asyncssh.SFTPFailure, match="fails its integrity check"):
                await remote.read(100)
        with pytest.raises(asyncssh.SFTPFailure, match="fails its integrity check"):
            await sftp.get("/out/report.csv", str(tmp_path / "fetched.csv"))


async def test_a_file_sealed_under_another_master_key_is_refused(
    server: RunningServer, tmp_path: Path
) -> None:
    other_keys = tmp_path / "other-keys"
    other_keys.mkdir(mode=0o700)
    other = AtRest.load(other_keys, server.settings.data_dir, create=True)
    other.write_bytes(server.reports_dir() / "report.csv", REPORT)

    def fetch() -> None:
        with paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            sftp.open("/out/report.csv", "rb").read()

    with pytest.raises(OSError, match="cannot decrypt this file with its current key"):
        await asyncio.to_thread(fetch)
