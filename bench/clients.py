"""The two clients every server case runs with: OpenSSH's ``sftp`` binary and asyncssh.

Both servers see the very same client with the very same options. ``Crypto`` pins cipher and key
exchange by client options (so neither server can pick a cheaper one), or leaves each server's
defaults to negotiate.
"""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncssh

from bench.endpoint import Endpoint

CIPHER = "aes128-gcm@openssh.com"
KEX = "curve25519-sha256"
CLIENT_TIMEOUT_SECONDS = 600.0
STDERR_TAIL_CHARS = 300


@dataclass(frozen=True)
class Crypto:
    """``key`` ends a row's key: targets judge only ``pinned`` rows."""

    key: str
    label: str
    cipher: str | None = None
    kex: str | None = None


PINNED = Crypto("pinned", "pinned", CIPHER, KEX)
DEFAULTS = Crypto("defaults", "server defaults")


class ClientError(Exception):
    """A transfer or login that failed; counted as an error of the run."""


class Client(Protocol):
    name: str

    async def upload(self, endpoint: Endpoint, crypto: Crypto, files: Sequence[tuple[Path, str]]) -> None:
        """Upload ``(local, remote name)`` pairs into ``in/``, in order, in one session."""

    async def login(self, endpoint: Endpoint, crypto: Crypto) -> None:
        """Connect, authenticate with the password, open SFTP, close."""


class SftpBinary:
    """``sftp -b`` with the password from an SSH_ASKPASS helper, as a script would run it."""

    name = "sftp"

    # sftp's -b adds "-oBatchMode yes", which forbids password prompts; ssh keeps the first value
    # of an option, so BatchMode=no must come before -b.
    BASE_OPTIONS = (
        "-o", "BatchMode=no",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "PubkeyAuthentication=no",
        "-o", "PreferredAuthentications=password",
        "-o", "NumberOfPasswordPrompts=1",
        "-o", "LogLevel=ERROR",
    )

    def __init__(self, scratch: Path) -> None:
        self._scratch = scratch
        self._scratch.mkdir(parents=True, exist_ok=True)

    async def upload(self, endpoint: Endpoint, crypto: Crypto, files: Sequence[tuple[Path, str]]) -> None:
        commands = [f'put "{local}" "{endpoint.remote(name)}"' for local, name in files]
        await self.batch(endpoint, crypto, commands)

    async def login(self, endpoint: Endpoint, crypto: Crypto) -> None:
        await self.batch(endpoint, crypto, ["bye"])

    async def batch(self, endpoint: Endpoint, crypto: Crypto, commands: Sequence[str]) -> None:
        descriptor, name = tempfile.mkstemp(prefix="batch-", dir=self._scratch)
        batch = Path(name)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write("\n".join(commands) + "\n")
            process = await asyncio.create_subprocess_exec(
                "sftp", *self.BASE_OPTIONS, *self._crypto_options(crypto), "-b", str(batch),
                "-P", str(endpoint.port), f"{endpoint.user}@{endpoint.host}",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=self._environment(endpoint),
            )
            try:
                _, stderr = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise ClientError("sftp timed out") from None
        finally:
            batch.unlink(missing_ok=True)
        if process.returncode != 0:
            text = stderr.decode(errors="replace").strip()[-STDERR_TAIL_CHARS:]
            raise ClientError(f"sftp exited {process.returncode}: {text}")

    @staticmethod
    def _crypto_options(crypto: Crypto) -> list[str]:
        options = []
        if crypto.cipher:
            options += ["-o", f"Ciphers={crypto.cipher}"]
        if crypto.kex:
            options += ["-o", f"KexAlgorithms={crypto.kex}"]
        return options

    def _environment(self, endpoint: Endpoint) -> dict[str, str]:
        """ssh asks the helper, never a tty, for the password (SSH_ASKPASS_REQUIRE=force)."""
        secret = self._scratch / f"password-{endpoint.name}"
        script = self._scratch / f"askpass-{endpoint.name}"
        if not script.exists():
            secret.write_text(endpoint.password)
            secret.chmod(stat.S_IRUSR | stat.S_IWUSR)
            script.write_text(f"#!/bin/sh\ncat '{secret}'\n")
            script.chmod(stat.S_IRWXU)
        return {**os.environ, "SSH_ASKPASS": str(script), "SSH_ASKPASS_REQUIRE": "force",
                "DISPLAY": os.environ.get("DISPLAY", ":0")}


class AsyncsshClient:
    """asyncssh's client, as a Python integration of a customer would use it."""

    name = "asyncssh"

    async def upload(self, endpoint: Endpoint, crypto: Crypto, files: Sequence[tuple[Path, str]]) -> None:
        async with await self.connect(endpoint, crypto) as connection, connection.start_sftp_client() as sftp:
            for local, name in files:
                await sftp.put(str(local), endpoint.remote(name))

    async def login(self, endpoint: Endpoint, crypto: Crypto) -> None:
        async with await self.connect(endpoint, crypto) as connection, connection.start_sftp_client():
            pass

    async def connect(self, endpoint: Endpoint, crypto: Crypto) -> asyncssh.SSHClientConnection:
        try:
            return await asyncssh.connect(endpoint.host, endpoint.port,
                                          options=self.options(endpoint, crypto))
        except (OSError, asyncssh.Error) as exc:
            raise ClientError(f"asyncssh connect: {exc}") from exc

    @staticmethod
    def options(endpoint: Endpoint, crypto: Crypto) -> asyncssh.SSHClientConnectionOptions:
        pinned: dict[str, object] = {}
        if crypto.cipher:
            pinned["encryption_algs"] = [crypto.cipher]
        if crypto.kex:
            pinned["kex_algs"] = [crypto.kex]
        return asyncssh.SSHClientConnectionOptions(
            username=endpoint.user, password=endpoint.password, known_hosts=None, client_keys=None,
            agent_path=None, config=None, preferred_auth="password",
            connect_timeout=CLIENT_TIMEOUT_SECONDS, **pinned,
        )
