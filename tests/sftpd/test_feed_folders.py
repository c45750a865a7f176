"""A sub-folder of in/ that is not one of the tenant's feed folders is refused at upload, with a
message naming the feed folders; in/ itself and the feed folders (and folders below them) work."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import asyncssh
import pytest

from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import OTHER_TENANT, TENANT, RunningServer, ServerFactory
from tests.support.clients import OpenSSHClient, asyncssh_sftp, paramiko_sftp
from tests.support.daemon import start_daemon

CSV = b"call_record_id,name\n1,Sale\n"
FEEDS = {TENANT: ["calls", "signals"], OTHER_TENANT: ["orders"]}
NOT_A_FEED = ("in/batch/ is not a feed folder; put files directly in in/ or in one of the feed"
              " folders: in/calls/, in/signals/")


def feed_folders(tenant: str) -> Sequence[str]:
    return FEEDS[tenant]


@pytest.fixture
async def feed_server(make_server: ServerFactory) -> RunningServer:
    return await make_server(feed_folders=feed_folders)


async def test_uploads_into_in_and_feed_folders_are_accepted(feed_server: RunningServer) -> None:
    async with asyncssh_sftp(feed_server.port, TENANT, TEST_PASSWORD) as sftp:
        await sftp.mkdir("/in/calls")
        for path in ("/in/a.csv", "/in/calls/b.csv"):
            async with sftp.open(path, "wb") as remote:
                await remote.write(CSV)
        await sftp.mkdir("/in/calls/2024")
        async with sftp.open("/in/calls/2024/c.csv", "wb") as remote:
            await remote.write(CSV)
    assert sorted(upload.path for upload in await feed_server.recorded()) == [
        "in/a.csv", "in/calls/2024/c.csv", "in/calls/b.csv",
    ]


async def test_other_sub_folders_are_refused_naming_the_feed_folders(
    feed_server: RunningServer,
) -> None:
    (feed_server.inbox() / "a.csv").write_bytes(CSV)
    (feed_server.inbox() / "calls" / "2024").mkdir(parents=True)
    async with asyncssh_sftp(feed_server.port, TENANT, TEST_PASSWORD) as sftp:
        with pytest.raises(asyncssh.SFTPPermissionDenied) as upload:
            await sftp.open("/in/batch/x.csv", "wb")
        with pytest.raises(asyncssh.SFTPPermissionDenied) as folder:
            await sftp.mkdir("/in/batch")
        with pytest.raises(asyncssh.SFTPPermissionDenied) as move:
            await sftp.rename("/in/a.csv", "/in/batch.csv/../batch/a.csv")
        with pytest.raises(asyncssh.SFTPPermissionDenied) as move_folder:
            await sftp.rename("/in/calls/2024", "/in/batch")
    assert upload.value.reason == f"upload refused: {NOT_A_FEED}"
    assert folder.value.reason == f"folder refused: {NOT_A_FEED}"
    assert move.value.reason == f"rename refused: {NOT_A_FEED}"
    assert move_folder.value.reason == f"rename refused: {NOT_A_FEED}"
    assert sorted(path.name for path in feed_server.inbox().iterdir()) == ["a.csv", "calls"]
    assert await feed_server.recorded() == []


async def test_openssh_put_shows_the_feed_folders(
    feed_server: RunningServer, tmp_path: Path
) -> None:
    client = OpenSSHClient(tmp_path, feed_server.port)
    (tmp_path / "x.csv").write_bytes(CSV)
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "y.csv").write_bytes(CSV)
    reason = ("in/batch/ is not a feed folder; put files directly in in/ or in one of the feed"
              " folders: in/orders/")

    upload = await client.run(OTHER_TENANT, TEST_PASSWORD, ["put x.csv in/batch/x.csv"])
    folder = await client.run(OTHER_TENANT, TEST_PASSWORD, ["put -r batch in/"])

    assert upload.returncode != 0 and f"upload refused: {reason}" in upload.stderr
    assert folder.returncode != 0 and f"folder refused: {reason}" in folder.stderr
    assert list(feed_server.inbox(OTHER_TENANT).iterdir()) == []


def test_the_daemon_refuses_folders_that_are_not_feeds(tmp_path: Path) -> None:
    """service/daemon.py gives the server the feed folders ingest knows (signals, calls)."""
    daemon = start_daemon(tmp_path)
    try:
        password = daemon.demo_password
        assert password is not None
        with paramiko_sftp(daemon.port, "demo", password) as sftp:
            sftp.mkdir("/in/calls")
            with sftp.open("/in/calls/a.csv", "wb") as remote:
                remote.write(CSV)
            with sftp.open("/in/b.csv", "wb") as remote:
                remote.write(CSV)
            with pytest.raises(PermissionError, match="in/calls/, in/signals/"):
                sftp.open("/in/batch/c.csv", "wb")
    finally:
        assert daemon.stop() == 0
