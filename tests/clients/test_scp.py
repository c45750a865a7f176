"""OpenSSH ``scp`` (SFTP mode, the default since OpenSSH 9): cron jobs check its exit status."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clients.checks import assert_clean, assert_same_bytes, assert_uploaded_once, require, run
from tests.clients.conftest import HOST, SIZES, TENANT, Run, ServerThread
from tests.clients.openssh import askpass_env, ssh_options
from tests.conftest import TEST_PASSWORD

REMOTE = f"{TENANT}@{HOST}:"


def scp(server: ServerThread, known_hosts: Path, cwd: Path, *arguments: str) -> Run:
    return run(
        [require("scp"), *ssh_options(known_hosts), "-P", str(server.port), *arguments],
        cwd, askpass_env(cwd, TEST_PASSWORD),
    )


@pytest.mark.parametrize("label", SIZES)
def test_copy_up_and_back(
    label: str, server: ServerThread, known_hosts: Path, payloads: dict[str, Path], tmp_path: Path
) -> None:
    remote = f"in/scp-{label}.csv"

    assert_clean(scp(server, known_hosts, tmp_path, str(payloads[label]), REMOTE + remote))
    assert_uploaded_once(server, remote, payloads[label])

    assert_clean(scp(server, known_hosts, tmp_path, REMOTE + remote, "back.csv"))
    assert_same_bytes(tmp_path / "back.csv", payloads[label])


def test_copy_preserving_times(
    server: ServerThread, known_hosts: Path, payloads: dict[str, Path], tmp_path: Path
) -> None:
    """``scp -p`` sets the times (applied) and the mode (accepted and ignored), silently."""
    local = tmp_path / "scp-p.csv"
    local.write_bytes(payloads["33000B"].read_bytes())
    os.utime(local, (1_600_000_000, 1_600_000_000))

    assert_clean(scp(server, known_hosts, tmp_path, "-p", str(local), REMOTE + "in/"))
    assert_uploaded_once(server, "in/scp-p.csv", local)
    assert (server.inbox / "scp-p.csv").stat().st_mtime == 1_600_000_000
