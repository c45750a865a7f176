"""OpenSSH ``sftp -b``: the client most customers' scripts use (put, get, put -r, put -p, reput)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clients.checks import assert_clean, assert_same_bytes, assert_uploaded_once, require, run
from tests.clients.conftest import FEED, HOST, SIZES, TENANT, Run, ServerThread
from tests.clients.openssh import askpass_env, ssh_options
from tests.conftest import TEST_PASSWORD


def sftp(server: ServerThread, known_hosts: Path, cwd: Path, *commands: str) -> Run:
    batch = cwd / "batch.txt"
    batch.write_text("".join(f"{command}\n" for command in commands))
    return run(
        [require("sftp"), *ssh_options(known_hosts), "-b", str(batch), "-P", str(server.port),
         f"{TENANT}@{HOST}"],
        cwd, askpass_env(cwd, TEST_PASSWORD),
    )


@pytest.mark.parametrize("label", SIZES)
def test_put_then_get(
    label: str, server: ServerThread, known_hosts: Path, payloads: dict[str, Path], tmp_path: Path
) -> None:
    remote = f"in/sftp-{label}.csv"

    assert_clean(sftp(server, known_hosts, tmp_path, f"put {payloads[label]} {remote}"))
    assert_uploaded_once(server, remote, payloads[label])

    assert_clean(sftp(server, known_hosts, tmp_path, f"get {remote} back.csv"))
    assert_same_bytes(tmp_path / "back.csv", payloads[label])


def test_put_recursive(
    server: ServerThread, known_hosts: Path, payloads: dict[str, Path], tmp_path: Path
) -> None:
    """``put -r`` makes the (feed) folder and sends every file, silently (no setstat complaint)."""
    folder = tmp_path / FEED
    folder.mkdir()
    for label, payload in payloads.items():
        (folder / f"put-r-{label}.csv").write_bytes(payload.read_bytes())

    assert_clean(sftp(server, known_hosts, tmp_path, f"put -r {FEED} in/"))
    for label, payload in payloads.items():
        assert_uploaded_once(server, f"in/{FEED}/put-r-{label}.csv", payload)

    assert_clean(sftp(server, known_hosts, tmp_path, f"get -r in/{FEED} back"))
    for label, payload in payloads.items():
        assert_same_bytes(tmp_path / "back" / f"put-r-{label}.csv", payload)


def test_put_preserving_times(
    server: ServerThread, known_hosts: Path, payloads: dict[str, Path], tmp_path: Path
) -> None:
    """``put -p`` sends the times (applied) and the mode (accepted and ignored), silently."""
    mtime = 1_600_000_000
    for label, payload in payloads.items():
        local = tmp_path / f"put-p-{label}.csv"
        local.write_bytes(payload.read_bytes())
        os.utime(local, (mtime, mtime))
    commands = [f"put -p put-p-{label}.csv in/" for label in payloads]

    assert_clean(sftp(server, known_hosts, tmp_path, *commands))
    for label, payload in payloads.items():
        assert_uploaded_once(server, f"in/put-p-{label}.csv", payload)
        assert (server.inbox / f"put-p-{label}.csv").stat().st_mtime == mtime


@pytest.mark.parametrize("label", ["32KiB+1", "5000000B"])
def test_reput_finishes_an_interrupted_upload(
    label: str, server: ServerThread, known_hosts: Path, payloads: dict[str, Path], tmp_path: Path
) -> None:
    """The first part arrives as its own upload; ``reput`` sends the rest, a second upload."""
    whole = payloads[label].read_bytes()
    first_part = tmp_path / "first-part.csv"
    first_part.write_bytes(whole[: len(whole) // 2 + 1])
    remote = f"in/reput-{label}.csv"

    assert_clean(sftp(server, known_hosts, tmp_path, f"put {first_part} {remote}"))
    assert_clean(sftp(server, known_hosts, tmp_path, f"reput {payloads[label]} {remote}"))

    records = server.recorded(remote)
    assert [upload.size for upload in records] == [first_part.stat().st_size, len(whole)]
    assert_clean(sftp(server, known_hosts, tmp_path, f"get {remote} back.csv"))
    assert_same_bytes(tmp_path / "back.csv", payloads[label])
