"""sshfs: the tenant's folders mounted, files copied in and out with plain ``cp``.

Needs FUSE. Where /dev/fuse is missing or the kernel refuses the mount (a container without
the capability), the module is skipped with the reason FUSE gave; a mount that fails for any
other reason (the server's) fails.

The kernel sends FUSE's RELEASE (sshfs's SFTP CLOSE) after ``cp``'s close(2) has returned, so
the test waits, up to the client time limit, for the upload to be recorded before it unmounts.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clients.checks import assert_clean, assert_same_bytes, assert_uploaded_once, require, run
from tests.clients.conftest import CLIENT_TIMEOUT_SECONDS, HOST, SIZES, TENANT, ServerThread
from tests.conftest import TEST_PASSWORD

FUSE_DEVICE = Path("/dev/fuse")
RECORD_POLL_SECONDS = 0.01


@dataclass(frozen=True)
class Mount:
    point: Path
    unmount_program: str


def fuse_refusal(stderr: str) -> str | None:
    """The FUSE layer's own complaint in sshfs's stderr (not the server's), or None."""
    lines = [line for line in stderr.splitlines() if line.startswith(("fuse:", "fusermount"))]
    return "; ".join(lines) or None


@pytest.fixture
def mount(server: ServerThread, known_hosts: Path, tmp_path: Path) -> Iterator[Mount]:
    if not FUSE_DEVICE.exists():
        pytest.skip(f"{FUSE_DEVICE} does not exist here, so sshfs cannot mount")
    unmount_program = shutil.which("fusermount3") or require("fusermount")
    point = tmp_path / "mnt"
    point.mkdir()
    result = run(
        [require("sshfs"), "-p", str(server.port), "-o", "password_stdin",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "StrictHostKeyChecking=yes", "-o", "PreferredAuthentications=password",
         "-o", "PubkeyAuthentication=no", f"{TENANT}@{HOST}:/", str(point)],
        tmp_path, stdin=f"{TEST_PASSWORD}\n",
    )
    if result.returncode != 0 and (reason := fuse_refusal(result.stderr)):
        pytest.skip(f"FUSE refused to mount here: {reason}")
    assert_clean(result)
    try:
        yield Mount(point, unmount_program)
    finally:
        assert_clean(run([unmount_program, "-u", str(point)], tmp_path))


def wait_for_record(server: ServerThread, remote: str) -> None:
    deadline = time.monotonic() + CLIENT_TIMEOUT_SECONDS
    while not server.recorded(remote) and time.monotonic() < deadline:
        time.sleep(RECORD_POLL_SECONDS)


@pytest.mark.parametrize("label", SIZES)
def test_cp_in_and_out(
    label: str, server: ServerThread, mount: Mount, payloads: dict[str, Path], tmp_path: Path
) -> None:
    """``cp new.csv in/``: open, fstat and write a new file, then read it back from the mount."""
    name = f"sshfs-{label}.csv"
    local = tmp_path / name
    local.write_bytes(payloads[label].read_bytes())

    assert_clean(run(["cp", str(local), f"{mount.point / 'in'}{os.sep}"], tmp_path))
    wait_for_record(server, f"in/{name}")
    assert_uploaded_once(server, f"in/{name}", local)

    assert_clean(run(["cp", str(mount.point / "in" / name), "back.csv"], tmp_path))
    assert_same_bytes(tmp_path / "back.csv", local)
