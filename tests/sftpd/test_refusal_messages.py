"""Refusals carry their reason in the SFTP status message, the one place the protocol gives it;
clients built on libssh2 (curl) get the status (and show its code), OpenSSH's sftp the message."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import TEST_PASSWORD
from tests.sftpd.commands import curl
from tests.sftpd.conftest import TENANT, RunningServer
from tests.support.clients import paramiko_sftp

CSV = b"call_record_id,name\n1,Sale\n"
CURLE_REMOTE_ACCESS_DENIED = 9


async def test_curl_upload_and_refusal(server: RunningServer, tmp_path: Path) -> None:
    (tmp_path / "calls.csv").write_bytes(CSV)
    (tmp_path / "notes.txt").write_bytes(b"hello\n")
    base = f"sftp://{TENANT}:{TEST_PASSWORD}@127.0.0.1:{server.port}/in/"

    accepted = await curl("-T", "calls.csv", base, cwd=tmp_path)
    refused = await curl("-T", "notes.txt", base, cwd=tmp_path)

    assert (accepted.returncode, accepted.stderr) == (0, "")
    assert server.stored(server.inbox() / "calls.csv") == CSV
    # libssh2 keeps the status code of SSH_FXP_STATUS and drops its message text.
    assert refused.returncode == CURLE_REMOTE_ACCESS_DENIED
    assert "Permission denied" in refused.stderr
    assert not (server.inbox() / "notes.txt").exists()
    assert [upload.path for upload in await server.recorded()] == ["in/calls.csv"]


async def test_the_status_message_says_why(server: RunningServer, tmp_path: Path) -> None:
    """What every client that reads the status message (paramiko, WinSCP, FileZilla) shows."""

    def refused_upload() -> str:
        with paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            try:
                sftp.open("/in/notes.txt", "wb")
            except PermissionError as exc:
                return str(exc.strerror)
        return "accepted"

    assert await asyncio.to_thread(refused_upload) == (
        "upload refused: 'notes.txt': file type .txt is not accepted; use CSV, XLS, XLSX"
    )
