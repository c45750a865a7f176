"""Real command-line clients for the front-door tests: ``ssh``, ``scp``, ``rclone``, ``curl``.

Each runs as a subprocess against the test server on loopback, logging in with a password the
way :class:`~tests.support.clients.OpenSSHClient` does (SSH_ASKPASS), and returns its exit
status, stdout and stderr.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path

from tests.support.clients import HOST, OpenSSHClient, SftpRun

COMMAND_TIMEOUT_SECONDS = 60

# What every OpenSSH command here is given: no host key checks, a password only, quiet.
OPENSSH_OPTIONS = (
    "-o", "BatchMode=no",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "PreferredAuthentications=password,keyboard-interactive",
    "-o", "PubkeyAuthentication=no",
    "-o", "NumberOfPasswordPrompts=1",
)


async def run(
    argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None
) -> SftpRun:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_SECONDS)
    assert process.returncode is not None
    return SftpRun(process.returncode, stdout.decode(), stderr.decode())


async def ssh(client: OpenSSHClient, user: str, password: str, *command: str) -> SftpRun:
    """``ssh`` to the server, with ``command`` or (without one) asking for a shell."""
    argv = [shutil.which("ssh") or "ssh", *OPENSSH_OPTIONS, "-p", str(client.port),
            f"{user}@{HOST}", *command]
    return await run(argv, client.work_dir, client.environment(password))


async def scp(client: OpenSSHClient, password: str, *arguments: str) -> SftpRun:
    """``scp`` (SFTP mode, OpenSSH 9's default) with ``arguments``; remote paths are written
    ``{remote}/path`` and filled in with the user, host and port."""
    argv = [shutil.which("scp") or "scp", *OPENSSH_OPTIONS, "-P", str(client.port), *arguments]
    return await run(argv, client.work_dir, client.environment(password))


def remote(user: str) -> str:
    return f"{user}@{HOST}:"


async def rclone_obscure(password: str, cwd: Path) -> str:
    result = await run([rclone_path(), "obscure", password], cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def rclone_path() -> str:
    found = shutil.which("rclone")
    assert found is not None, "rclone is not installed (apt-get install rclone)"
    return found


async def rclone(
    port: int, user: str, obscured_password: str, cwd: Path, *arguments: str
) -> SftpRun:
    """``rclone`` with an on-the-fly SFTP remote; write remote paths as ``{remote}/path``."""
    spec = f":sftp,host={HOST},port={port},user={user},pass={obscured_password}:"
    argv = [rclone_path(), "--config", str(cwd / "rclone.conf"), "--low-level-retries", "1",
            "--retries", "1",
            *(argument.replace("{remote}", spec) for argument in arguments)]
    return await run(argv, cwd)


async def curl(*arguments: str, cwd: Path) -> SftpRun:
    argv = [shutil.which("curl") or "curl", "--silent", "--show-error", "--insecure", *arguments]
    return await run(argv, cwd)
