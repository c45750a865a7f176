"""sftpctl, driven through its entry point against a private data dir."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.config import EMBEDDED_API_VERSION, Settings
from core.crypto import AtRest
from core.db import Database
from core.tenants import TenantStore
from core.uploads import UploadStore
from ingest import Claims, tenant_claim
from ledger.server import ApiServer
from service.context import Context
from service.sftpctl import (
    DISABLED,
    ENDED,
    EXAMPLES,
    EXIT_BROKEN_PIPE,
    EXIT_CODES,
    EXIT_EPILOG,
    LOGIN_REMOVED,
    PASSWORD_CHANGED,
    build_parser,
    main,
)
from tests.conftest import TEST_PASSWORD, free_port
from tests.sftpd.test_sessions import hold_in_another_process
from tests.support import postgres
from tests.support.at_rest import stored_text
from tests.support.daemon import project_env


def database_args(settings: Settings) -> tuple[str, ...]:
    """On PostgreSQL, ``--config`` of a file naming the test's database (a test's own config
    file has the section too); nothing on SQLite."""
    if not settings.database.url:
        return ()
    config = settings.data_dir.parent / "database.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(postgres.config_section(settings.database.url))
    return ("--config", str(config))


@pytest.fixture
def ctl(settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run sftpctl with ``args``; returns (exit code, stdout, stderr).

    In the test's folder: the default ``[server] keys_dir`` (``keys``, relative) is then the
    test's own, never the checkout's.
    """
    monkeypatch.chdir(settings.data_dir.parent)
    database = database_args(settings)  # unless the test passes a config of its own

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(["--data-dir", str(settings.data_dir), *(() if "--config" in args else database), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_add_generates_a_password_and_prints_it_once(ctl) -> None:
    code, out, _ = ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    assert code == 0 and "password: " in out
    password = out.split("password: ")[1].split()[0]
    assert len(password) >= 20
    code, out, _ = ctl("tenant", "show", "acme")
    assert code == 0 and password not in out and "ops@acme.example" in out


def test_password_from_stdin_is_not_echoed(ctl) -> None:
    code, out, _ = ctl("tenant", "add", "acme", "--email", "ops@acme.example", "--password-stdin",
                       stdin=TEST_PASSWORD + "\n")
    assert code == 0 and TEST_PASSWORD not in out


def test_list_json_and_table(ctl) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    ctl("tenant", "add", "beta", "--email", "it@beta.example")
    code, out, _ = ctl("--json", "tenant", "list")
    rows = json.loads(out)
    assert code == 0 and [row["name"] for row in rows] == ["acme", "beta"]
    code, out, _ = ctl("tenant", "list", "--json")
    assert json.loads(out) == rows
    code, out, _ = ctl("tenant", "list")
    assert out.splitlines()[0].split()[:3] == ["NAME", "EMAIL", "LOGIN"]


def test_errors_are_one_line_and_non_zero(ctl) -> None:
    code, out, err = ctl("tenant", "show", "ghost")
    assert code == 3 and err.strip() == "sftpctl: error: no tenant named 'ghost'" and out == ""
    code, _, err = ctl("tenant", "add", "Bad Name", "--email", "x@y.example")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "invalid tenant name" in err
    code, _, err = ctl("tenant", "add", "acme", "--email", "x@y.example", "--password-stdin", stdin="short\n")
    assert code == 2 and "too short" in err


def test_remove_keeps_files_and_passwd_restores_the_login(ctl, settings: Settings) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    kept = settings.tenants_dir / "acme" / "in" / "kept.csv"
    kept.write_text("a\n1\n")
    code, out, _ = ctl("tenant", "remove", "acme")
    assert code == 0 and "wait" in out
    _, out, _ = ctl("--json", "tenant", "list")
    assert json.loads(out)[0]["login"] == "removed" and kept.exists()
    code, _, _ = ctl("tenant", "passwd", "acme", "--password-stdin", stdin=TEST_PASSWORD + "\n")
    _, out, _ = ctl("--json", "tenant", "list")
    assert code == 0 and json.loads(out)[0]["login"] == "yes"


def test_purge_needs_confirmation(ctl, settings: Settings) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    code, _, err = ctl("tenant", "purge", "acme")
    assert code == 2 and "--yes" in err and (settings.tenants_dir / "acme").exists()
    code, _, _ = ctl("tenant", "purge", "acme", "--yes")
    assert code == 0 and not (settings.tenants_dir / "acme").exists()
    assert ctl("tenant", "show", "acme")[0] == 3


def test_token_show_and_rotate(ctl) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    _, first, _ = ctl("token", "show", "acme")
    _, rotated, _ = ctl("token", "rotate", "acme")
    _, shown, _ = ctl("token", "show", "acme")
    assert first.strip() != rotated.strip() == shown.strip()


async def test_remove_and_disable_stop_the_api_token_and_passwd_and_enable_restore_it(
    ctl, settings: Settings, tenants: TenantStore
) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    _, out, _ = ctl("token", "show", "acme")
    calls = f"/api/{EMBEDDED_API_VERSION}/calls.json"
    api = ApiServer(settings, tenants)
    await api.start()
    try:
        async with httpx.AsyncClient(base_url=api.url) as http:

            async def post_call(n: int) -> int:
                call = {"transaction_id": f"00000000-0000000{n}", "external_id": f"c{n}",
                        "start_time": "1435993200"}
                response = await http.post(calls, json={"call": call, "oauth_token": out.strip()})
                return response.status_code

            statuses = [await post_call(1)]
            ctl("tenant", "remove", "acme")
            statuses.append(await post_call(2))
            ctl("tenant", "passwd", "acme", "--password-stdin", stdin=TEST_PASSWORD + "\n")
            statuses.append(await post_call(3))
            ctl("tenant", "disable", "acme")
            statuses.append(await post_call(4))
            ctl("tenant", "enable", "acme")
            statuses.append(await post_call(5))
    finally:
        await api.close()

    assert statuses == [201, 403, 201, 403, 201]


def test_data_dictionary(ctl) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    assert ctl("fields", "add", "acme", "plan_type", "score")[0] == 0
    _, out, _ = ctl("--json", "fields", "list", "acme")
    assert json.loads(out) == ["plan_type", "score"]
    ctl("fields", "remove", "acme", "score")
    _, out, _ = ctl("fields", "list", "acme")
    assert out.split() == ["plan_type"]


def test_bad_config_file_is_reported(ctl, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nlisten_port = 'x'\n")
    code, _, err = ctl("--config", str(bad), "tenant", "list")
    assert code == 2 and "listen_port" in err


EXAMPLE_FEED = Path(__file__).parents[2] / "etc" / "feeds" / "orders.toml"
ORDERS = """Order ID;Phone;Ordered At;Total;Plan;Internal Note
A-000123;+1 8885551212;2016/04/11 01:00:00 PM;129.45;gold;call back
A-000124;+1 8885551213;2016/04/11 01:05:00 PM;12.345;silver;
"""


def test_new_tenant_has_the_two_default_feeds(ctl) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    code, out, _ = ctl("--json", "feed", "show", "acme")
    feeds = {row["feed"]: row for row in json.loads(out)}
    assert code == 0 and set(feeds) == {"signals", "calls"}
    assert feeds["signals"]["default"] and feeds["calls"]["folder"] == "in/calls/"


def test_feed_set_show_and_check_a_sample(ctl, tmp_path: Path) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    # The feed maps "Plan" to custom_data.plan_type, not in the data dictionary yet: refused, named.
    code, out, err = ctl("feed", "set", "acme", str(EXAMPLE_FEED))
    assert (code, out) == (2, "") and "not in the data dictionary of 'acme': plan_type;" in err
    assert "sftpctl fields add acme plan_type" in err
    ctl("fields", "add", "acme", "plan_type")
    code, out, err = ctl("feed", "set", "acme", str(EXAMPLE_FEED))
    assert code == 0, err
    _, out, _ = ctl("feed", "show", "acme")
    assert "orders" in out and "in/orders/" in out
    sample = tmp_path / "orders.csv"
    sample.write_text(ORDERS)
    # The field removed from the dictionary since: every row fails and the file is refused.
    ctl("fields", "remove", "acme", "plan_type")
    code, out, _ = ctl("check", "acme", str(sample), "--feed", "orders")
    assert code == 1 and "plan_type" in out
    ctl("fields", "add", "acme", "plan_type")
    code, out, _ = ctl("--json", "check", "acme", str(sample), "--feed", "orders")
    result = json.loads(out)
    # The file would be accepted, but one row would fail: the check says so in its exit code.
    assert code == 1 and result["file_error"] is None
    assert [error["row"] for error in result["row_errors"]] == [3]
    assert "decimal" in result["row_errors"][0]["error"]
    assert (result["rows"], result["good"], result["bad"]) == (2, 1, 1)
    first = result["requests"][0]["body"]
    assert result["requests"][0]["row"] == 2
    assert first["signal"]["partner_unique_id"] == "A-000123" and first["signal"]["name"] == "Sale"
    assert first["custom_data"] == [{"name": "plan_type", "value": "gold"}]


def test_bad_feed_file_is_refused_with_its_line(ctl, tmp_path: Path) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "orders"\ntemplate = "signals"\n\n[mapping]\nkind = "fax"\n')
    code, _, err = ctl("feed", "set", "acme", str(bad))
    assert code == 2 and f"{bad}:5:" in err
    code, _, err = ctl("feed", "set", "acme", str(tmp_path / "missing.toml"))
    assert code == 3 and "missing.toml" in err


def test_runs_uploads_and_lockouts_start_empty(ctl) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    assert ctl("runs")[1].strip() == "no runs yet"
    assert ctl("uploads", "acme")[1].strip() == "no uploads for 'acme'"
    assert ctl("lockouts")[1].strip() == "no active lockouts"
    assert ctl("uploads", "ghost")[0] == 3


def test_sessions_lists_the_sessions_every_process_holds(ctl, state_db: Database) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    assert ctl("sessions") == (0, "no sessions open\n", "")
    holder = hold_in_another_process(state_db.path, "acme", 2)  # a daemon's worker, say
    try:
        code, out, _ = ctl("--json", "sessions", "--tenant", "acme")
        assert code == 0
        assert [(row["tenant"], row["source"], row["pid"]) for row in json.loads(out)] == [
            ("acme", "198.51.100.7", holder.pid)] * 2
        code, out, _ = ctl("sessions")
        header, *lines = out.splitlines()
        assert header.split() == ["ID", "TENANT", "SOURCE", "HOST", "PID", "OPENED_AT", "AGE"]
        assert len(lines) == 2 and all(line.split()[2:5:2] == ["198.51.100.7", str(holder.pid)] for line in lines)
        assert ctl("sessions", "--tenant", "nobody")[0] == 3
    finally:
        holder.kill()
        holder.wait()
    assert json.loads(ctl("--json", "sessions")[1]) == []  # its process is gone, so are its sessions


def test_a_login_that_no_longer_holds_ends_its_sessions_everywhere(ctl, state_db: Database) -> None:
    """Disabled, password changed, login removed: each asks the processes serving the tenant's
    sessions to close them (tests/sftpd/test_sessions.py: a server does, within seconds)."""
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    ctl("tenant", "add", "beta", "--email", "ops@beta.example")

    def reasons() -> list[str | None]:
        rows = state_db.query("SELECT tenant, end_reason FROM sftpd_sessions ORDER BY id")
        return [row["end_reason"] for row in rows if row["tenant"] == "acme"]

    holders = [hold_in_another_process(state_db.path, "acme", 2), hold_in_another_process(state_db.path, "beta", 1)]
    try:
        code, out, _ = ctl("tenant", "disable", "acme")
        assert (code, out) == (0, "tenant 'acme' disabled: it cannot log in; 2 open session(s) closing within 2 s\n")
        assert reasons() == [DISABLED, DISABLED]
        code, out, _ = ctl("--json", "tenant", "passwd", "acme", "--password-stdin", stdin="another-Passw0rd!\n")
        assert json.loads(out) == {"name": "acme", "sessions_ended": 2}
        assert reasons() == [PASSWORD_CHANGED, PASSWORD_CHANGED]
        ctl("tenant", "remove", "acme")
        assert reasons() == [LOGIN_REMOVED, LOGIN_REMOVED]
        [beta] = json.loads(ctl("--json", "sessions", "--tenant", "beta")[1])
        assert ctl("sessions", "end")[0] == 2  # which ones?
        assert ctl("sessions", "end", "999999")[0] == 3
        assert ctl("sessions", "end", str(beta["id"])) == (0, "1 session(s) closing within 2 s\n", "")
        assert state_db.query("SELECT end_reason FROM sftpd_sessions WHERE tenant = 'beta'")[0][0] == ENDED
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    assert ctl("tenant", "disable", "beta")[1] == "tenant 'beta' disabled: it cannot log in\n"  # none open


def test_lockouts_show_pairs_and_unblock_and_unlock_lift_them(ctl, settings: Settings) -> None:
    from core.tenants import open_state
    from sftpd.defender import Defender

    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    db = open_state(settings.state_location)
    try:
        for _ in range(settings.defender.account_max_failures):
            Defender(db, settings.defender).record_failure("acme", "203.0.113.7")
    finally:
        db.close()
    rows = json.loads(ctl("lockouts", "--json")[1])
    assert [(row["kind"], row["key"], row["source"]) for row in rows] == [
        ("account", "acme", ""), ("pair", "acme", "203.0.113.7")]
    assert ctl("lockouts")[1].splitlines()[0].split()[:3] == ["KIND", "KEY", "SOURCE"]
    assert ctl("unblock", "203.0.113.7")[1].strip() == "source 203.0.113.7 unblocked"
    assert [row["kind"] for row in json.loads(ctl("lockouts", "--json")[1])] == ["account"]
    assert ctl("tenant", "unlock", "acme")[1].strip() == "tenant 'acme' unlocked"
    assert ctl("lockouts")[1].strip() == "no active lockouts"


def test_uploads_escape_control_and_bidi_characters_of_file_names(ctl, settings: Settings) -> None:
    from core.display import UNSAFE
    from core.tenants import open_state
    from core.uploads import UploadStore

    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    name = "in/report\u202evsc.exe\x1b[2J\x85\u2066.csv"
    db = open_state(settings.state_location)
    try:
        UploadStore(db).record("acme", name, 10, "0" * 64)
    finally:
        db.close()
    code, out, _ = ctl("uploads", "acme")
    assert code == 0 and "in/report\\u202evsc.exe\\x1b[2J\\x85\\u2066.csv" in out
    code, out, _ = ctl("uploads", "acme", "--json")
    assert json.loads(out)[0]["path"] == name
    assert not any(ord(char) in UNSAFE - {0x0A} for char in out)


class _Destination:
    """A real HTTP server on loopback standing in for the Signal API: it answers 500 to the
    rows named in ``failing`` and creates every other one."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.failing: set[str] = set()
        destination = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                wanted = body["search"]["transaction_id"]
                code = 500 if wanted in destination.failing else 201
                payload = json.dumps({"signal": {"transaction_id": f"X-{wanted}"}}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def destination():
    server = _Destination()
    yield server
    server.close()


def test_outbox_lists_a_stuck_row_then_drop_and_retry_settle_it(
    ctl, settings: Settings, tmp_path: Path, destination: _Destination,
) -> None:
    config = tmp_path / "sftpd.toml"
    config.write_text(f'data_dir = "{settings.data_dir}"\n[api]\nenabled = false\nlisten_port = {destination.port}\n'
                      "[schedule]\nstable_seconds = 0.0\n"
                      "[post]\nmax_attempts = 2\nbackoff_base_seconds = 0.01\nbackoff_max_seconds = 0.05\n"
                      "embedded_in_process = false\n"  # the fake stands in for the API over HTTP
                      + postgres.config_section(settings.database.url))
    cli = ("--config", str(config))
    ctl(*cli, "tenant", "add", "acme", "--email", "ops@acme.example")
    (settings.tenants_dir / "acme" / "in" / "s.csv").write_text(
        "transaction_id,name,partner_unique_id\nT1,Sale,1\nT2,Sale,2\nT3,Sale,3\n")
    destination.failing = {"T1"}
    assert ctl(*cli, "run")[0] == 1
    [item] = json.loads(ctl(*cli, "outbox", "--json")[1])
    assert (item["tenant"], item["file"], item["row"], item["state"], item["attempts"]) == (
        "acme", "in/s.csv", 2, "pending", 2)
    assert item["error"] == "HTTP 500 Internal Server Error" and item["age_seconds"] >= 0
    table = ctl(*cli, "outbox")[1].splitlines()
    assert table[0].split()[:6] == ["ID", "TENANT", "FILE", "ROW", "STATE", "ATTEMPTS"]
    assert "in/s.csv" in table[1] and "HTTP 500" in table[1]
    [upload] = json.loads(ctl(*cli, "uploads", "acme", "--json")[1])
    assert (upload["state"], upload["posted"], upload["pending"]) == ("processing", 2, 1)

    # Dropping a tenant's rows needs --yes; the next run finishes the file with the reason.
    code, _, err = ctl(*cli, "outbox", "drop", "--tenant", "acme")
    assert code == 2 and "--yes" in err
    assert ctl(*cli, "outbox", "drop", "--tenant", "acme", "--yes")[1].startswith("1 row(s) dropped")
    assert ctl(*cli, "outbox")[1].strip() == "no stuck rows"
    ctl(*cli, "run")
    [upload] = json.loads(ctl(*cli, "uploads", "acme", "--json")[1])
    assert (upload["state"], upload["posted"], upload["failed"]) == ("partly failed", 2, 1)
    assert "dropped by the operator" in stored_text(upload["report"], settings, "utf-8-sig")

    # Retried by id once the destination takes it: the file is processed again and posted.
    destination.failing = set()
    code, out, _ = ctl(*cli, "outbox", "retry", str(item["id"]))
    assert code == 0 and out.startswith("1 row(s) back to pending")
    assert ctl(*cli, "run")[0] == 0
    [upload] = json.loads(ctl(*cli, "uploads", "acme", "--json")[1])
    assert (upload["state"], upload["posted"], upload["failed"]) == ("posted", 3, 0)
    code, _, err = ctl(*cli, "outbox", "retry", str(item["id"]))
    assert code == 4 and "is posted" in err
    assert ctl(*cli, "outbox", "retry")[0] == 2


def _transactions(config: Path, token: str) -> list[dict[str, object]]:
    """The tenant's transactions as a Transactions API client reads them."""
    import asyncio

    import httpx

    from core.config import load_settings
    from ledger.server import ApiServer
    from service.context import Context

    async def read() -> list[dict[str, object]]:
        context = Context(load_settings(config))
        server = ApiServer(context.settings, context.tenants)
        await server.start()
        try:
            async with httpx.AsyncClient() as client:
                answer = await client.get(f"{server.url}/api/2020-10-01/transactions.json",
                                          headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            return list(answer.json())
        finally:
            await server.close()
            context.close()

    return asyncio.run(read())


def _runs_at_once(settings: Settings, tmp_path: Path) -> Path:
    """A settings file for the test's data dir whose runs take files at once (no wait for a
    file to stay unchanged)."""
    config = tmp_path / "sftpd.toml"
    config.write_text(f'data_dir = "{settings.data_dir}"\n[api]\nlisten_port = {free_port()}\n'
                      "[schedule]\nstable_seconds = 0.0\n" + postgres.config_section(settings.database.url))
    return config


def test_purge_removes_everything_so_a_new_tenant_of_the_same_name_starts_empty(
    ctl, settings: Settings, tmp_path: Path,
) -> None:
    config = _runs_at_once(settings, tmp_path)
    cli = ("--config", str(config))
    ctl(*cli, "tenant", "add", "acme", "--email", "ops@acme.example")
    inbox = settings.tenants_dir / "acme" / "in"
    (inbox / "calls").mkdir()
    (inbox / "calls" / "calls.csv").write_text(
        "customer_id,call_start,call_end,calling_phone_number,agent_queue_assigned\n"
        "cust-001,2026-11-20T18:02:13Z,2026-11-20T18:12:13Z,+1 8885551212,Wireless Sales\n")
    (inbox / "signals.csv").write_text(
        "call_start_time,calling_phone_number,name,partner_unique_id\n"
        "2026/11/20T10:02:20-08:00,+1 8885551212,Sale,order-1\n")
    assert ctl(*cli, "run")[0] == 0
    old_token = ctl(*cli, "token", "show", "acme")[1].strip()
    assert [row["transaction_type"] for row in _transactions(config, old_token)] == ["call", "signal"]
    staging = settings.data_dir / "staging" / "acme"
    assert any(staging.iterdir())

    assert ctl(*cli, "tenant", "purge", "acme", "--yes")[0] == 0
    ctl(*cli, "tenant", "add", "acme", "--email", "new@acme.example")
    new_token = ctl(*cli, "token", "show", "acme")[1].strip()
    assert _transactions(config, new_token) == []
    assert not staging.exists()
    assert ctl(*cli, "uploads", "acme")[1].strip() == "no uploads for 'acme'"
    assert ctl(*cli, "outbox")[1].strip() == "no stuck rows"
    from core.tenants import open_state
    db = open_state(settings.state_location)
    try:
        for table in ("ingest_staged", "ingest_outbox", "ingest_rows", "ingest_feeds"):
            assert db.query_one(f"SELECT COUNT(*) AS n FROM {table}")["n"] == 0, table
    finally:
        db.close()
    # The new tenant's own upload of the same calls is a new call, not the old one found again.
    (inbox / "calls").mkdir()
    (inbox / "calls" / "calls.csv").write_text(
        "customer_id,call_start,call_end,calling_phone_number,agent_queue_assigned\n"
        "cust-001,2026-11-20T18:02:13Z,2026-11-20T18:12:13Z,+1 8885551212,Wireless Sales\n")
    assert ctl(*cli, "run")[0] == 0
    [call] = _transactions(config, new_token)
    assert call["transaction_type"] == "call" and call.get("corrects_transaction_id") in (None, "")


# Exit codes: one real command for each, as README and `sftpctl --help` document them.


def test_exit_1_when_the_command_ran_but_its_work_failed(ctl, tmp_path: Path) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    notes = tmp_path / "notes.txt"
    notes.write_text("name\nSale\n")
    code, out, err = ctl("--json", "check", "acme", str(notes))
    assert code == 1 and json.loads(out)["file_error"] and err == ""


def test_exit_2_for_a_wrong_argument_setting_or_value(ctl, tmp_path: Path) -> None:
    code, _, err = ctl("tenant", "add", "acme", "--email", "not-an-address")
    assert (code, err) == (2, "sftpctl: error: invalid e-mail address 'not-an-address'\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("[schedule]\nhours = [25]\n")
    code, _, err = ctl("--config", str(bad), "run")
    assert code == 2 and "schedule.hours: 25" in err
    code, out, err = ctl("tenant", "frobnicate")  # argparse's own usage errors exit 2 as well
    assert (code, out) == (2, "") and err.startswith("usage: sftpctl tenant")
    assert err.splitlines()[-1].startswith("sftpctl tenant: error: argument ACTION: invalid choice: 'frobnicate'")
    code, out, err = ctl("--json", "tenant", "frobnicate")
    assert (code, out) == (2, "") and json.loads(err)["error"]["type"] == "usage"
    assert "invalid choice: 'frobnicate'" in json.loads(err)["error"]["message"]


def test_exit_3_when_what_is_named_does_not_exist(ctl, tmp_path: Path) -> None:
    assert ctl("token", "show", "ghost")[:2] == (3, "")
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    code, _, err = ctl("feed", "show", "acme", "nope")
    assert code == 3 and "has no feed named 'nope'" in err
    code, _, err = ctl("outbox", "retry", "999")
    assert (code, err) == (3, "sftpctl: error: no outbox item 999\n")


def test_exit_4_when_the_state_forbids_it(ctl, settings: Settings) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    code, _, err = ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    assert (code, err) == (4, "sftpctl: error: tenant 'acme' already exists\n")
    claims = Claims(Database(settings.state_location))
    with claims.held(tenant_claim("acme"), run_id=12):  # a run works on the tenant
        code, out, err = ctl("--json", "run", "--tenant", "acme")
        assert code == 4 and "tenant 'acme' is being processed by run 12" in err
        assert out == "" and json.loads(err)["error"]["type"] == "conflict"
        code, _, err = ctl("tenant", "purge", "acme", "--yes")
        assert code == 4 and "tenant 'acme' is being processed by run 12" in err
    assert ctl("tenant", "purge", "acme", "--yes")[0] == 0


def test_exit_70_for_an_unexpected_error_one_line_then_the_log(ctl, settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    settings.state_db.write_bytes(b"not a database, but a file in its place" * 100)
    sqlite = ("--config", str(settings.data_dir / "sqlite.toml"))  # the state in state.db, on either engine
    Path(sqlite[1]).write_text("")
    code, out, err = ctl(*sqlite, "tenant", "list")
    line, log, *rest = err.splitlines()
    assert code == 70 and rest == []
    assert line == ("sftpctl: error: unexpected DatabaseError: file is not a database"
                    " (traceback in the log line below)")
    entry = json.loads(log)
    assert (entry["level"], entry["event"], entry["command"]) == ("error", "sftpctl.crashed", "tenant list")
    assert entry["exception"].startswith("Traceback") and "sqlite3.DatabaseError" in entry["exception"]
    # With --json: the error as JSON, then the same log line; stdout empty.
    code, out, err = ctl(*sqlite, "--json", "tenant", "list")
    line, log, *rest = err.splitlines()
    assert (code, out, rest) == (70, "", [])
    assert json.loads(line) == {"error": {"type": "internal", "exit_code": 70,
                                          "message": "unexpected DatabaseError: file is not a database"}}
    assert json.loads(log)["event"] == "sftpctl.crashed"


def test_exit_130_when_interrupted(settings: Settings) -> None:
    """SIGINT while ``--password-stdin`` waits for its line: no traceback, the usual 130.

    Started with SIGINT at its default: a suite run as a background job of a script inherits
    SIGINT ignored (POSIX: a non-interactive shell's ``&`` commands ignore it), and sftpctl,
    rightly, would keep ignoring it.
    """
    command = ["env", "--default-signal=INT", sys.executable, "-m", "service.sftpctl",
               "--data-dir", str(settings.data_dir), *database_args(settings), "--json",
               "tenant", "add", "acme", "--email", "ops@acme.example", "--password-stdin"]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=settings.data_dir.parent) as process:  # its keys dir is the test's
        wchan = Path(f"/proc/{process.pid}/wchan")
        deadline = time.monotonic() + 20
        while "pipe_read" not in wchan.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)  # until it blocks reading stdin, its SIGINT handler long installed
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    assert (process.returncode, out) == (130, ""), err
    assert json.loads(err) == {"error": {"type": "interrupted", "message": "interrupted", "exit_code": 130}}


def test_json_error_shape_and_names_escaped_as_elsewhere(ctl, tmp_path: Path) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    spoof = tmp_path / "feed\u202elmot.\x1b[2J.toml"  # a bidi override, a screen clear
    code, out, err = ctl("--json", "feed", "set", "acme", str(spoof))
    assert (code, out) == (3, "")
    assert json.loads(err) == {"error": {"type": "not_found", "exit_code": 3,
                                         "message": f"{spoof}: No such file or directory"}}
    assert len(err.splitlines()) == 1 and "\u202e" not in err and "\x1b" not in err
    assert "feed\\u202elmot.\\u001b[2J.toml" in err  # JSON's own escapes, as print_json writes them
    code, out, err = ctl("feed", "set", "acme", str(spoof))
    assert err == f"sftpctl: error: {tmp_path}/feed\\u202elmot.\\x1b[2J.toml: No such file or directory\n"


def test_help_documents_every_exit_code_and_readme_too() -> None:
    epilog = build_parser().format_help()
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert EXIT_EPILOG in epilog
    for code, kind in [*EXIT_CODES.values(), (70, "internal"), (130, "interrupted")]:
        assert f"\n  {code:<4} {kind}:" in EXIT_EPILOG or f"\n  {code:<4} {kind}\n" in EXIT_EPILOG + "\n"
        assert f"| {code} | `{kind}` |" in readme
    assert f"\n  {EXIT_BROKEN_PIPE}  stdout closed" in EXIT_EPILOG and f"| {EXIT_BROKEN_PIPE} | |" in readme


# The shortcuts operators copy: one command a line, each one sftpctl understands.

ROOT = Path(__file__).parents[2]


def documented_commands() -> list[str]:
    """Every sftpctl command line of README's shell blocks, of --help's examples, and those
    etc/feeds/*.toml name in backquotes; without the program name and the comment."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith(".venv/bin/sftpctl ")]
    lines += [line.strip() for line in EXAMPLES.splitlines()[1:]]
    for feed in sorted((ROOT / "etc" / "feeds").glob("*.toml")):
        lines += re.findall(r"`(sftpctl [^`]*)`", feed.read_text(encoding="utf-8"))
    return [line.split(" #")[0].split(maxsplit=1)[1].strip() for line in lines]


def test_every_documented_command_is_one_command_that_sftpctl_parses() -> None:
    commands = documented_commands()
    assert len(commands) > 30 and "feed remove acme orders" in commands
    for command in commands:
        # `a | b | c` shortcuts were pasted as shell pipes (and disabled a tenant).
        assert "|" not in command and "[" not in command, command
        build_parser().parse_args(shlex.split(command))  # raises ArgumentsError if it does not parse
    feeds_text = "".join(path.read_text() for path in (ROOT / "etc" / "feeds").glob("*.toml"))
    assert "sftpctl fields add" in feeds_text and "dictionary add" not in feeds_text


def test_help_shows_the_examples_one_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and EXAMPLES in out


def test_a_reader_that_goes_away_ends_the_command_quietly_with_141(
    settings: Settings, tenants: TenantStore, uploads: UploadStore
) -> None:
    tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    for n in range(3000):  # some 400 KB of table: far more than a pipe holds
        uploads.record("acme", f"in/file-{n:05}.csv", n, "0" * 64)
    command = [sys.executable, "-m", "service.sftpctl", "--data-dir", str(settings.data_dir),
               *database_args(settings), "uploads", "acme", "--limit", "5000"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=project_env(),
                          cwd=settings.data_dir.parent) as process:  # its keys dir (keys) is the test's
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()  # as `| head -1` does once it has its line
        err = process.stderr.read()
        process.wait(timeout=60)
    assert first.split()[:2] == [b"ID", b"PATH"]
    assert (process.returncode, err) == (EXIT_BROKEN_PIPE, b"")


def test_feed_remove_forgets_a_set_feed_and_refuses_what_it_cannot(ctl, tmp_path: Path) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    ctl("fields", "add", "acme", "plan_type")
    assert ctl("feed", "set", "acme", str(EXAMPLE_FEED), "--default")[0] == 0
    code, out, err = ctl("feed", "remove", "acme", "orders")
    assert code == 0, err
    assert "files directly in in/ go to feed 'signals' now" in out
    _, out, _ = ctl("--json", "feed", "show", "acme")
    feeds = {row["feed"]: row for row in json.loads(out)}
    assert set(feeds) == {"signals", "calls"} and feeds["signals"]["default"]
    code, _, err = ctl("feed", "remove", "acme", "orders")
    assert code == 3 and "has no feed named 'orders'" in err
    code, _, err = ctl("feed", "remove", "acme", "calls")
    assert code == 2 and "cannot be removed" in err
    # A set feed that replaced a shipped one gives the shipped one back.
    calls = tmp_path / "calls.toml"
    calls.write_text('name = "calls"\ntemplate = "calls"\n[mapping]\nkind = "call"\nunmapped = "ignore"\n')
    assert ctl("feed", "set", "acme", str(calls))[0] == 0
    code, out, _ = ctl("feed", "remove", "acme", "calls")
    assert code == 0 and "the shipped feed of that name is back" in out


def test_feed_remove_is_refused_while_files_of_the_feed_wait(ctl, settings: Settings) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    ctl("fields", "add", "acme", "plan_type")
    ctl("feed", "set", "acme", str(EXAMPLE_FEED))
    context = Context(settings)
    try:
        waiting = settings.tenants_dir / "acme" / "in" / "orders" / "day.csv"
        waiting.parent.mkdir(parents=True)
        waiting.write_text(ORDERS)
        digest = hashlib.sha256(waiting.read_bytes()).hexdigest()
        upload = context.uploads.record("acme", "in/orders/day.csv", waiting.stat().st_size, digest)
        context.ingest.stager.stage(upload, waiting)
    finally:
        context.close()
    code, out, err = ctl("--json", "feed", "remove", "acme", "orders")
    error = json.loads(err)["error"]
    assert (code, out, error["type"]) == (4, "", "conflict")
    assert "1 file(s) of feed 'orders' wait for the next run (e.g. in/orders/day.csv)" in error["message"]


def test_run_without_the_daemon_says_it_serves_the_api_itself(ctl, settings: Settings, tmp_path: Path) -> None:
    """Only when it posts to the embedded API over HTTP; by default it writes in process."""
    port = free_port()  # nothing listens there: the daemon is not running
    config = tmp_path / "sftpd.toml"
    database = postgres.config_section(settings.database.url)
    config.write_text(f"[api]\nlisten_port = {port}\n{database}")
    code, out, err = ctl("--config", str(config), "run")
    assert code == 0 and "serves the API itself" not in out, err
    config.write_text(f"[api]\nlisten_port = {port}\n[post]\nembedded_in_process = false\n{database}")
    code, out, err = ctl("--config", str(config), "run")
    assert code == 0, err
    assert (f"the daemon is not running (nothing answers on 127.0.0.1:{port}):"
            " this run serves the API itself, on http://127.0.0.1:") in out
    code, out, _ = ctl("--config", str(config), "--json", "run")  # stdout is the summary alone
    assert code == 0 and "run" in json.loads(out)


def test_tenant_retention_sets_clears_and_shows_the_rules_in_force(ctl) -> None:
    ctl("tenant", "add", "acme", "--email", "ops@acme.example")
    code, out, _ = ctl("tenant", "retention", "acme", "--upload-days", "7", "--rejected-days", "0")
    assert code == 0
    assert re.search(r"upload days\s+7 \(tenant\)", out) and re.search(r"report days\s+90 \(installation\)", out)
    shown = json.loads(ctl("--json", "tenant", "show", "acme")[1])
    assert shown["retention"] == {"upload_days": 7, "report_days": 90, "rejected_days": 0,
                                  "own": ["upload_days", "rejected_days"]}
    assert re.search(r"rejected days\s+0 \(tenant\)", ctl("tenant", "show", "acme")[1])
    cleared = json.loads(ctl("--json", "tenant", "retention", "acme", "--upload-days", "default")[1])
    assert (cleared["upload_days"], cleared["own"]) == (30, ["rejected_days"])
    assert json.loads(ctl("--json", "tenant", "retention", "acme", "--clear")[1])["own"] == []
    code, _, err = ctl("tenant", "retention", "acme", "--report-days", "-1")
    assert code == 2 and "report_days" in err
    assert ctl("tenant", "retention", "nobody", "--report-days", "1")[0] == 3


def test_prune_prints_what_it_deletes_and_a_dry_run_deletes_nothing(
    ctl, settings: Settings, tmp_path: Path,
) -> None:
    config = _runs_at_once(settings, tmp_path)
    cli = ("--config", str(config))
    calls = ("customer_id,call_start,call_end,calling_phone_number,agent_queue_assigned\n"
             "cust-001,2026-11-20T18:02:13Z,2026-11-20T18:12:13Z,+1 8885551212,Wireless Sales\n")
    for name in ("acme", "beta"):
        ctl(*cli, "tenant", "add", name, "--email", f"ops@{name}.example")
        (settings.tenants_dir / name / "in" / "calls").mkdir()
        (settings.tenants_dir / name / "in" / "calls" / "calls.csv").write_text(calls)
    ctl(*cli, "tenant", "retention", "acme", "--upload-days", "0")
    assert ctl(*cli, "run")[0] == 0
    upload = settings.tenants_dir / "acme" / "in" / "calls" / "calls.csv"

    code, out, _ = ctl(*cli, "prune", "--dry-run")
    assert code == 0 and str(upload) in out and "upload_days = 0" in out
    assert "would delete: 1 snapshot, 1 upload;" in out and upload.exists()

    code, out, _ = ctl(*cli, "--json", "prune")
    result = json.loads(out)
    assert code == 0 and result["counts"] == {"snapshot": 1, "upload": 1} and not result["dry_run"]
    assert [item["path"] for item in result["deleted"] if item["what"] == "upload"] == [str(upload)]
    assert not upload.exists() and (settings.tenants_dir / "beta" / "in" / "calls" / "calls.csv").exists()
    # The history keeps the upload, the ledger its call.
    [history] = json.loads(ctl(*cli, "--json", "uploads", "acme")[1])
    assert (history["path"], history["state"]) == ("in/calls/calls.csv", "posted")
    token = ctl(*cli, "token", "show", "acme")[1].strip()
    assert [row["transaction_type"] for row in _transactions(config, token)] == ["call"]
    assert ctl(*cli, "prune", "--tenant", "acme")[1].startswith("deleted: no file;")
    assert ctl(*cli, "prune", "--tenant", "nobody")[0] == 3


def test_keys_show_rotate_and_decrypt(ctl, settings: Settings) -> None:
    """The master key's id; a rotation that rewraps a stored file (the same content read back
    by `keys decrypt`); a second rotation while one runs is a conflict (exit 4)."""
    at_rest = AtRest.for_data_dir(settings.server.keys_dir, settings.data_dir)
    report = settings.data_dir / "tenants" / "acme" / "out" / "r.csv"
    report.parent.mkdir(parents=True)
    at_rest.write_bytes(report, b"row,status\n2,posted\n")
    code, out, _ = ctl("--json", "keys", "show")
    shown = json.loads(out)
    assert code == 0 and shown["key_id"] == at_rest.keyring.current.key_id.hex()
    assert shown["master_key"] == "keys/master.key"  # [server] keys_dir's default, in the test's folder

    code, out, err = ctl("keys", "rotate")
    assert code == 0, err
    assert "2 file(s) rewrapped" in out and shown["key_id"] in out  # the report and the key check
    assert json.loads(ctl("--json", "keys", "show")[1])["key_id"] != shown["key_id"]
    code, out, _ = ctl("keys", "decrypt", str(report))
    assert (code, out) == (0, "row,status\n2,posted\n")
    assert ctl("keys", "decrypt", str(report.with_name("none.csv")))[0] == 3

    lock = os.open(settings.server.keys_dir / "rotation.lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, _, err = ctl("keys", "rotate")
        assert code == 4 and "already running" in err
    finally:
        os.close(lock)


def test_a_lost_master_key_stops_every_command_that_needs_it_naming_the_file(ctl, settings: Settings) -> None:
    AtRest.for_data_dir(settings.server.keys_dir, settings.data_dir)
    (settings.server.keys_dir / "master.key").unlink()
    code, _, err = ctl("keys", "show")
    assert code == 2 and "master key keys/master.key is missing" in err and "backup" in err
    assert not (settings.server.keys_dir / "master.key").exists()
