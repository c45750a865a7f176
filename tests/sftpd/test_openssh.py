"""The OpenSSH ``sftp`` binary in batch mode: the client most customers' scripts use."""

from __future__ import annotations

import hashlib
import os
import stat

from sftpd.vfs import DIR_MODE, FILE_MODE
from tests.conftest import TEST_PASSWORD
from tests.sftpd.commands import remote, scp
from tests.sftpd.conftest import TENANT, RunningServer
from tests.support.clients import OpenSSHClient

CSV = b"call_record_id,name\n1,Sale\n2,Lead\n"


async def test_put_ls_and_get_from_out(server: RunningServer, openssh: OpenSSHClient) -> None:
    (openssh.work_dir / "calls.csv").write_bytes(CSV)
    (server.reports_dir() / "report.csv").write_bytes(b"row,status\n1,ok\n")

    run = await openssh.run(
        TENANT,
        TEST_PASSWORD,
        [
            "put calls.csv in/",
            "ls -l in",
            "get out/report.csv fetched.csv",
            "ls out",
        ],
    )

    assert run.returncode == 0, run.stderr
    assert server.stored(server.inbox() / "calls.csv") == CSV
    assert "calls.csv" in run.stdout and "report.csv" in run.stdout
    assert (openssh.work_dir / "fetched.csv").read_bytes() == b"row,status\n1,ok\n"
    [upload] = await server.recorded()
    assert (upload.path, upload.size) == ("in/calls.csv", len(CSV))
    assert upload.sha256 == hashlib.sha256(CSV).hexdigest()


async def test_put_recursive_creates_sub_folders(
    server: RunningServer, openssh: OpenSSHClient
) -> None:
    batch = openssh.work_dir / "batch-2024"
    (batch / "east").mkdir(parents=True)
    (batch / "signals.csv").write_bytes(CSV)
    (batch / "east" / "leads.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")

    run = await openssh.run(TENANT, TEST_PASSWORD, ["put -r batch-2024 in/"])

    assert run.returncode == 0, run.stderr
    assert server.stored(server.inbox() / "batch-2024" / "signals.csv") == CSV
    assert (server.inbox() / "batch-2024" / "east" / "leads.xlsx").is_file()
    assert sorted(upload.path for upload in await server.recorded()) == [
        "in/batch-2024/east/leads.xlsx",
        "in/batch-2024/signals.csv",
    ]


async def test_rejected_put_shows_the_reason(server: RunningServer, openssh: OpenSSHClient) -> None:
    (openssh.work_dir / "notes.txt").write_bytes(b"hello\n")

    run = await openssh.run(TENANT, TEST_PASSWORD, ["put notes.txt in/"])

    assert run.returncode != 0
    assert "file type .txt is not accepted; use CSV, XLS, XLSX" in run.stderr
    assert not (server.inbox() / "notes.txt").exists()
    assert await server.recorded() == []


async def test_oversize_put_shows_the_limit(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(server__max_upload_bytes=64 * 1024)
    openssh = OpenSSHClient(tmp_path, server.port)
    (tmp_path / "big.csv").write_bytes(b"x" * (200 * 1024))

    run = await openssh.run(TENANT, TEST_PASSWORD, ["put big.csv in/"])

    assert run.returncode != 0
    assert "larger than the limit of 65536 bytes" in run.stderr
    assert list(server.inbox().iterdir()) == []
    assert list(server.in_flight().iterdir()) == []
    assert await server.recorded() == []


async def test_writes_outside_in_are_refused(server: RunningServer, openssh: OpenSSHClient) -> None:
    (openssh.work_dir / "calls.csv").write_bytes(CSV)

    for command in ("put calls.csv /calls.csv", "put calls.csv out/", "mkdir out/x", "mkdir /x"):
        run = await openssh.run(TENANT, TEST_PASSWORD, [command])
        assert run.returncode != 0, command
        assert "Permission denied" in run.stderr, command

    assert sorted(path.name for path in server.tenants.folders(TENANT).root.iterdir()) == [
        "in",
        "out",
    ]
    assert list(server.reports_dir().iterdir()) == []


async def test_put_preserving_times(server: RunningServer, openssh: OpenSSHClient) -> None:
    local = openssh.work_dir / "calls.csv"
    local.write_bytes(CSV)
    os.utime(local, (1_600_000_000, 1_600_000_000))

    run = await openssh.run(TENANT, TEST_PASSWORD, ["put -p calls.csv in/"])

    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert (server.inbox() / "calls.csv").stat().st_mtime == 1_600_000_000
    assert len(await server.recorded()) == 1


async def test_put_recursive_and_preserving_are_silent_and_change_no_mode(
    server: RunningServer, openssh: OpenSSHClient
) -> None:
    """``put -r`` and ``put -p`` send the local permissions (setstat and fsetstat): accepted,
    ignored, so nothing is printed, and the real modes stay the server's."""
    batch = openssh.work_dir / "batch-2024"
    (batch / "east").mkdir(parents=True)
    (batch / "signals.csv").write_bytes(CSV)
    (batch / "east" / "leads.csv").write_bytes(CSV)
    (batch / "signals.csv").chmod(0o777)
    batch.chmod(0o777)
    local = openssh.work_dir / "calls.csv"
    local.write_bytes(CSV)
    local.chmod(0o666)
    os.utime(local, (1_600_000_000, 1_600_000_000))

    run = await openssh.run(TENANT, TEST_PASSWORD,
                            ["put -r batch-2024 in/", "put -p calls.csv in/", "put -rp batch-2024 in/"])

    assert (run.returncode, run.stderr) == (0, "")
    assert (server.inbox() / "calls.csv").stat().st_mtime == 1_600_000_000
    modes = {path.relative_to(server.inbox()).as_posix(): stat.S_IMODE(path.stat().st_mode)
             for path in server.inbox().rglob("*")}
    assert modes == {"calls.csv": FILE_MODE, "batch-2024": DIR_MODE, "batch-2024/east": DIR_MODE,
                     "batch-2024/signals.csv": FILE_MODE, "batch-2024/east/leads.csv": FILE_MODE}


async def test_scp_uploads_and_downloads_exit_zero_and_quietly(
    server: RunningServer, openssh: OpenSSHClient
) -> None:
    local = openssh.work_dir / "calls.csv"
    local.write_bytes(CSV)
    os.utime(local, (1_600_000_000, 1_600_000_000))
    (server.reports_dir() / "report.csv").write_bytes(b"row,status\n1,ok\n")

    upload = await scp(openssh, TEST_PASSWORD, "calls.csv", f"{remote(TENANT)}/in/")
    preserved = await scp(openssh, TEST_PASSWORD, "-p", "calls.csv", f"{remote(TENANT)}/in/kept.csv")
    download = await scp(openssh, TEST_PASSWORD, f"{remote(TENANT)}/out/report.csv", "report.csv")

    for run in (upload, preserved, download):
        assert (run.returncode, run.stderr) == (0, "")
    assert server.stored(server.inbox() / "calls.csv") == CSV
    assert (server.inbox() / "kept.csv").stat().st_mtime == 1_600_000_000
    assert stat.S_IMODE((server.inbox() / "kept.csv").stat().st_mode) == FILE_MODE
    assert (openssh.work_dir / "report.csv").read_bytes() == b"row,status\n1,ok\n"
    assert sorted(upload.path for upload in await server.recorded()) == ["in/calls.csv",
                                                                         "in/kept.csv"]


async def test_sftp_session_ends_with_exit_status_zero(
    server: RunningServer, openssh: OpenSSHClient
) -> None:
    run = await openssh.run(TENANT, TEST_PASSWORD, ["ls in"], extra=["-v"])

    assert run.returncode == 0, run.stderr
    assert "Exit status 0" in run.stderr


async def test_scp_refused_upload_exits_non_zero_with_the_reason(
    server: RunningServer, openssh: OpenSSHClient
) -> None:
    (openssh.work_dir / "notes.txt").write_bytes(b"hello\n")

    run = await scp(openssh, TEST_PASSWORD, "notes.txt", f"{remote(TENANT)}/in/")

    assert run.returncode != 0
    assert "file type .txt is not accepted; use CSV, XLS, XLSX" in run.stderr
    assert list(server.inbox().iterdir()) == []
