"""Host key fingerprints as OpenSSH prints them (``ssh-keygen -l``, the first-connection prompt)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from service.admin.hostkeys import fingerprints
from sftpd.hostkeys import load_or_create_host_keys


def test_fingerprints_match_ssh_keygen(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    load_or_create_host_keys(keys_dir)
    found = fingerprints(keys_dir)
    assert [f.algorithm for f in found] == ["ssh-ed25519", "ssh-rsa"]
    keygen = shutil.which("ssh-keygen")
    assert keygen, "ssh-keygen (openssh-client, which scripts/test.sh installs) is needed"
    for found_key, name in zip(found, ("ssh_host_ed25519_key.pub", "ssh_host_rsa_key.pub")):
        printed = subprocess.run([keygen, "-l", "-E", "sha256", "-f", str(keys_dir / name)],
                                 check=True, capture_output=True, text=True).stdout.split()[1]
        assert found_key.fingerprint == printed


def test_no_keys_yet(tmp_path: Path) -> None:
    assert fingerprints(tmp_path / "missing") == []
