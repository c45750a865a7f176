"""The uvicorn seam checks what it relies on, and the daemon refuses a uvicorn that moved it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import uvicorn

from ledger.uvicorn_compat import problems
from tests.conftest import free_port
from tests.support.daemon import project_env

SUBPROCESS_TIMEOUT_SECONDS = 60


def test_installed_uvicorn_has_everything_the_seam_relies_on() -> None:
    assert problems() == []


def test_a_server_whose_tick_takes_other_parameters_is_refused() -> None:
    class Changed(uvicorn.Server):
        async def on_tick(self, counter: int, now: float) -> bool:  # type: ignore[override]
            return True

    assert problems(Changed) == ["Changed.on_tick takes (self, counter, now), not (self, counter)"]


def test_daemon_refuses_to_start_on_a_moved_uvicorn(tmp_path: Path) -> None:
    port, api_port = free_port(), free_port()
    code = (
        "import uvicorn\n"
        "del uvicorn.Server.capture_signals\n"
        "from service.daemon import main\n"
        f"raise SystemExit(main(['serve', '--listen', '127.0.0.1:{port}',"
        f" '--api-listen', '127.0.0.1:{api_port}']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True, text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
        env=project_env(),
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"sftpd: cannot start: uvicorn {uvicorn.__version__} is not supported: "
        "Server.capture_signals is missing. "
        "Install a release of uvicorn within the bounds in pyproject.toml.\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_sftpctl_works_on_a_moved_uvicorn_until_it_must_serve_the_api(tmp_path: Path) -> None:
    """Only a run that serves the embedded API (one that posts to it over HTTP) needs uvicorn;
    it stops with the same line. A run writing in process, the default, works."""
    (tmp_path / "http.toml").write_text("[post]\nembedded_in_process = false\n")
    code = (
        "import sys, uvicorn\n"
        "del uvicorn.Server.capture_signals\n"
        "from service.sftpctl import main\n"
        "listed = main(['--data-dir', 'var', 'tenant', 'list']) or main(['--data-dir', 'var', 'run'])\n"
        "sys.stdout.flush()\n"
        "raise SystemExit(100 + listed if listed else main(['--config', 'http.toml', '--data-dir', 'var', 'run']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True, text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS, env=project_env(),
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"sftpctl: error: uvicorn {uvicorn.__version__} is not supported: "
        "Server.capture_signals is missing. "
        "Install a release of uvicorn within the bounds in pyproject.toml.\n"
    )
