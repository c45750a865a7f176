"""How the matrix logs OpenSSH-based clients in (sftp, scp, sshfs, lftp's ssh): pinned host keys
and a password answered by an SSH_ASKPASS script, the way an unattended script does it.

``-o BatchMode=no`` comes first because ``sftp -b`` turns BatchMode on (which forbids password
prompts) and ssh keeps the first value it is given; SSH_ASKPASS_REQUIRE=force makes ssh ask the
script instead of a terminal. The host key is checked against the server's real keys
(StrictHostKeyChecking=yes), so no "Permanently added" warning is printed or needed.
"""

from __future__ import annotations

import stat
from pathlib import Path

ASKPASS_SCRIPT = '#!/bin/sh\nprintf "%s\\n" "$CLIENT_MATRIX_PASSWORD"\n'


def ssh_options(known_hosts: Path) -> list[str]:
    return [
        "-o", "BatchMode=no",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "PreferredAuthentications=password",
        "-o", "PubkeyAuthentication=no",
        "-o", "NumberOfPasswordPrompts=1",
    ]


def askpass_env(folder: Path, password: str) -> dict[str, str]:
    """Environment that makes ssh read ``password`` from a script written into ``folder``."""
    script = folder / "askpass.sh"
    if not script.exists():
        script.write_text(ASKPASS_SCRIPT)
        script.chmod(stat.S_IRWXU)
    return {
        "SSH_ASKPASS": str(script),
        "SSH_ASKPASS_REQUIRE": "force",
        "DISPLAY": ":0",
        "CLIENT_MATRIX_PASSWORD": password,
    }
