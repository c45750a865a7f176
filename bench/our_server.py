"""Our daemon, started exactly as an operator starts it: ``sftpd serve`` with a config file.

The bench config differs from the shipped defaults only where a benchmark would otherwise measure
a rule instead of the server: a size limit big enough for the 200 MB upload, brute-force thresholds
no benchmark reaches, the embedded API's and the poster's rate limits out of the way of the
throughput cases, and the processing schedule moved half a day away from the run. Password hashing
keeps its real argon2id cost; the tenant is created by ``sftpctl`` like any other.
"""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.cgroup import CpuGroup
from bench.endpoint import HOST, REMOTE_INBOX, Endpoint, free_port, wait_for_banner
from bench.errors import NotAvailable

# Both commands run from the checkout, so ``-m`` imports this tree's code whatever is installed.
REPOSITORY = Path(__file__).resolve().parent.parent
TENANT = "benchuser"
TENANT_EMAIL = "bench@example.com"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
COMMAND_TIMEOUT_SECONDS = 600.0
LOG_TAIL_CHARS = 300
# Far above anything a benchmark does, so no run is ever locked out or throttled.
UNREACHABLE_FAILURES = 1_000_000
UNREACHABLE_RATE = 1_000_000_000
MAX_CONNECTIONS = 5000
HOURS_PER_DAY = 24
HOURS_AWAY = 12

CONFIG = """\
# sftpd config written by bench/: shipped defaults except where noted.
data_dir = "{data_dir}"

[server]
listen_host = "{host}"
listen_port = {port}
keys_dir = "{keys_dir}"
# Raised for the 200 MB upload case.
max_upload_bytes = {max_upload_bytes}
# Raised for the 500 idle sessions case: one tenant, from one address, opening many at once.
max_connections = {max_connections}
max_connections_per_source = {max_connections}
max_prelogin_per_source = {max_connections}
max_sessions_per_tenant = {max_connections}
# 1 as shipped; case 3's second server runs more (rows "N workers").
workers = {workers}

[defender]
# No benchmark fails a login; raised so a burst of logins from 127.0.0.1 is never blocked.
account_max_failures = {failures}
source_max_failures = {failures}

[schedule]
# Scheduled runs moved half a day away, so none can land in the middle of a measurement and
# process the upload cases' junk files.
timezone = "UTC"
hours = [{far_hour}]

[api]
listen_host = "{host}"
listen_port = {api_port}
# 0 switches the embedded API's rate limit off (case 6 measures posts per second).
rate_limit_requests = 0

[post]
# The poster's own limit would make the end-to-end case measure the limit, not the pipeline.
rate_limit_requests = {rate}
"""


@dataclass(frozen=True)
class OurServer:
    """The running daemon: its endpoint, and what ``sftpctl`` needs to reach the same state."""

    endpoint: Endpoint
    config: Path
    data_dir: Path
    api_url: str
    log: Path

    @property
    def outbox(self) -> Path:
        return self.data_dir / "tenants" / TENANT / "out"

    def sftpctl(self, *args: str, stdin: str | None = None,
                timeout: float = COMMAND_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
        return sftpctl(self.config, *args, stdin=stdin, timeout=timeout)


@contextmanager
def our_server(folder: Path, password: str, max_upload_bytes: int, workers: int = 1) -> Iterator[OurServer]:
    """Run ``sftpd serve`` until the context exits; ``folder`` holds its config, data and log.

    ``workers`` > 1: a supervisor and that many worker processes (``[server] workers``); the
    connection caps, raised far above the benchmarks, are shared out among them."""
    folder.mkdir(parents=True, exist_ok=True)
    data_dir = folder / "var"
    port, api_port = free_port(), free_port()
    config = folder / "sftpd.toml"
    config.write_text(CONFIG.format(
        data_dir=data_dir, host=HOST, port=port, keys_dir=folder / "keys",
        max_upload_bytes=max_upload_bytes, max_connections=MAX_CONNECTIONS * workers, workers=workers,
        failures=UNREACHABLE_FAILURES, api_port=api_port, rate=UNREACHABLE_RATE,
        far_hour=(datetime.datetime.now(datetime.UTC).hour + HOURS_AWAY) % HOURS_PER_DAY,
    ))
    added = sftpctl(config, "tenant", "add", TENANT, "--email", TENANT_EMAIL, "--password-stdin",
                    stdin=password + "\n")
    if added.returncode != 0:
        raise NotAvailable(f"sftpctl tenant add failed: {_tail(added.stderr)}")
    log = folder / "sftpd.log"
    group = CpuGroup.create("sftp-inbox-bench-ours" + (f"-w{workers}" if workers > 1 else ""))
    with log.open("ab") as sink:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "service.daemon", "serve", "--config", str(config), "--no-demo"],
            cwd=REPOSITORY, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
        )
    if group is not None and not group.add(daemon.pid):
        group = None
    try:
        if not wait_for_banner(port, START_TIMEOUT_SECONDS) or daemon.poll() is not None:
            raise NotAvailable(f"sftpd serve did not start: {_tail(log.read_text(errors='replace'))}")
        endpoint = Endpoint(name="ours" if workers == 1 else f"ours ({workers} workers)", port=port,
                            user=TENANT, password=password,
                            inbox=data_dir / "tenants" / TENANT / REMOTE_INBOX, pid=daemon.pid,
                            idle_processes=1 + (workers if workers > 1 else 0), cpu_group=group)
        yield OurServer(endpoint, config, data_dir, f"http://{HOST}:{api_port}", log)
    finally:
        _stop(daemon)
        if group is not None:
            group.remove()


def sftpctl(config: Path, *args: str, stdin: str | None = None,
            timeout: float = COMMAND_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
    """The operator CLI against the bench config, as a separate process like an operator's."""
    return subprocess.run([sys.executable, "-m", "service.sftpctl", "--config", str(config), *args],
                          cwd=REPOSITORY, input=stdin, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _stop(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def _tail(text: str) -> str:
    """The last line of a log or traceback: the one that says what went wrong."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-LOG_TAIL_CHARS:] if lines else "no output"

