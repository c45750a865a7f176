"""Running a client and judging what it did, the same way for every client of the matrix.

A customer's cron job trusts the exit status and mails whatever the client prints on stderr, so
success means exit status 0 *and* a silent stderr. The only lines allowed are banners a client
prints on every run whatever the server does; each client names its own, with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from core.crypto import is_encrypted
from tests.clients.conftest import CLIENT_TIMEOUT_SECONDS, Run, ServerThread, sha256_of


def require(program: str) -> str:
    """The program's path; a missing client fails (scripts/test.sh installs them all)."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed: run scripts/test.sh (it installs every client)")
    return path


def run(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> Run:
    """Run one client invocation with a time limit, as a script would."""
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, env={**os.environ, **(env or {})}, input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT_SECONDS, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{argv[0]} hung for {CLIENT_TIMEOUT_SECONDS} s: {exc.stderr!r}")
    return Run(" ".join(argv), done.returncode, done.stdout, done.stderr)


def unexpected_stderr(stderr: str, harmless: Sequence[re.Pattern[str]] = ()) -> list[str]:
    """The stderr lines that are not one of the client's named harmless banners."""
    return [
        line for line in stderr.splitlines()
        if line.strip() and not any(pattern.fullmatch(line.strip()) for pattern in harmless)
    ]


def assert_clean(result: Run, harmless: Sequence[re.Pattern[str]] = ()) -> None:
    """Exit status 0 and nothing on stderr but the named banners."""
    assert result.returncode == 0, (
        f"exit status {result.returncode}, stderr {result.stderr!r} from {result.command}"
    )
    unexpected = unexpected_stderr(result.stderr, harmless)
    assert unexpected == [], f"stderr {unexpected!r} from {result.command}"


def assert_uploaded_once(server: ServerThread, remote: str, original: Path) -> None:
    """The server holds the bytes under ``remote``, sealed, and recorded exactly one upload of
    them."""
    expected = sha256_of(original)
    stored = server.inbox.parent / remote
    assert stored.is_file(), f"{remote} is not in the tenant's folder"
    assert is_encrypted(stored), f"{remote} is stored unsealed"
    assert server.at_rest.digest(stored) == (original.stat().st_size, expected)
    records = server.recorded(remote)
    assert [(upload.size, upload.sha256) for upload in records] == [
        (original.stat().st_size, expected)
    ], f"uploads recorded at {remote}: {records}"


def assert_same_bytes(downloaded: Path, original: Path) -> None:
    assert downloaded.is_file(), f"nothing was downloaded to {downloaded}"
    assert (downloaded.stat().st_size, sha256_of(downloaded)) == (
        original.stat().st_size, sha256_of(original)
    )
