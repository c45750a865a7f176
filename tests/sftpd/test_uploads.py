"""Upload rules at upload time, and what a completed upload produces: a record and an event."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

import asyncssh
import pytest

from core.config import Settings
from core.crypto import AtRest
from core.db import Database
from core.tenants import TenantStore
from core.uploads import UploadStore
from sftpd.defender import Defender
from sftpd.events import UploadCompleted
from sftpd.server import SftpServer
from sftpd.vfs import IN_FLIGHT_DIR
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import TENANT, RunningServer, ServerFactory
from tests.support.clients import asyncssh_sftp, paramiko_sftp

LIMIT = 64 * 1024


async def put(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
    async with sftp.open(path, "wb") as remote:
        await remote.write(data)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_completed_upload_is_recorded_and_announced(server: RunningServer) -> None:
    data = os.urandom(300 * 1024)
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await sftp.mkdir("/in/2024")
        async with sftp.open("/in/2024/calls.csv", "wb") as remote:
            for start in range(0, len(data), 32 * 1024):
                await remote.write(data[start : start + 32 * 1024])

    [upload] = await server.recorded()
    assert (upload.tenant, upload.path, upload.size) == (TENANT, "in/2024/calls.csv", len(data))
    assert (upload.sha256, upload.source, upload.state) == (sha256(data), "sftp", "received")
    [event] = await server.completed()
    assert event.upload == upload
    assert event.local_path == server.inbox() / "2024" / "calls.csv"
    assert server.stored(event.local_path) == data


@pytest.mark.parametrize("name", ["calls.csv", "CALLS.CSV", "Leads.Xlsx", "old-format_2.xls"])
async def test_accepted_names(server: RunningServer, name: str) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, f"/in/{name}", b"1,2\n")
    assert [upload.path for upload in await server.recorded()] == [f"in/{name}"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("notes.txt", "file type .txt is not accepted; use CSV, XLS, XLSX"),
        ("calls.backup.csv", "no '.' except before the extension"),
        ("calls", "file type must be CSV, XLS, XLSX"),
        (".csv", "file type must be CSV, XLS, XLSX"),
    ],
)
async def test_refused_names_say_why(server: RunningServer, name: str, reason: str) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="upload refused") as refused:
            await put(sftp, f"/in/{name}", b"1,2\n")
    assert reason in refused.value.reason
    assert list(server.inbox().iterdir()) == [] and await server.recorded() == []


async def test_size_limit_is_enforced_while_writing(make_server: ServerFactory) -> None:
    server = await make_server(server__max_upload_bytes=LIMIT)
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, "/in/exact.csv", b"x" * LIMIT)
        remote = await sftp.open("/in/big.csv", "wb")
        await remote.write(b"x" * (LIMIT - 10))
        with pytest.raises(asyncssh.SFTPFailure, match="larger than the limit of 65536 bytes"):
            await remote.write(b"x" * 11, offset=LIMIT - 10)
        # The first upload's kept copy goes once its record is written, in the background.
        await server.server.settled()
        assert list(server.in_flight().iterdir()) == []
        with pytest.raises(asyncssh.SFTPFailure, match="larger than the limit"):
            await remote.write(b"x", offset=0)
        with pytest.raises(asyncssh.SFTPFailure, match="larger than the limit"):
            await remote.close()
        await put(sftp, "/in/after.csv", b"1,2\n")

    assert sorted(path.name for path in server.inbox().iterdir()) == ["after.csv", "exact.csv"]
    assert [upload.path for upload in await server.recorded()] == ["in/exact.csv", "in/after.csv"]


async def test_temporary_name_counts_once_renamed(server: RunningServer) -> None:
    """WinSCP's way: upload NAME.filepart, then rename it; the rules apply to the final name."""
    data = b"call_record_id,name\n1,Sale\n"
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, "/in/calls.csv.filepart", data)
        assert await sftp.listdir("/in") == ["calls.csv.filepart"]
        assert await server.recorded() == []
        await sftp.rename("/in/calls.csv.filepart", "/in/calls.csv")

    [upload] = await server.recorded()
    assert (upload.path, upload.size, upload.sha256) == ("in/calls.csv", len(data), sha256(data))
    assert [event.upload for event in await server.completed()] == [upload]
    assert sorted(path.name for path in server.inbox().iterdir()) == ["calls.csv"]


async def test_temporary_name_renamed_to_a_refused_name(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, "/in/notes.txt.filepart", b"hello\n")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match=r"file type .txt is not accepted"):
            await sftp.rename("/in/notes.txt.filepart", "/in/notes.txt")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match=r"no '.' except"):
            await sftp.posix_rename("/in/notes.txt.filepart", "/in/notes.v2.csv")
    assert [path.name for path in server.inbox().iterdir()] == ["notes.txt.filepart"]
    assert await server.recorded() == []


async def test_temporary_file_replaces_an_earlier_upload(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, "/in/calls.csv", b"old\n")
        await put(sftp, "/in/calls.csv.part", b"new\n")
        with pytest.raises(asyncssh.SFTPFailure, match="already exists"):
            await sftp.rename("/in/calls.csv.part", "/in/calls.csv")
        await sftp.posix_rename("/in/calls.csv.part", "/in/calls.csv")

    assert server.stored(server.inbox() / "calls.csv") == b"new\n"
    assert [upload.sha256 for upload in await server.recorded()] == [sha256(b"old\n"), sha256(b"new\n")]


async def kept_bytes_server(
    settings: Settings, tenants: TenantStore, uploads: UploadStore, state_db: Database,
    seen: list[bytes],
) -> SftpServer:
    """A server whose listener reads each upload's kept name during its call."""
    tenants.add(TENANT, "ops@acme.example", TEST_PASSWORD)

    at_rest = AtRest.load(settings.server.keys_dir, settings.data_dir, create=True)

    def listener(event: UploadCompleted) -> None:
        assert event.kept is not None
        seen.append(at_rest.read_bytes(event.kept))

    server = SftpServer(settings, tenants, uploads, Defender(state_db, settings.defender), listener,
                        at_rest=at_rest)
    await server.start()
    return server


async def test_the_listener_gets_the_uploaded_bytes_under_a_kept_name(
    settings: Settings, tenants: TenantStore, uploads: UploadStore, state_db: Database
) -> None:
    seen: list[bytes] = []
    server = await kept_bytes_server(settings, tenants, uploads, state_db, seen)
    try:
        async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            await put(sftp, "/in/calls.csv", b"first\n")
            # Replaced at once: the first upload's kept name still holds the first bytes.
            await put(sftp, "/in/calls.csv", b"second\n")
            await put(sftp, "/in/day.csv.filepart", b"third\n")
            await sftp.rename("/in/day.csv.filepart", "/in/day.csv")
        await server.settled()
    finally:
        await server.close()
    assert seen == [b"first\n", b"second\n", b"third\n"]
    # Names the listener did not move away are deleted after its call.
    in_flight = tenants.folders(TENANT).root / IN_FLIGHT_DIR
    assert list(in_flight.iterdir()) == []


async def test_the_listener_is_called_off_the_event_loop_in_upload_order(
    settings: Settings, tenants: TenantStore, uploads: UploadStore, state_db: Database
) -> None:
    tenants.add(TENANT, "ops@acme.example", TEST_PASSWORD)
    calls: list[tuple[str, str, bool]] = []

    def listener(event: UploadCompleted) -> None:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        calls.append((event.upload.path, threading.current_thread().name, on_loop))

    server = SftpServer(settings, tenants, uploads, Defender(state_db, settings.defender), listener)
    await server.start()
    try:
        async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            for number in range(5):
                await put(sftp, f"/in/day{number}.csv", b"1,2\n")
        await server.settled()
    finally:
        await server.close()
    assert [path for path, _, _ in calls] == [f"in/day{number}.csv" for number in range(5)]
    assert {(thread.startswith("sftpd-recorder"), on_loop) for _, thread, on_loop in calls} == {
        (True, False)
    }


async def test_renaming_an_accepted_file_is_a_move_not_an_upload(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, "/in/calls.csv", b"1,2\n")
        await sftp.rename("/in/calls.csv", "/in/renamed.csv")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match=r"file type .txt"):
            await sftp.rename("/in/renamed.csv", "/in/renamed.txt")
    assert [upload.path for upload in await server.recorded()] == ["in/calls.csv"]


async def test_every_upload_of_a_name_is_recorded(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, "/in/calls.csv", b"first\n")
        await put(sftp, "/in/calls.csv", b"second\n")
        async with sftp.open("/in/calls.csv", "rb") as remote:
            assert await remote.read() == b"second\n"
    assert [upload.sha256 for upload in await server.recorded()] == [
        sha256(b"first\n"),
        sha256(b"second\n"),
    ]


async def test_out_of_order_writes_are_hashed_correctly(server: RunningServer) -> None:
    async with (
        asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp,
        sftp.open("/in/calls.csv", "wb") as remote,
    ):
        await remote.write(b"world\n", offset=6)
        await remote.write(b"hello,", offset=0)
    [upload] = await server.recorded()
    assert (upload.size, upload.sha256) == (12, sha256(b"hello,world\n"))


async def test_resumed_upload_keeps_what_was_there(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, "/in/calls.csv", b"1,2\n")

    def append_with_paramiko() -> None:
        with (
            paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp,
            sftp.open("/in/calls.csv", "a") as remote,
        ):
            remote.write(b"3,4\n")

    await asyncio.to_thread(append_with_paramiko)
    assert server.stored(server.inbox() / "calls.csv") == b"1,2\n3,4\n"
    assert (await server.recorded())[-1].sha256 == sha256(b"1,2\n3,4\n")


async def test_paramiko_upload(server: RunningServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    local = tmp_path / "leads.xlsx"
    local.write_bytes(os.urandom(100 * 1024))

    def upload_with_paramiko() -> None:
        with paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            sftp.put(str(local), "/in/leads.xlsx")
            with pytest.raises(PermissionError):
                sftp.put(str(local), "/in/leads.txt")

    await asyncio.to_thread(upload_with_paramiko)
    [upload] = await server.recorded()
    assert (upload.path, upload.sha256) == ("in/leads.xlsx", sha256(local.read_bytes()))


async def test_open_modes_behave_like_a_file_system(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await sftp.mkdir("/in/folder.csv")
        with pytest.raises(asyncssh.SFTPFailure, match="is a folder"):
            await put(sftp, "/in/folder.csv", b"1\n")
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await put(sftp, "/in/missing/calls.csv", b"1\n")
        await put(sftp, "/in/calls.csv", b"1\n")
        with pytest.raises(asyncssh.SFTPFailure, match="already exists"):
            await sftp.open("/in/calls.csv", "xb")
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.open("/in/absent.csv", "r+b")
    assert [upload.path for upload in await server.recorded()] == ["in/calls.csv"]


async def test_a_failing_listener_does_not_fail_the_upload(
    settings: Settings, tenants: TenantStore, uploads: UploadStore, state_db: Database
) -> None:
    tenants.add(TENANT, "ops@acme.example", TEST_PASSWORD)

    def broken_listener(event: UploadCompleted) -> None:
        raise RuntimeError("ingest is down")

    server = SftpServer(
        settings, tenants, uploads, Defender(state_db, settings.defender), broken_listener
    )
    await server.start()
    try:
        async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            await put(sftp, "/in/calls.csv", b"1,2\n")
    finally:
        await server.close()
    assert [upload.path for upload in uploads.history(TENANT)] == ["in/calls.csv"]


async def test_asyncssh_put_and_get(server: RunningServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    local = tmp_path / "calls.csv"
    local.write_bytes(os.urandom(200 * 1024))
    (server.reports_dir() / "report.csv").write_bytes(b"row,status\n1,ok\n")
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await sftp.put(str(local), "/in/calls.csv")
        await sftp.get("/out/report.csv", str(tmp_path / "report.csv"))
        await sftp.get("/in/calls.csv", str(tmp_path / "back.csv"))
    assert (tmp_path / "report.csv").read_bytes() == b"row,status\n1,ok\n"
    assert (tmp_path / "back.csv").read_bytes() == local.read_bytes()
    [upload] = await server.recorded()
    assert upload.sha256 == sha256(local.read_bytes())
