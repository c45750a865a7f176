"""No escape from a tenant's root, for a tenant who holds a valid login and tries everything."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable
from pathlib import Path

import asyncssh
import pytest

from core.crypto import AtRest
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import OTHER_TENANT, TENANT, RunningServer
from tests.support.clients import asyncssh_sftp, paramiko_sftp

SECRET = b"globex,confidential\n"


async def put(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
    async with sftp.open(path, "wb") as remote:
        await remote.write(data)


@pytest.fixture
def secret(server: RunningServer) -> Path:
    """A file of the other tenant, and one outside every tenant, that must stay out of reach."""
    path = server.inbox(OTHER_TENANT) / "secret.csv"
    path.write_bytes(SECRET)
    return path


async def test_dot_dot_stops_at_the_root(server: RunningServer, secret: Path) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        assert await sftp.realpath("/in/../../..") == "/"
        assert sorted(await sftp.listdir("/in/../..")) == ["in", "out"]
        for path in (
            "../globex/in/secret.csv",
            "/in/../../globex/in/secret.csv",
            "/../../../etc/passwd",
            "in/../../../../etc/hostname",
        ):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.open(path, "rb")


async def test_absolute_paths_are_inside_the_root(server: RunningServer, secret: Path) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        for path in ("/etc/passwd", str(secret), str(server.inbox())):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat(path)
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.listdir("/etc")


async def test_other_tenants_files_are_unreachable(server: RunningServer, secret: Path) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        assert sorted(await sftp.listdir("/")) == ["in", "out"]
        assert await sftp.listdir("/in") == []
        for path in (
            "/globex/in/secret.csv",
            "//globex/in/secret.csv",
            "/in/../globex/in/secret.csv",
        ):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.open(path, "rb")
            with pytest.raises(asyncssh.SFTPError):
                await put(sftp, path, b"overwritten")
    assert secret.read_bytes() == SECRET


async def test_creating_symlinks_is_refused(server: RunningServer, secret: Path) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        for target in ("/out", "/etc/passwd", str(secret), "../../globex/in"):
            with pytest.raises(asyncssh.SFTPPermissionDenied, match="symbolic links"):
                await sftp.symlink(target, "/in/link")

    def with_paramiko() -> None:
        with paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp, pytest.raises(PermissionError):
            sftp.symlink(str(secret), "/in/link")

    await asyncio.to_thread(with_paramiko)
    assert list(server.inbox().iterdir()) == []


async def test_planted_symlinks_are_never_followed(
    server: RunningServer, secret: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_bytes(b"outside,file\n")
    inbox = server.inbox()
    (inbox / "escape").symlink_to(secret.parent, target_is_directory=True)
    (inbox / "outside.csv").symlink_to(outside)

    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="symbolic link"):
            await sftp.open("/in/outside.csv", "rb")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="symbolic link"):
            await sftp.listdir("/in/escape")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="symbolic link"):
            await sftp.open("/in/escape/secret.csv", "rb")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="symbolic link"):
            await put(sftp, "/in/escape/planted.csv", b"1,2\n")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="not a regular file"):
            await put(sftp, "/in/outside.csv", b"overwritten\n")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="only files and folders"):
            await sftp.rename("/in/outside.csv", "/in/renamed.csv")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.readlink("/in/outside.csv")
        attrs = await sftp.stat("/in/outside.csv")
        assert attrs.permissions is not None and stat.S_ISLNK(attrs.permissions)
        await sftp.utime("/in/outside.csv", (1, 1))
        await sftp.remove("/in/outside.csv")

    assert outside.read_bytes() == b"outside,file\n" and outside.stat().st_mtime > 1
    assert sorted(path.name for path in secret.parent.iterdir()) == ["secret.csv"]
    assert secret.read_bytes() == SECRET


async def test_a_folder_swapped_for_a_link_mid_session_is_not_followed(
    server: RunningServer, secret: Path
) -> None:
    """The session keeps in/ open; what lies below it is still walked link by link every time."""
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await sftp.mkdir("/in/drop")
        await put(sftp, "/in/drop/a.csv", b"1,2\n")
        assert await sftp.listdir("/in/drop") == ["a.csv"]
        swapped = server.inbox() / "drop"
        (swapped / "a.csv").unlink()
        swapped.rmdir()
        swapped.symlink_to(secret.parent, target_is_directory=True)
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="symbolic link"):
            await sftp.open("/in/drop/secret.csv", "rb")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="symbolic link"):
            await put(sftp, "/in/drop/planted.csv", b"1,2\n")
    assert sorted(path.name for path in secret.parent.iterdir()) == ["secret.csv"]


async def test_a_session_releases_its_folders_when_it_ends(server: RunningServer) -> None:
    def open_descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_descriptors()
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, "/in/a.csv", b"1,2\n")
        # Kept folders list in full every time, not only the first.
        for _ in range(2):
            assert await sftp.listdir("/in") == ["a.csv"]
            assert sorted(await sftp.listdir("/")) == ["in", "out"]
        assert open_descriptors() > before
    for _ in range(100):
        if server.server.connection_count == 0 and open_descriptors() == before:
            break
        await asyncio.sleep(0.05)
    assert open_descriptors() == before


async def test_hard_links_are_refused(server: RunningServer, secret: Path) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, "/in/calls.csv", b"1,2\n")
        for source in ("/in/calls.csv", str(secret), "/../globex/in/secret.csv"):
            with pytest.raises(asyncssh.SFTPPermissionDenied, match="hard links"):
                await sftp.link(source, "/in/linked.csv")
    assert sorted(path.name for path in server.inbox().iterdir()) == ["calls.csv"]
    assert secret.stat().st_nlink == 1


async def test_renames_may_not_leave_in(server: RunningServer) -> None:
    (server.reports_dir() / "report.csv").write_bytes(b"report\n")
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, "/in/calls.csv", b"1,2\n")
        for source, target in [
            ("/in/calls.csv", "/../calls.csv"),
            ("/in/calls.csv", "/calls.csv"),
            ("/in/calls.csv", "/out/calls.csv"),
            ("/in/calls.csv", "/../globex/in/calls.csv"),
            ("/out/report.csv", "/in/report.csv"),
            ("/in", "/inbox"),
            ("/out", "/in/out"),
        ]:
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.rename(source, target)
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.posix_rename(source, target)
    assert (server.inbox() / "calls.csv").is_file()
    assert sorted(path.name for path in server.reports_dir().iterdir()) == ["report.csv"]
    assert not (server.tenants.tenants_dir / "calls.csv").exists()


async def test_setstat_applies_times_ignores_modes_and_owners_and_refuses_sizes(
    server: RunningServer,
) -> None:
    (server.reports_dir() / "report.csv").write_bytes(b"report\n")
    before = None
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await put(sftp, "/in/calls.csv", b"1,2\n")
        await sftp.mkdir("/in/batch")
        before = (server.inbox() / "calls.csv").stat()
        folder_before = (server.inbox() / "batch").stat()
        await sftp.chmod("/in/calls.csv", 0o4777)
        await sftp.chown("/in/calls.csv", 0, 0)
        await sftp.chmod("/in/batch", 0o777)
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="size of a stored file"):
            await sftp.truncate("/in/calls.csv", 0)
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.chmod("/in/missing.csv", 0o600)
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="read-only"):
            await sftp.utime("/out/report.csv", (0, 0))
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.chmod("/in", 0o777)
        await sftp.utime("/in/calls.csv", (1_600_000_000, 1_600_000_000))
    info = (server.inbox() / "calls.csv").stat()
    assert info.st_mtime == 1_600_000_000 and AtRest.size(server.inbox() / "calls.csv") == 4
    assert (info.st_mode, info.st_uid, info.st_gid) == (before.st_mode, before.st_uid,
                                                        before.st_gid)
    assert stat.S_IMODE(info.st_mode) & 0o7077 == 0o040
    assert (server.inbox() / "batch").stat().st_mode == folder_before.st_mode

    def with_paramiko() -> None:
        with paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            sftp.chmod("/in/calls.csv", 0o777)

    await asyncio.to_thread(with_paramiko)
    assert (server.inbox() / "calls.csv").stat().st_mode == before.st_mode


async def test_out_and_the_root_are_read_only(server: RunningServer) -> None:
    (server.reports_dir() / "report.csv").write_bytes(b"report\n")
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        attempts: list[Awaitable[object]] = [
            sftp.mkdir("/out/sub"),
            sftp.mkdir("/sub"),
            sftp.remove("/out/report.csv"),
            sftp.rmdir("/out"),
            sftp.rmdir("/in"),
            sftp.remove("/in"),
            put(sftp, "/out/new.csv", b"1\n"),
            put(sftp, "/calls.csv", b"1\n"),
            sftp.open("/out/report.csv", "ab"),
            sftp.open("/out/report.csv", "r+b"),
        ]
        for attempt in attempts:
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await attempt
        async with sftp.open("/out/report.csv", "rb") as remote:
            assert await remote.read() == b"report\n"
        attrs = await sftp.stat("/out/report.csv")
        assert attrs.permissions is not None and not attrs.permissions & 0o222
    assert sorted(path.name for path in server.reports_dir().iterdir()) == ["report.csv"]
    assert sorted(path.name for path in server.tenants.folders(TENANT).root.iterdir()) == [
        "in",
        "out",
    ]


async def test_folders_inside_in_can_be_managed(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        await sftp.mkdir("/in/2024")
        await put(sftp, "/in/2024/calls.csv", b"1,2\n")
        with pytest.raises(asyncssh.SFTPFailure, match="not empty"):
            await sftp.rmdir("/in/2024")
        await sftp.rename("/in/2024", "/in/archive")
        assert await sftp.listdir("/in/archive") == ["calls.csv"]
        await sftp.remove("/in/archive/calls.csv")
        await sftp.rmdir("/in/archive")
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="control characters"):
            await sftp.mkdir("/in/bad\nname")
    assert list(server.inbox().iterdir()) == []


async def test_in_flight_folder_is_invisible(server: RunningServer) -> None:
    async with (
        asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp,
        sftp.open("/in/calls.csv", "wb") as remote,
    ):
        await remote.write(b"1,2\n")
        [staged] = os.listdir(server.in_flight())
        assert sorted(await sftp.listdir("/")) == ["in", "out"]
        assert await sftp.listdir("/in") == []
        for path in ("/.incoming", f"/.incoming/{staged}", f"/in/../.incoming/{staged}"):
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat(path)
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.open(f"/.incoming/{staged}", "rb")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.remove(f"/.incoming/{staged}")


async def test_special_files_are_not_opened(server: RunningServer) -> None:
    os.mkfifo(server.reports_dir() / "pipe.csv")
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        with pytest.raises(asyncssh.SFTPPermissionDenied, match="not a regular file"):
            await asyncio.wait_for(sftp.open("/out/pipe.csv", "rb"), timeout=5)


async def test_file_system_statistics_are_not_offered(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        with pytest.raises(asyncssh.SFTPOpUnsupported):
            await sftp.statvfs("/in")


async def test_paramiko_cannot_escape_either(server: RunningServer, secret: Path) -> None:
    def with_paramiko() -> None:
        with paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            assert sorted(sftp.listdir("/../..")) == ["in", "out"]
            with pytest.raises(FileNotFoundError):
                sftp.open("/../globex/in/secret.csv", "rb")
            with pytest.raises(PermissionError):
                sftp.rename("/out", "/in/out")
            with pytest.raises(PermissionError):
                sftp.open("/x.csv", "wb")
            with pytest.raises(PermissionError):
                sftp.mkdir("/out/sub")

    await asyncio.to_thread(with_paramiko)
    assert secret.read_bytes() == SECRET


async def test_attributes_match_the_file_and_listings_name_the_tenant(server: RunningServer) -> None:
    """Sizes, types, modes and times as the host has them; the owner and group in a listing are
    the tenant's name, never the host's user."""
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        async with sftp.open("/in/calls.csv", "wb") as remote:
            await remote.write(b"1,2\n")
        await server.completed()
        attrs = await sftp.stat("/in/calls.csv")
        folder = await sftp.stat("/in")
        listed = {name.filename: name for name in await sftp.readdir("/in")}
    info = (server.inbox(TENANT) / "calls.csv").stat()
    assert (attrs.type, attrs.size, attrs.permissions, attrs.mtime, attrs.atime) == (
        asyncssh.FILEXFER_TYPE_REGULAR, 4, info.st_mode, int(info.st_mtime), int(info.st_atime)
    )
    assert folder.type == asyncssh.FILEXFER_TYPE_DIRECTORY
    entry = listed["calls.csv"]
    assert entry.attrs.size == 4
    assert str(entry.longname).split()[2:4] == [TENANT, TENANT]
