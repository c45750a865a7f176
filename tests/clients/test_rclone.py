"""rclone 1.60 (Go x/crypto/ssh and pkg/sftp) with an on-the-fly ``:sftp:`` remote, as a script
that keeps no rclone.conf runs it: every setting a ``--sftp-*`` flag, the password obscured.

``--sftp-shell-type none`` says what is true of this server (SFTP only, no shell): without it
rclone probes for a shell with an exec request on every run and, since an on-the-fly remote has
no config to remember the answer in, prints three "Can't save config" NOTICE lines about itself.

rclone writes a file as concurrent 32 KiB packets and a short last one, so every size here that
is no multiple of 32 KiB checks the server accepts that final short write.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clients.checks import assert_clean, assert_same_bytes, assert_uploaded_once, require, run
from tests.clients.conftest import HOST, SIZES, TENANT, Run, ServerThread
from tests.conftest import TEST_PASSWORD


@pytest.fixture(scope="module")
def obscured_password(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("rclone")
    result = run([require("rclone"), "obscure", "-"], folder, stdin=TEST_PASSWORD)
    assert_clean(result)
    return result.stdout.strip()


def rclone(
    server: ServerThread, known_hosts: Path, password: str, cwd: Path, *arguments: str
) -> Run:
    config = cwd / "rclone.conf"
    config.touch()
    return run(
        [require("rclone"), "--config", str(config), *arguments,
         "--sftp-host", HOST, "--sftp-port", str(server.port), "--sftp-user", TENANT,
         "--sftp-pass", password, "--sftp-known-hosts-file", str(known_hosts),
         "--sftp-shell-type", "none"],
        cwd,
    )


@pytest.mark.parametrize("label", SIZES)
def test_copyto_and_back(
    label: str,
    server: ServerThread,
    known_hosts: Path,
    obscured_password: str,
    payloads: dict[str, Path],
    tmp_path: Path,
) -> None:
    remote = f"in/rclone-{label}.csv"

    assert_clean(rclone(
        server, known_hosts, obscured_password, tmp_path,
        "copyto", str(payloads[label]), f":sftp:{remote}",
    ))
    assert_uploaded_once(server, remote, payloads[label])

    assert_clean(rclone(
        server, known_hosts, obscured_password, tmp_path, "copyto", f":sftp:{remote}", "back.csv"
    ))
    assert_same_bytes(tmp_path / "back.csv", payloads[label])
