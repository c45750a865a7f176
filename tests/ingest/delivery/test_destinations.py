"""The embedded ledger written in process answers every row as the HTTP API does.

The same calls, lookup rows and signals go into two data dirs: one posted over HTTP to the real
embedded API (rate limits off), one written in bulk in process. Every row's status, transaction
id and error, and every ledger transaction with its correction, must be equal.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.db import Database
from core.passwords import PasswordHasher
from core.tenants import TenantStore, open_state
from core.uploads import UploadStore
from ingest import sandbox
from ingest.delivery import destinations
from ingest.delivery.destinations import EmbeddedLedger
from ingest.delivery.outbox import Outbox, OutboxItem
from ingest.pipeline import Ingest
from ingest.sandbox import Worker
from ingest.sandbox import start_limited as real_start_limited
from tests.conftest import TEST_PASSWORD, free_port
from tests.ingest.conftest import drop
from tests.support import postgres

LOOKUP_FEED = 'name = "accounts"\ntemplate = "lookup"\n[mapping]\nkind = "lookup"\ntable = "accounts"\n'

CALLS = """customer_id,call_start,call_end,calling_phone_number,agent_queue_assigned
cust-1,2026-11-20T18:00:00Z,2026-11-20T18:10:00Z,+1 8885550001,Sales
cust-2,2026-11-20T18:30:00Z,2026-11-20T18:40:00Z,+1 8885550002,Sales
cust-3,2026-11-20T19:00:00Z,2026-11-20T19:05:00Z,+1 8885550003,Support
cust-2,2026-11-20T18:30:00Z,2026-11-20T18:40:00Z,+1 8885550002,Sales
cust-3,2026-11-20T19:00:00Z,2026-11-20T19:06:00Z,+1 8885550003,Support
"""
LOOKUP = """primary_key,secondary_key,tier
+1 8885550001,,gold
+1 8885550009,,silver
+1 8885550001,,gold
+1 8885550002,,bronze
"""
SIGNALS = """call_start_time,calling_phone_number,name,partner_unique_id,description,advertiser_id_from_network
2026-11-20T18:00:05Z,+1 8885550001,Sale,o-1,first,
2026-11-20T18:30:05Z,+1 8885550002,sale,o-2,second,
2026-11-20T18:00:05Z,+1 8885550001,SALE,o-1,first corrected,
2026-11-20T18:30:05Z,+1 8885550002,Sale,o-2,second,
2026-11-20T23:00:00Z,+1 8885550077,Sale,o-9,no such call,
2026-11-20T19:00:05Z,+1 8885550003,Sale,o-3,unknown advertiser,adv-nope
2026-11-20T19:00:05Z,+1 8885550003,Quote,,,
"""
FILES = {"in/calls/calls.csv": CALLS, "in/accounts/lookup.csv": LOOKUP, "in/signals.csv": SIGNALS}


@dataclass
class DataDir:
    settings: Settings
    db: Database
    tenants: TenantStore
    uploads: UploadStore
    ingest: Ingest


def _data_dir(root: Path, **changes: Any) -> DataDir:
    settings = Settings(data_dir=root / "var").replace(
        server__keys_dir=root / "keys", server__listen_port=free_port(), api__listen_port=free_port(),
        schedule__stable_seconds=0.0, **changes)
    db = open_state(settings.state_location)
    tenants = TenantStore(db, settings.tenants_dir, PasswordHasher(settings.passwords))
    tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    tenants.add_fields("acme", ["tier"])
    uploads = UploadStore(db)
    ingest = Ingest(settings, db, tenants, uploads)
    ingest.feeds.set("acme", LOOKUP_FEED)
    return DataDir(settings, db, tenants, uploads, ingest)


@pytest.fixture
async def both(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[DataDir, DataDir]]:
    """Two data dirs, each with its own state and ledger: a database of its own each when the
    session runs on PostgreSQL."""
    from ledger.server import ApiServer

    server_pg = request.getfixturevalue("postgres_server") if postgres.wanted() else None
    urls = [server_pg.create_database() for _ in range(2)] if server_pg is not None else ["", ""]
    http = _data_dir(tmp_path / "http", api__rate_limit_requests=0, post__rate_limit_requests=100_000,
                     post__embedded_in_process=False, database__url=urls[0])
    local = _data_dir(tmp_path / "local", database__url=urls[1])
    server = ApiServer(http.settings, http.tenants)
    await server.start()
    try:
        yield http, local
    finally:
        await server.close()
        for side in (http, local):
            await side.ingest.aclose()
            side.db.close()
        if server_pg is not None:
            for url in urls:
                server_pg.drop_database(url)


async def _post_all(side: DataDir) -> None:
    for relative, content in FILES.items():
        upload, path = drop(side.tenants, side.uploads, "acme", relative, content)
        await side.ingest.stage(upload, path)
    await side.ingest.run()


async def _pages(items: Sequence[OutboxItem], rows: int) -> AsyncIterator[Sequence[OutboxItem]]:
    for start in range(0, len(items), rows):
        yield items[start:start + rows]


def _outcomes(side: DataDir) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in side.db.query(
        "SELECT s.path, o.row_number, o.state, o.status_code, o.transaction_id, o.error FROM ingest_outbox o"
        " JOIN ingest_staged s ON s.upload_id = o.upload_id ORDER BY s.path, o.row_number")]


def _ledger(side: DataDir) -> list[tuple[Any, ...]]:
    """Every transaction, without the times of writing (a signal's default occurred_at too)."""
    ledger = Database(side.settings.ledger_location)
    try:
        rows = ledger.query("SELECT seq, tenant, transaction_type, corrects_seq, record FROM transactions ORDER BY seq")
    finally:
        ledger.close()
    shown = []
    for seq, tenant, kind, corrects, text in rows:
        record = json.loads(text)
        if record["signal"]:
            record["signal"].pop("occurred_at")
        shown.append((seq, tenant, kind, corrects, record))
    return shown


async def test_every_row_gets_the_answer_the_http_api_gives(both: tuple[DataDir, DataDir]) -> None:
    http, local = both
    await _post_all(http)
    await _post_all(local)
    outcomes = _outcomes(local)
    assert outcomes == _outcomes(http)
    assert {row[3] for row in outcomes} == {200, 201, 403, 404}  # every kind of answer was compared
    assert {row[0] for row in outcomes if row[3] == 200} == set(FILES)  # updates in every file
    assert any("UnauthorizedAdvertiser" in row[5] for row in outcomes)
    ledger = _ledger(local)
    assert ledger == _ledger(http)
    assert any(row[3] is not None for row in ledger if row[2] == "signal")  # a signal correction
    assert any(row[3] is not None for row in ledger if row[2] == "call")  # a call correction
    assert any(row[2] == "post_call_event" for row in ledger)  # lookup data applied to calls


@pytest.mark.parametrize("child_fails", [False, True])
async def test_rows_written_by_children_chunk_by_chunk_get_the_same_answers(
    both: tuple[DataDir, DataDir], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    child_fails: bool,
) -> None:
    """Batches of two rows from pages of three, in chunks of one batch, then two, then up to
    four, each read and written by a child of its own, across pages too. A child killed once it
    answered its first batch (it may have committed more) leaves the batches it did not answer
    to this process, which the ledger answers from memory where the child committed them, and
    says so."""
    http, local = both
    monkeypatch.setattr(local.ingest.processor, "settings", local.settings.replace(post__embedded_batch_rows=2))
    local.ingest.processor.page_rows = 3
    children: list[int] = []

    def start_limited(function: Any, job: Any, limits: Any, task: str) -> Worker:
        children.append(sum(map(len, job.batches)))
        worker = real_start_limited(function, job, limits, task)
        if child_fails:
            receive = worker.receive

            def receive_then_kill() -> Any:
                answers = receive()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid or 0, signal.SIGKILL)
                return answers

            monkeypatch.setattr(worker, "receive", receive_then_kill)
        return worker

    monkeypatch.setattr(destinations, "start_limited", start_limited)
    await _post_all(http)
    await _post_all(local)
    assert _outcomes(local) == _outcomes(http)
    assert _ledger(local) == _ledger(http)
    assert children[:3] == [2, 3, 6]  # one batch; two (a page's short one among them); four
    assert ("delivery.writer_failed" in caplog.text) == child_fails


async def test_a_batch_replayed_after_a_crash_between_the_two_commits_changes_nothing(
    both: tuple[DataDir, DataDir],
) -> None:
    _, local = both
    await _post_all(local)
    before, ledger = _outcomes(local), _ledger(local)
    # The ledger committed, the outbox marks did not: every row is pending again.
    local.db.execute("UPDATE ingest_outbox SET state = 'pending', status_code = NULL, transaction_id = NULL,"
                     " error = ''")
    local.db.execute("DELETE FROM ingest_rows WHERE status != 'rejected'")
    items = local.ingest.outbox.pending(["acme"])
    token = local.tenants.get("acme").api_token
    report = await EmbeddedLedger(local.settings, local.tenants, local.ingest.outbox, batch_rows=3).deliver(
        _pages(items, 4), lambda item: token)
    assert (report.posted, report.failed) == (sum(r[2] == "posted" for r in before),
                                              sum(r[2] == "failed" for r in before))
    assert _outcomes(local) == before  # the same answers, 201 included
    assert _ledger(local) == ledger  # and not one transaction more


@pytest.mark.parametrize("batch_rows", [None, 2])
async def test_a_refused_token_leaves_the_tenants_rows_pending_and_writes_nothing(
    both: tuple[DataDir, DataDir], batch_rows: int | None,
) -> None:
    """In process (one chunk), and by children (batches of two: chunks of one, two and four
    batches), where the first batch ends the stream and the children reading ahead are stopped."""
    _, local = both
    await _post_all(local)
    ledger = _ledger(local)
    local.db.execute("UPDATE ingest_outbox SET state = 'pending'")
    items = local.ingest.outbox.pending(["acme"])
    report = await EmbeddedLedger(local.settings, local.tenants, local.ingest.outbox, batch_rows).deliver(
        _pages(items, len(items)), lambda item: "not-a-token")
    assert report.refused == {"acme"} and report.posted == 0
    assert report.left_pending == (batch_rows or len(items))  # the rows of the batch that ended the stream
    assert [item.id for item in local.ingest.outbox.pending(["acme"])] == [item.id for item in items]
    assert _ledger(local) == ledger


async def test_a_batch_commits_with_its_outbox_marks_where_one_database_holds_both(
    both: tuple[DataDir, DataDir], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The outbox fails as a batch is marked. On PostgreSQL (state and ledger in one database)
    the batch's ledger transaction is the marks' too: nothing of it stays. On SQLite (two files)
    the ledger has committed first: its rows stay, the outbox rows stay pending, and the next run
    is answered from the ledger's memory. Either way the next run ends as the HTTP API does."""
    http, local = both
    await _post_all(http)

    def refuse(outbox: Outbox, settlements: Any) -> None:
        raise RuntimeError("the outbox cannot be written")

    monkeypatch.setattr(Outbox, "settle", refuse)
    with contextlib.suppress(RuntimeError):
        await _post_all(local)
    one_database = postgres.wanted()
    assert (_ledger(local) == []) == one_database
    assert local.db.query_one("SELECT count(*) FROM ingest_outbox WHERE state != 'pending'")[0] == 0  # type: ignore[index]
    monkeypatch.undo()
    await local.ingest.run()
    assert _outcomes(local) == _outcomes(http)
    assert _ledger(local) == _ledger(http)


def test_the_run_names_the_writer_without_loading_the_ledgers_schemas() -> None:
    """A run's process names ``write_chunk`` to start each child; the ledger's modules (pydantic's
    schemas among them, 0.12 s at the start of every delivery) load in the fork server."""
    code = ("import sys, ingest.delivery.ledger_writes, ingest.sandbox; print(sorted("
            "name for name in ('pydantic', 'ledger.plans', 'ledger.schemas') if name in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[3])
    assert shown.stdout.strip() == "[]"
    assert "ledger.plans" in sandbox.PRELOAD  # the children have them from the fork server
