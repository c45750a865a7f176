"""curl (libssh2) ``-T`` to sftp:// and back, with the server's host key pinned in known_hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clients.checks import assert_clean, assert_same_bytes, assert_uploaded_once, require, run
from tests.clients.conftest import HOST, SIZES, TENANT, Run, ServerThread
from tests.conftest import TEST_PASSWORD


@pytest.fixture
def home(known_hosts: Path, tmp_path: Path) -> Path:
    """A HOME whose ~/.ssh/known_hosts holds the server's keys: where curl looks for them."""
    ssh_dir = tmp_path / "home" / ".ssh"
    ssh_dir.mkdir(parents=True)
    (ssh_dir / "known_hosts").write_bytes(known_hosts.read_bytes())
    return ssh_dir.parent


def curl(server: ServerThread, home: Path, cwd: Path, remote: str, *arguments: str) -> Run:
    return run(
        [require("curl"), "--silent", "--show-error", "--user", f"{TENANT}:{TEST_PASSWORD}",
         *arguments, f"sftp://{HOST}:{server.port}/{remote}"],
        cwd, {"HOME": str(home)},
    )


@pytest.mark.parametrize("label", SIZES)
def test_upload_and_download(
    label: str, server: ServerThread, home: Path, payloads: dict[str, Path], tmp_path: Path
) -> None:
    remote = f"in/curl-{label}.csv"

    assert_clean(curl(server, home, tmp_path, remote, "--upload-file", str(payloads[label])))
    assert_uploaded_once(server, remote, payloads[label])

    assert_clean(curl(server, home, tmp_path, remote, "--output", "back.csv"))
    assert_same_bytes(tmp_path / "back.csv", payloads[label])
