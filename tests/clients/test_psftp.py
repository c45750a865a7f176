"""PuTTY's ``psftp`` (the SSH engine family WinSCP and FileZilla on Windows share), in batch mode.

The host key is pinned with ``-hostkey`` (its SHA-256 fingerprint), the password read from a
file with ``-pwfile``. PuTTY logs in with keyboard-interactive (as WinSCP does), which this
server offers as one password prompt.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.clients.checks import assert_clean, assert_same_bytes, assert_uploaded_once, require, run
from tests.clients.conftest import HOST, SIZES, TENANT, Run, ServerThread
from tests.conftest import TEST_PASSWORD

# What psftp prints on stderr on every login to a server offering keyboard-interactive, whatever
# happens next: the user name it logs in as, and the two lines PuTTY (since 0.71) puts around
# any text a server sends during keyboard-interactive, so that it cannot pass for PuTTY's own.
BANNERS = (
    re.compile(r'Using username ".+"\.'),
    re.compile(r"Keyboard-interactive authentication prompts from server:"),
    re.compile(r"End of keyboard-interactive prompts from server"),
)


def psftp(server: ServerThread, cwd: Path, *commands: str) -> Run:
    batch = cwd / "batch.txt"
    batch.write_text("".join(f"{command}\n" for command in commands))
    password = cwd / "password.txt"
    password.write_text(TEST_PASSWORD)
    password.chmod(0o600)
    pins = [
        arg for key in server.host_keys() for arg in ("-hostkey", key.get_fingerprint("sha256"))
    ]
    return run(
        [require("psftp"), "-batch", "-P", str(server.port), *pins, "-pwfile", str(password),
         "-b", str(batch), f"{TENANT}@{HOST}"],
        cwd,
    )


@pytest.mark.parametrize("label", SIZES)
def test_put_then_get(
    label: str, server: ServerThread, payloads: dict[str, Path], tmp_path: Path
) -> None:
    remote = f"in/psftp-{label}.csv"

    assert_clean(psftp(server, tmp_path, f"put {payloads[label]} {remote}"), BANNERS)
    assert_uploaded_once(server, remote, payloads[label])

    assert_clean(psftp(server, tmp_path, f"get {remote} back.csv"), BANNERS)
    assert_same_bytes(tmp_path / "back.csv", payloads[label])
