"""``sftpctl run`` serves the embedded API on a port of its own, so the daemon can always start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core.config import Settings
from tests.conftest import free_port
from tests.support import postgres
from tests.support.daemon import project_env, start_daemon

ROWS = 16
CALLS = "customer_id,call_start,call_end\n" + "".join(
    f"c-{n},2026-11-20T18:{n:02d}:00Z,2026-11-20T18:{n:02d}:30Z\n" for n in range(ROWS)
)


def sftpctl(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.sftpctl", "--config", str(config), *args],
        cwd=config.parent, capture_output=True, text=True, timeout=120, env=project_env(), input=stdin,
        check=False,
    )


def test_the_daemon_starts_while_sftpctl_run_posts_and_the_run_completes(tmp_path: Path, settings: Settings) -> None:
    port, api_port = free_port(), free_port()
    config = tmp_path / "sftpd.toml"
    # Four requests a second: the run posts for about four seconds.
    config.write_text(
        f"[server]\nlisten_port = {port}\n[api]\nlisten_port = {api_port}\n"
        "[post]\nrate_limit_requests = 4\nrate_limit_window_seconds = 1.0\n"
        "[schedule]\nstable_seconds = 0.0\n" + postgres.config_section(settings.database.url)
    )
    added = sftpctl(config, "tenant", "add", "acme", "--email", "ops@acme.example", "--password-stdin",
                    stdin="a-long-password-for-acme\n")
    assert added.returncode == 0, added.stderr
    calls = tmp_path / "var" / "tenants" / "acme" / "in" / "calls" / "calls.csv"
    calls.parent.mkdir(parents=True)
    calls.write_text(CALLS)
    run = subprocess.Popen(
        [sys.executable, "-m", "service.sftpctl", "--config", str(config), "run"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=project_env(),
    )
    assert run.stdout is not None
    for line in run.stdout:
        if line.startswith("post.started"):
            break
    daemon = start_daemon(tmp_path, port, api_port, "--config", str(config))  # fails the test if it cannot
    try:
        rest, errors = run.communicate(timeout=60)
        assert run.returncode == 0, rest + errors
        assert f"done={ROWS} total={ROWS}" in rest
    finally:
        assert daemon.stop() == 0
    [upload] = json.loads(sftpctl(config, "uploads", "acme", "--json").stdout)
    assert (upload["state"], upload["posted"]) == ("posted", ROWS)
