"""The whole path as a customer and an operator meet it.

A real daemon, files uploaded with the OpenSSH client, ``sftpctl run`` as a separate process, the
report fetched back over SFTP, the failure mail in the outbox, and the ledger read through the
Transactions API.
"""

from __future__ import annotations

import asyncio
import csv
import email
import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from core.config import Settings
from core.crypto.sealed import HEADER_BYTES, MAGIC, SLOT_OFFSET
from tests.conftest import free_port
from tests.support import postgres
from tests.support.at_rest import stored_bytes
from tests.support.clients import OpenSSHClient, output_lines
from tests.support.daemon import Daemon, project_env, start_daemon

CALLS = """customer_id,call_start,call_end,calling_phone_number,agent_queue_assigned
cust-001,2026-11-20T18:02:13Z,2026-11-20T18:12:13Z,+1 8885551212,Wireless Sales
cust-002,2026-11-20T19:30:00Z,2026-11-20T19:34:30Z,+1 8885550000,Support
"""
SIGNALS = """call_start_time,calling_phone_number,name,partner_unique_id,sale_amount,description
2026/11/20T10:02:20-08:00,+1 8885551212,Sale,order-1,129.99,2yr plan
20261120113000000,+1 8885550000,Quote,q-1,,callback requested
2026/11/20T10:02:20-08:00,+1 8885551212,Sale,order-3,12.345,bad money
"""


def sftpctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.sftpctl", "--config", str(config), *args],
        check=False, cwd=config.parent, capture_output=True, text=True, timeout=120, env=project_env(),
    )


async def until_caught_up(config: Path) -> None:
    for _ in range(600):
        listed = sftpctl(config, "--json", "runs")
        assert listed.returncode == 0, listed.stderr
        runs = json.loads(listed.stdout)
        if runs and runs[-1]["status"] != "running":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the daemon's catch-up run never finished")


async def test_upload_run_report_mail_and_transactions(tmp_path: Path, settings: Settings) -> None:
    port, api_port = free_port(), free_port()
    config = tmp_path / "sftpd.toml"
    config.write_text(f'[server]\nlisten_port = {port}\n[api]\nlisten_port = {api_port}\n'
                      + postgres.config_section(settings.database.url))
    (tmp_path / "signals.csv").write_text(SIGNALS)
    (tmp_path / "calls.csv").write_text(CALLS)
    daemon = start_daemon(tmp_path, port, api_port, "--config", str(config))
    try:
        password = daemon.demo_password
        assert password
        # The daemon's catch-up run at start-up goes first: the manual run below must find the
        # files (a tenant a run is working on is left to that run).
        await until_caught_up(config)
        client = OpenSSHClient(tmp_path, port)
        # Signals first: the run must still create the calls before posting the signals.
        upload = await client.run("demo", password,
                                  ["put signals.csv in/", "mkdir in/calls", "put calls.csv in/calls/"])
        assert upload.returncode == 0, upload.stderr

        run = sftpctl(config, "run")
        assert run.returncode == 1, run.stderr  # one row was rejected: the run reports a failure
        assert "file.queued" in run.stdout and "run.finished" in run.stdout

        # Reports mirror the upload's folder: out/ for in/, out/calls/ for in/calls/.
        listing = await client.run("demo", password, ["ls -1 out", "ls -1 out/calls"])
        reports = [Path(name).name for name in output_lines(listing)]
        signals_report = next(name for name in reports if name.startswith("signals-"))
        assert any(name.startswith("calls-") for name in reports), reports
        fetched = await client.run("demo", password, [f"get out/{signals_report} report.csv"])
        assert fetched.returncode == 0, fetched.stderr
        lines = (tmp_path / "report.csv").read_text(encoding="utf-8-sig").splitlines()
        rows = list(csv.DictReader(lines[lines.index("row,status,transaction_id,error"):]))
        assert [(row["row"], row["status"]) for row in rows] == [
            ("2", "posted"), ("3", "posted"), ("4", "rejected")]
        assert "decimal" in rows[2]["error"]

        [mail_file] = (tmp_path / "var" / "mail").glob("*.eml")
        assert b"demo@example.com" not in mail_file.read_bytes()  # sealed at rest
        mail = email.message_from_bytes(stored_bytes(mail_file, tmp_path / "keys"))
        assert mail["To"] == "demo@example.com"
        assert any(part.get_filename() == signals_report for part in mail.walk())

        token = sftpctl(config, "token", "show", "demo").stdout.strip()
        answer = httpx.get(f"http://127.0.0.1:{api_port}/api/2020-10-01/transactions.json",
                           params={"include_columns": "signals"}, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        transactions = answer.json()
        kinds = [row["transaction_type"] for row in transactions]
        assert kinds == ["call", "call", "signal", "signal"]
        sale = transactions[2]["signals"][0]
        assert (sale["name"], sale["sale_amount"], transactions[2]["calling_phone_number"]) == (
            "Sale", "129.99", "+18885551212")

        uploads = json.loads(sftpctl(config, "--json", "uploads", "demo").stdout)
        assert {row["path"]: row["state"] for row in uploads} == {
            "in/signals.csv": "partly failed", "in/calls/calls.csv": "posted"}
    finally:
        assert daemon.stop() == 0


DATABASE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


async def started(tmp_path: Path, settings: Settings) -> tuple[Path, Daemon, OpenSSHClient, str]:
    """A daemon in ``tmp_path`` (keys in keys/, data in var/, the state where ``settings`` say)
    past its catch-up run."""
    port, api_port = free_port(), free_port()
    config = tmp_path / "sftpd.toml"
    config.write_text(f'[server]\nlisten_port = {port}\n[api]\nlisten_port = {api_port}\n'
                      + postgres.config_section(settings.database.url))
    daemon = start_daemon(tmp_path, port, api_port, "--config", str(config))
    assert daemon.demo_password
    await until_caught_up(config)
    return config, daemon, OpenSSHClient(tmp_path, port), daemon.demo_password


async def test_nothing_of_an_upload_is_stored_in_plaintext(tmp_path: Path, settings: Settings) -> None:
    """A unique marker in an upload, in a posted row and in a rejected one: after the run, no
    file under the data dir but the databases holds it (upload, snapshot, report, mail), while
    each of them, read through the master key, still does."""
    marker = f"MARKER-{uuid.uuid4().hex}"
    (tmp_path / "signals.csv").write_text(
        SIGNALS.replace("2yr plan", marker).replace("12.345", f"{marker}-amount"))
    config, daemon, client, password = await started(tmp_path, settings)
    try:
        upload = await client.run("demo", password, ["put signals.csv in/"])
        assert upload.returncode == 0, upload.stderr
        assert sftpctl(config, "run").returncode == 1  # the rejected row
    finally:
        assert daemon.stop() == 0
    data = tmp_path / "var"
    files = [path for path in data.rglob("*") if path.is_file() and not path.name.endswith(DATABASE_SUFFIXES)]
    holding = [str(path.relative_to(data)) for path in files if marker.encode() in path.read_bytes()]
    assert holding == []
    keys = tmp_path / "keys"
    inbox = stored_bytes(data / "tenants/demo/in/signals.csv", keys)
    [report] = (data / "tenants/demo/out").glob("signals-*-report.csv")
    [mail] = (data / "mail").glob("*.eml")
    assert marker.encode() in inbox and b"2yr plan" not in inbox
    assert f"{marker}-amount".encode() in stored_bytes(report, keys)  # the rejected row's error quotes it
    assert report.name.encode() in stored_bytes(mail, keys)
    for snapshot in (data / "staging").rglob("signals.csv"):  # kept until retention prunes it
        assert marker.encode() in stored_bytes(snapshot, keys)


async def test_a_key_rotation_keeps_every_file_readable_with_the_daemon_running(
    tmp_path: Path, settings: Settings,
) -> None:
    """Upload, run, `sftpctl keys rotate` while the daemon serves: the report is still fetched
    over SFTP, the old key is gone from keys/, and what the daemon seals next uses the new key."""
    (tmp_path / "signals.csv").write_text(SIGNALS)
    (tmp_path / "calls.csv").write_text(CALLS)
    config, daemon, client, password = await started(tmp_path, settings)
    keys, data = tmp_path / "keys", tmp_path / "var"
    try:
        assert (await client.run("demo", password, ["put signals.csv in/"])).returncode == 0
        assert sftpctl(config, "run").returncode == 1
        [report] = (data / "tenants/demo/out").glob("signals-*-report.csv")
        before = stored_bytes(report, keys)
        old_key = (keys / "master.key").read_bytes()
        old_id = json.loads(sftpctl(config, "--json", "keys", "show").stdout)["key_id"]
        assert key_id_in(report) == old_id

        rotated = sftpctl(config, "keys", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert f"master key {old_id} -> " in rotated.stdout and "the old key is deleted" in rotated.stdout
        shown = json.loads(sftpctl(config, "--json", "keys", "show").stdout)
        assert shown["key_id"] != old_id and shown["rotation_unfinished"] is False
        assert sorted(path.name for path in keys.glob("master*")) == ["master.key"]
        assert all(old_key not in path.read_bytes() for path in keys.iterdir() if path.is_file())
        assert key_id_in(report) == shown["key_id"] and stored_bytes(report, keys) == before

        fetched = await client.run("demo", password, [f"get out/{report.name} report.csv"])
        assert fetched.returncode == 0, fetched.stderr
        assert (tmp_path / "report.csv").read_bytes() == before
        # The daemon, never restarted, seals the next upload under the new key.
        assert (await client.run("demo", password, ["mkdir in/calls", "put calls.csv in/calls/"])).returncode == 0
        assert key_id_in(data / "tenants/demo/in/calls/calls.csv") == shown["key_id"]
        assert sftpctl(config, "run").returncode == 0
        assert stored_bytes(data / "tenants/demo/in/calls/calls.csv", keys) == CALLS.encode()
    finally:
        assert daemon.stop() == 0


def key_id_in(path: Path) -> str:
    """The id of the master key a sealed file's header names (bytes 24-32)."""
    with path.open("rb") as raw:
        head = raw.read(HEADER_BYTES)
    assert head.startswith(MAGIC), f"{path} is not sealed"
    return head[SLOT_OFFSET:SLOT_OFFSET + 8].hex()
