"""The OpenSSH ``sftp`` binary in batch mode, with a password given through SSH_ASKPASS."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

CLIENT_TIMEOUT_SECONDS = 60

# sftp's -b adds "-oBatchMode yes", which forbids password prompts; ssh keeps the first value
# of an option, so BatchMode=no must come before -b on the command line.
CLIENT_OPTIONS = (
    "-o", "BatchMode=no",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "PubkeyAuthentication=no",
    "-o", "PreferredAuthentications=password,keyboard-interactive",
    "-o", "NumberOfPasswordPrompts=1",
    "-o", "LogLevel=ERROR",
)


def askpass_env(password: str, folder: Path) -> dict[str, str]:
    """Environment that makes ssh read ``password`` from a helper script instead of a tty."""
    secret = folder / "password"
    secret.write_text(password)
    secret.chmod(0o600)
    script = folder / "askpass.sh"
    script.write_text(f"#!/bin/sh\ncat '{secret}'\n")
    script.chmod(stat.S_IRWXU)
    return {**os.environ, "SSH_ASKPASS": str(script), "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": os.environ.get("DISPLAY", ":0")}


def sftp_batch(port: int, user: str, password: str, commands: list[str], cwd: Path,
               extra_options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``commands`` as an ``sftp -b`` batch; a failing command ends the batch non-zero."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        batch = folder / "batch"
        batch.write_text("\n".join(commands) + "\n")
        return subprocess.run(
            ["sftp", *CLIENT_OPTIONS, *extra_options, "-b", str(batch), "-P", str(port),
             f"{user}@127.0.0.1"],
            cwd=cwd, env=askpass_env(password, folder), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT_SECONDS,
        )


def output_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the commands printed, without the ``sftp>`` echo of each batch line."""
    return [line.strip() for line in result.stdout.splitlines()
            if line.strip() and not line.startswith("sftp>")]
