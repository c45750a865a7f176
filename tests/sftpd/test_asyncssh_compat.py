"""The asyncssh seam checks what it relies on, and the daemon refuses an asyncssh that moved it.

Each refusal runs in its own process, on the installed asyncssh with one internal taken away the
way a new release could move it, so the import-time check itself is what is tested.
(tests/sftpd/test_aborted_uploads.py proves the seam's behaviour: a closed upload is published,
one left open when the session ended is not.)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from asyncssh.sftp import SFTPServerHandler

from sftpd import asyncssh_compat
from sftpd.asyncssh_compat import (
    SSH_FXP_CLOSE,
    client_requested_close,
    problems,
    write_request_length,
)
from tests.conftest import TEST_PASSWORD, free_port
from tests.sftpd.commands import rclone, rclone_obscure
from tests.sftpd.conftest import TENANT, RunningServer
from tests.support.clients import asyncssh_connect
from tests.support.daemon import project_env

SUBPROCESS_TIMEOUT_SECONDS = 60

# The ways a release could move what the seam relies on, as Python run before the import.
MOVED = {
    "close handler removed": "del s.SFTPServerHandler._process_close",
    "close served elsewhere": (
        "s.SFTPServerHandler._packet_handlers[4] = s.SFTPServerHandler._process_read"
    ),
    "dispatch table removed": "del s.SFTPServerHandler._packet_handlers",
    "close handler made plain": (
        "s.SFTPServerHandler._process_close = lambda self, packet: None"
    ),
    "write handler removed": "del s.SFTPServerHandler._process_write",
    "write served elsewhere": (
        "s.SFTPServerHandler._packet_handlers[6] = s.SFTPServerHandler._process_read"
    ),
    "session end takes other parameters": (
        "s.SFTPServerHandler._cleanup = lambda self: None"
    ),
}


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=cwd, capture_output=True, text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS, env=project_env(),
    )


def test_installed_asyncssh_has_everything_the_seam_relies_on() -> None:
    assert problems() == []
    served = SFTPServerHandler._packet_handlers[SSH_FXP_CLOSE]
    assert served is not SFTPServerHandler._process_close
    assert getattr(served, "__wrapped__", None) is SFTPServerHandler._process_close
    assert client_requested_close() is False


def test_a_handler_whose_table_serves_close_elsewhere_is_refused() -> None:
    class Moved(SFTPServerHandler):
        _packet_handlers = {  # noqa: RUF012 (asyncssh's own table is a class attribute)
            **SFTPServerHandler._packet_handlers,
            SSH_FXP_CLOSE: SFTPServerHandler._process_read,
        }

    assert problems(Moved) == [
        "Moved._packet_handlers no longer maps SSH_FXP_CLOSE (4) to _process_close"
    ]


def test_a_close_handler_with_other_parameters_is_refused() -> None:
    class Changed(SFTPServerHandler):
        async def _process_close(self, packet: Any, reason: str) -> None:  # type: ignore[override]
            self._server.close(packet)

    expected = (
        "Changed._process_close takes (self, packet, reason), not (self, packet)"
        " (it serves a client's SSH_FXP_CLOSE)"
    )
    assert problems(Changed) == [expected]


def test_a_connection_that_cannot_send_a_disconnect_first_is_refused() -> None:
    class Moved(asyncssh.connection.SSHConnection):
        _send_disconnect = None  # type: ignore[assignment]

    assert problems(connection=Moved) == [
        "Moved._send_disconnect is missing (it tells why: sftpd.asyncssh_compat.disconnect)"]


@pytest.mark.parametrize("change", MOVED.values(), ids=MOVED.keys())
def test_importing_the_seam_on_a_moved_asyncssh_raises_one_clear_error(
    tmp_path: Path, change: str
) -> None:
    result = run_python(
        "import asyncssh.sftp as s\n"
        f"{change}\n"
        "try:\n"
        "    import sftpd.sftp\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc, sep=': ')\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"AsyncsshIncompatible: asyncssh {asyncssh.__version__} "
                                    "is not supported: SFTPServerHandler."), result.stdout


def test_daemon_refuses_to_start_on_a_moved_asyncssh(tmp_path: Path) -> None:
    port, api_port = free_port(), free_port()
    result = run_python(
        "import asyncssh.sftp as s\n"
        f"{MOVED['close handler removed']}\n"
        "from service.daemon import main\n"
        f"raise SystemExit(main(['serve', '--listen', '127.0.0.1:{port}',"
        f" '--api-listen', '127.0.0.1:{api_port}']))\n",
        tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"sftpd: cannot start: asyncssh {asyncssh.__version__} is not supported: "
        "SFTPServerHandler._process_close is missing (it serves a client's SSH_FXP_CLOSE). "
        "Install a release of asyncssh within the bounds in pyproject.toml.\n"
    )
    # Refused before anything was created: no host keys, no state.
    assert list(tmp_path.iterdir()) == []


def test_seam_is_the_only_user_of_asyncssh_internals() -> None:
    """Every private asyncssh name the front door uses is in the seam, where it is checked."""
    sftpd_dir = Path(asyncssh_compat.__file__).parent
    others = [
        path.name
        for path in sftpd_dir.glob("*.py")
        if path.name != "asyncssh_compat.py"
        and any(word in path.read_text() for word in ("asyncssh.sftp", "_getframe", "_process_",
                                                     "_packet_handlers", "SFTPServerHandler"))
    ]
    assert others == []


def test_write_request_length_is_where_the_data_string_ends() -> None:
    handle, data = b"\x00\x00\x00\x07", b"a,b\n"
    request = (len(handle).to_bytes(4, "big") + handle + (32_768).to_bytes(8, "big")
               + len(data).to_bytes(4, "big") + data)
    assert write_request_length(request) == len(request)
    assert write_request_length(request + b"stale tail of the client's buffer") == len(request)
    # Fields that do not fit: asyncssh itself refuses the request as incomplete.
    assert write_request_length(request[:10]) == 10
    assert write_request_length(request[:-1]) == len(request) - 1


@pytest.mark.parametrize("size", [32 * 1024 + 1, 33_000, 1024 * 1024 + 7])
async def test_rclone_uploads_of_every_size_arrive_intact(
    server: RunningServer, tmp_path: Path, size: int
) -> None:
    """rclone 1.60's last short write carries its whole 32 KiB buffer after the data; the
    server writes the data string only, as OpenSSH's sftp-server does."""
    content = os.urandom(size)
    local = tmp_path / "calls.csv"
    local.write_bytes(content)
    obscured = await rclone_obscure(TEST_PASSWORD, tmp_path)

    result = await rclone(server.port, TENANT, obscured, tmp_path,
                          "copyto", str(local), "{remote}/in/calls.csv")

    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr, result.stderr
    stored = server.stored(server.inbox() / "calls.csv")
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(content).hexdigest()
    [upload] = await server.recorded()
    assert (upload.size, upload.sha256) == (size, hashlib.sha256(content).hexdigest())


async def test_a_session_ended_by_a_malformed_request_exits_non_zero_saying_why(
    server: RunningServer,
) -> None:
    async with asyncssh_connect(server.port, TENANT, TEST_PASSWORD) as conn:
        writer, reader, stderr = await conn.open_session(subsystem="sftp", encoding=None)
        writer.write((5).to_bytes(4, "big") + bytes([1]) + (3).to_bytes(4, "big"))  # INIT v3
        length = int.from_bytes(await reader.readexactly(4), "big")
        assert (await reader.readexactly(length))[0] == 2  # VERSION
        writer.write((1).to_bytes(4, "big") + bytes([3]))  # an OPEN without its request id
        message = await stderr.read()
        await writer.channel.wait_closed()
        assert writer.channel.get_exit_status() == 1
    assert message.startswith(b"sftpd: the SFTP session ended: "), message
