"""``/metrics`` of a real daemon after real uploads, logins and a ``sftpctl run`` in its own process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from core.clock import utcnow
from core.config import Settings
from core.db import Reader
from core.tenants import open_state
from core.uploads import UploadStore
from service.admin.figures import LiveFigures, gather
from service.admin.live import Live
from service.admin.metrics import exposition
from service.admin.snapshot import read_snapshot
from tests.service.admin.conftest import AdminDaemon
from tests.service.test_end_to_end import CALLS, SIGNALS
from tests.support.clients import OpenSSHClient, asyncssh_connect

# Every family the issue names, with its type as the text parser reads it (a counter's family
# drops the _total of its samples' name).
EXPECTED_TYPES = {
    "sftp_inbox_logins": "counter",
    "sftp_inbox_lockouts_active": "gauge",
    "sftp_inbox_sessions": "gauge",
    "sftp_inbox_logged_in_sessions": "gauge",
    "sftp_inbox_uploads": "counter",
    "sftp_inbox_upload_bytes": "counter",
    "sftp_inbox_files": "counter",
    "sftp_inbox_rows": "counter",
    "sftp_inbox_runs": "counter",
    "sftp_inbox_run_duration_seconds": "histogram",
    "sftp_inbox_outbox_pending": "gauge",
    "sftp_inbox_outbox_oldest_age_seconds": "gauge",
    "sftp_inbox_destination_responses": "counter",
    "sftp_inbox_next_run_timestamp_seconds": "gauge",
    "sftp_inbox_disk_free_bytes": "gauge",
    "sftp_inbox_build_info": "gauge",
    # Not named by the issue: when retention last went over everything, and whether it failed.
    "sftp_inbox_retention_last_pass_timestamp_seconds": "gauge",
    "sftp_inbox_retention_last_pass_problems": "gauge",
}


Values = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(admin: AdminDaemon) -> tuple[dict[str, str], Values]:
    answer = admin.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    types: dict[str, str] = {}
    values: Values = {}
    for family in text_string_to_metric_families(answer.text):
        types[family.name] = family.type
        for sample in family.samples:
            values[_key(sample)] = sample.value
    return types, values


def _key(sample: Sample) -> tuple[str, tuple[tuple[str, str], ...]]:
    return sample.name, tuple(sorted(sample.labels.items()))


def value(values: Values, name: str, **labels: str) -> float:
    return values[(name, tuple(sorted(labels.items())))]


async def until(admin: AdminDaemon, check: Callable[[Values], bool], seconds: float = 10.0) -> Values:
    """Scrape until ``check(values)`` holds (a read is reused for up to a second)."""
    for _ in range(int(seconds / 0.1)):
        _, values = scrape(admin)
        if check(values):
            return values
        await asyncio.sleep(0.1)
    raise AssertionError(f"never held; last scrape: {values}")


async def test_names_types_and_figures_after_uploads_logins_and_a_sftpctl_run(
    admin_daemon: AdminDaemon, tmp_path: Path
) -> None:
    await admin_daemon.caught_up()
    types, before = scrape(admin_daemon)
    assert {name: types.get(name) for name in EXPECTED_TYPES} == EXPECTED_TYPES
    assert all(name.startswith("sftp_inbox_") for name in types)
    assert not any("tenant" in labels for (_, pairs) in before for labels in dict(pairs))

    daemon = admin_daemon.daemon
    assert daemon.demo_password
    (tmp_path / "signals.csv").write_text(SIGNALS)
    (tmp_path / "calls.csv").write_text(CALLS)
    (tmp_path / "notes.txt").write_text("not a data file")
    client = OpenSSHClient(tmp_path, daemon.port)
    wrong = await client.run("demo", "not-the-password", ["ls"])
    assert wrong.returncode != 0
    upload = await client.run("demo", daemon.demo_password, ["put signals.csv in/", "mkdir in/calls",
                                                          "put calls.csv in/calls/", "-put notes.txt in/"])
    assert upload.returncode == 0, upload.stderr

    run = admin_daemon.sftpctl("run")  # its own process: its run must count all the same
    assert run.returncode == 1, run.stderr  # one row rejected
    after = await until(admin_daemon, lambda v: value(v, "sftp_inbox_rows_total", outcome="posted") >= 4)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("sftp_inbox_runs_total", status="finished") == 1
    assert grew("sftp_inbox_run_duration_seconds_count") == 1
    assert grew("sftp_inbox_rows_total", outcome="posted") == 4  # 2 calls, 2 signals
    assert grew("sftp_inbox_rows_total", outcome="rejected") == 1
    assert grew("sftp_inbox_files_total", state="partly_failed") == 1
    assert grew("sftp_inbox_files_total", state="posted") == 1
    assert grew("sftp_inbox_uploads_total", result="completed") == 2
    assert grew("sftp_inbox_uploads_total", result="refused") == 1
    assert grew("sftp_inbox_upload_bytes_total") == len(SIGNALS.encode()) + len(CALLS.encode())
    assert grew("sftp_inbox_logins_total", result="ok") == 1
    assert grew("sftp_inbox_logins_total", result="failed") >= 1  # ssh may try password and kbd-interactive
    assert value(after, "sftp_inbox_destination_responses_total", code_class="2xx") == 4
    assert value(after, "sftp_inbox_outbox_pending") == 0
    assert value(after, "sftp_inbox_disk_free_bytes") > 0
    assert value(after, "sftp_inbox_next_run_timestamp_seconds") > value(after, "sftp_inbox_run_duration_seconds_sum")
    # The daemon prunes when it starts: a whole pass, recorded with its time, and no tenant failed.
    pruned = await until(admin_daemon, lambda v: value(v, "sftp_inbox_retention_last_pass_timestamp_seconds") > 0)
    assert abs(value(pruned, "sftp_inbox_retention_last_pass_timestamp_seconds") - utcnow().timestamp()) < 600
    assert value(pruned, "sftp_inbox_retention_last_pass_problems") == 0
    # Logged-in sessions, from the sessions' table (every worker's and node's).
    assert value(after, "sftp_inbox_logged_in_sessions") == 0
    async with asyncssh_connect(daemon.port, "demo", daemon.demo_password):
        await until(admin_daemon, lambda v: value(v, "sftp_inbox_logged_in_sessions") == 1)
    await until(admin_daemon, lambda v: value(v, "sftp_inbox_logged_in_sessions") == 0)


def test_per_tenant_labels_when_asked(settings: Settings) -> None:
    db = open_state(settings.state_location)
    try:
        db.execute("INSERT INTO tenants (name, email, api_token, created_at, updated_at)"
                   " VALUES ('acme', 'a@example.com', 't1', '2026-01-01', '2026-01-01')")
        UploadStore(db).record("acme", "in/a.csv", 123, "0" * 64)
    finally:
        db.close()
    reader = Reader(settings.state_location, timeout_seconds=10.0)
    try:
        snapshot = read_snapshot(reader, utcnow())
    finally:
        reader.close()
    figures = gather(settings, snapshot, LiveFigures.of(Live()))
    labelled = exposition(figures, per_tenant=True).decode()
    plain = exposition(figures, per_tenant=False).decode()
    assert 'sftp_inbox_upload_bytes_total{tenant="acme"} 123.0' in labelled
    assert 'sftp_inbox_files_waiting{state="received",tenant="acme"} 1.0' in labelled
    assert "sftp_inbox_upload_bytes_total 123.0" in plain and "acme" not in plain

