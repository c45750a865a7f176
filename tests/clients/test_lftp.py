"""lftp over sftp:// (it runs ``ssh -s sftp`` and answers the password prompt itself): put, get
and ``mirror -R``, the way scripts sync a folder up.

lftp's ssh pins the server's keys from a known_hosts file through ``sftp:connect-program``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clients.checks import assert_clean, assert_same_bytes, assert_uploaded_once, require, run
from tests.clients.conftest import FEED, HOST, SIZES, TENANT, Run, ServerThread
from tests.conftest import TEST_PASSWORD


def lftp(server: ServerThread, known_hosts: Path, cwd: Path, *commands: str) -> Run:
    ssh = (
        f"ssh -a -x -o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null"
        " -o StrictHostKeyChecking=yes -o PreferredAuthentications=password"
        " -o PubkeyAuthentication=no"
    )
    script = cwd / "script.lftp"
    script.write_text(
        f'set sftp:connect-program "{ssh}"\n'
        "set cmd:fail-exit yes\n"
        f"open --user {TENANT} --password {TEST_PASSWORD} sftp://{HOST}:{server.port}\n"
        + "".join(f"{command}\n" for command in commands)
    )
    return run([require("lftp"), "-f", str(script)], cwd)


@pytest.mark.parametrize("label", SIZES)
def test_put_then_get(
    label: str, server: ServerThread, known_hosts: Path, payloads: dict[str, Path], tmp_path: Path
) -> None:
    remote = f"in/lftp-{label}.csv"

    assert_clean(lftp(server, known_hosts, tmp_path, f"put {payloads[label]} -o {remote}"))
    assert_uploaded_once(server, remote, payloads[label])

    assert_clean(lftp(server, known_hosts, tmp_path, f"get {remote} -o back.csv"))
    assert_same_bytes(tmp_path / "back.csv", payloads[label])


def test_mirror_reverse(
    server: ServerThread, known_hosts: Path, payloads: dict[str, Path], tmp_path: Path
) -> None:
    """``mirror -R`` makes the folder on the server (below a feed folder), sends each file once."""
    folder = tmp_path / "batch"
    folder.mkdir()
    for label, payload in payloads.items():
        (folder / f"mirror-{label}.csv").write_bytes(payload.read_bytes())

    assert_clean(lftp(server, known_hosts, tmp_path, f"mirror -R batch in/{FEED}/batch"))
    for label, payload in payloads.items():
        assert_uploaded_once(server, f"in/{FEED}/batch/mirror-{label}.csv", payload)

    assert_clean(lftp(server, known_hosts, tmp_path, f"mirror in/{FEED}/batch back"))
    for label, payload in payloads.items():
        assert_same_bytes(tmp_path / "back" / f"mirror-{label}.csv", payload)
