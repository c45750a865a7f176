"""Real SFTP clients for the tests: the OpenSSH ``sftp`` binary, asyncssh and paramiko."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import paramiko

HOST = "127.0.0.1"
OPENSSH_TIMEOUT_SECONDS = 60

ASKPASS_SCRIPT = '#!/bin/sh\nprintf "%s\\n" "$SFTPD_TEST_ASKPASS"\n'


@dataclass(frozen=True)
class SftpRun:
    returncode: int
    stdout: str
    stderr: str


class OpenSSHClient:
    """Runs ``sftp -b`` against the test server, answering the password prompt via SSH_ASKPASS.

    ``sftp -b`` turns on BatchMode, which forbids password prompts; ``-o BatchMode=no`` given
    first wins (ssh keeps the first value of an option), and SSH_ASKPASS_REQUIRE=force makes ssh
    ask the script instead of a terminal.
    """

    def __init__(self, work_dir: Path, port: int) -> None:
        self.work_dir = work_dir
        self.port = port
        self._askpass = work_dir / "askpass.sh"
        self._askpass.write_text(ASKPASS_SCRIPT)
        self._askpass.chmod(stat.S_IRWXU)

    def command(self, user: str, batch: Path, extra: Sequence[str] = ()) -> list[str]:
        return [
            shutil.which("sftp") or "sftp",
            "-o",
            "BatchMode=no",
            "-b",
            str(batch),
            "-P",
            str(self.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
            *extra,
            f"{user}@{HOST}",
        ]

    def environment(self, password: str) -> dict[str, str]:
        return {
            **os.environ,
            "SSH_ASKPASS": str(self._askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": ":0",
            "SFTPD_TEST_ASKPASS": password,
        }

    def write_batch(self, commands: Sequence[str]) -> Path:
        batch = self.work_dir / "batch.txt"
        batch.write_text("\n".join(commands) + "\n")
        return batch

    async def run(
        self, user: str, password: str, commands: Sequence[str], extra: Sequence[str] = ()
    ) -> SftpRun:
        process = await self.start(user, password, commands, extra)
        stdout, stderr = await asyncio.wait_for(process.communicate(), OPENSSH_TIMEOUT_SECONDS)
        assert process.returncode is not None
        return SftpRun(process.returncode, stdout.decode(), stderr.decode())

    async def start(
        self, user: str, password: str, commands: Sequence[str], extra: Sequence[str] = ()
    ) -> asyncio.subprocess.Process:
        """Start ``sftp`` in its own process group (so a test can kill it and its ssh)."""
        return await asyncio.create_subprocess_exec(
            *self.command(user, self.write_batch(commands), extra),
            cwd=self.work_dir,
            env=self.environment(password),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )


def kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL ``sftp`` and its ``ssh``: the TCP connection drops without any goodbye."""
    os.killpg(process.pid, signal.SIGKILL)


@asynccontextmanager
async def asyncssh_sftp(port: int, user: str, password: str) -> AsyncIterator[asyncssh.SFTPClient]:
    async with asyncssh_connect(port, user, password) as conn, conn.start_sftp_client() as sftp:
        yield sftp


@asynccontextmanager
async def asyncssh_connect(
    port: int, user: str, password: str | None, **options: object
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    settings: dict[str, object] = {
        "known_hosts": None,
        "client_keys": None,
        "agent_path": None,
        "preferred_auth": "password",
        **options,
    }
    async with asyncssh.connect(HOST, port, username=user, password=password, **settings) as conn:
        yield conn


@contextmanager
def paramiko_transport(port: int) -> Iterator[paramiko.Transport]:
    transport = paramiko.Transport((HOST, port))
    try:
        transport.start_client(timeout=10)
        yield transport
    finally:
        transport.close()


@contextmanager
def paramiko_sftp(port: int, user: str, password: str) -> Iterator[paramiko.SFTPClient]:
    with paramiko_transport(port) as transport:
        transport.auth_password(user, password)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        try:
            yield sftp
        finally:
            sftp.close()


def output_lines(run: SftpRun) -> list[str]:
    """What the batch commands printed, without the ``sftp>`` echo of each command."""
    return [line.strip() for line in run.stdout.splitlines()
            if line.strip() and not line.startswith("sftp>")]
