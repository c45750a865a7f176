"""The facade: catch-up once, the serving loop, runs side by side under tenant claims, listings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.config import Settings
from core.db import Database
from core.tenants import Tenant, TenantStore
from core.uploads import UploadStore
from ingest.claims import ClaimHeld
from ingest.pipeline import Ingest
from ingest.store import Trigger
from tests.conftest import TEST_PASSWORD
from tests.ingest.conftest import FakeApi, drop, stall
from tests.support import postgres

SIGNALS = "transaction_id,name,partner_unique_id\nT1,Sale,1\nT2,Sale,2\n"
SIX_AM_PDT = datetime(2026, 3, 8, 13, tzinfo=UTC)


async def test_a_missed_slot_runs_once_at_start_up(ingest: Ingest) -> None:
    summary = await ingest.catch_up(now=SIX_AM_PDT.replace(minute=30))
    assert summary is not None and summary.run.trigger == "catch-up"
    assert summary.run.slot == "2026-03-08T13:00:00.000Z"
    assert await ingest.catch_up(now=SIX_AM_PDT.replace(minute=31)) is None  # that slot ran
    # Down across two slots (12:00 and 18:00 PDT): one catch-up run, for the latest.
    later = await ingest.catch_up(now=datetime(2026, 3, 9, 2, tzinfo=UTC))
    assert later is not None and later.run.slot == "2026-03-09T01:00:00.000Z"
    assert [run.trigger for run in ingest.runs(10)] == ["catch-up", "catch-up"]


async def test_a_scheduled_run_counts_for_its_slot(ingest: Ingest) -> None:
    await ingest.run(trigger=Trigger.SCHEDULED, slot=SIX_AM_PDT)
    assert await ingest.catch_up(now=SIX_AM_PDT.replace(hour=18)) is None


async def test_manual_runs_do_not_count_as_a_slot(ingest: Ingest) -> None:
    await ingest.run()
    assert await ingest.catch_up(now=SIX_AM_PDT) is not None


async def test_serve_forever_catches_up_then_keeps_scanning_and_stops_cleanly(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, fake_api: FakeApi,
) -> None:
    settings = ingest_settings.replace(schedule__scan_interval_seconds=0.05, schedule__stable_seconds=1.0)
    ingest = Ingest(settings, state_db, tenants, uploads)
    inbox = tenants.folders("acme").inbox

    def copy_in(name: str) -> None:
        (inbox / name).write_text(SIGNALS, encoding="utf-8")
        old = time.time() - 60
        os.utime(inbox / name, (old, old))

    async def until(condition: Callable[[], bool]) -> None:
        # Generous: the first run starts the file readers' fork server (ingest.sandbox).
        for _ in range(1000):
            if condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("condition not reached")

    copy_in("before.csv")
    serving = asyncio.create_task(ingest.serve_forever())
    try:
        await until(lambda: bool(ingest.runs(1)) and ingest.runs(1)[0].status == "finished")
        [catch_up] = ingest.runs(10)
        assert (catch_up.trigger, catch_up.posted) == ("catch-up", 2)
        copy_in("after.csv")  # between slots: staged by the periodic scan, processed at the next slot
        # Recorded ("received"), then staged: wait for the second, or the check races the scan.
        await until(lambda: len(uploads.history("acme")) == 2 and uploads.history("acme")[0].state == "staged")
        later = uploads.history("acme")[0]
        assert (later.path, later.source, later.state) == ("in/after.csv", "scan", "staged")
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    assert serving.cancelled()


HOLD_CLAIM = """
import sys
from pathlib import Path
from core.db import Database, PostgresLocation
from ingest.claims import Claims, tenant_claim
location = PostgresLocation(sys.argv[1], sys.argv[2]) if sys.argv[2] else Path(sys.argv[1])
Claims(Database(location)).take(tenant_claim("acme"))
print("held", flush=True)
sys.stdin.read()
"""


async def test_a_tenant_another_process_works_on_is_left_to_it_until_it_dies(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    await ingest.stage(upload, path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_CLAIM, *postgres.location_argv(ingest.db.path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ClaimHeld, match=rf"tenant 'acme' is being processed by .* \(pid {holder.pid}\)"):
            await ingest.run(tenant="acme")
        summary = await ingest.run()
        assert summary.skipped == [f"tenant 'acme' is being processed by an operator's command (pid {holder.pid})"]
        assert (summary.run.status, summary.run.posted, fake_api.received) == ("finished", 0, [])
    finally:
        holder.kill()  # kill -9: the claim is never released, its holder is gone
        holder.communicate("")
    summary = await ingest.run()
    assert (summary.skipped, summary.run.posted) == ([], 2)


async def test_two_runs_in_one_process_never_work_on_one_tenant(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    await ingest.stage(upload, path)
    fake_api.answer(stall(0.3))
    first = asyncio.create_task(ingest.run())
    while not fake_api.received:
        await asyncio.sleep(0.01)
    second = await ingest.run()
    assert second.skipped and second.run.posted == 0
    assert (await first).run.posted == 2
    assert len(fake_api.received) == 2


async def test_a_slow_destination_of_one_tenant_never_holds_up_another(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, fake_api: FakeApi,
) -> None:
    ingest = Ingest(ingest_settings.replace(post__timeout_seconds=60.0), state_db, tenants, uploads)
    beta = tenants.add("beta", "ops@beta.example", TEST_PASSWORD)
    released = asyncio.Event()

    async def held(request: Request, body: dict[str, Any]) -> Response:
        await released.wait()
        return JSONResponse({}, status_code=201)

    fake_api.answer_token(tenant.api_token, held)
    for name in ("acme", "beta"):
        upload, path = drop(tenants, uploads, name, "in/sales.csv", SIGNALS)
        await ingest.stage(upload, path)
    running = asyncio.create_task(ingest.run())
    try:
        for _ in range(1000):  # beta's file is finished, its report written, while acme's waits
            if any(tenants.folders("beta").reports_dir.glob("*.csv")):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("beta's report never came while acme's destination was slow")
        assert [item.state for item in uploads.history("beta")] == ["posted"]
        assert [item.state for item in uploads.history("acme")] == ["processing"]
        # sftpctl runs: the running run works on acme now, its 2 rows left, nothing moved lately.
        [record] = ingest.runs(1)
        pace = ingest.run_pace(record.id)
        assert (record.status, pace.done, pace.left, pace.expected_finish()) == ("running", 0, 2, None)
    finally:
        released.set()
    summary = await running
    assert summary.run.posted == 4 and beta.name != tenant.name


async def test_a_runs_http_client_is_made_once_and_only_for_rows_sent_over_http(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run with nothing to send over HTTP (here: nothing at all; in the daemon: every row for
    the embedded ledger) never makes the client; one that posts makes one for all its rows."""
    ingest = Ingest(ingest_settings, state_db, tenants, uploads)
    made: list[object] = []
    make = ingest._http

    def counted() -> Any:
        made.append(client := make())
        return client

    monkeypatch.setattr(ingest, "_http", counted)
    await ingest.run()
    assert made == []
    for name in ("in/a.csv", "in/b.csv"):
        upload, path = drop(tenants, uploads, "acme", name, SIGNALS)
        await ingest.stage(upload, path)
    summary = await ingest.run()
    assert summary.run.posted == 4 and len(made) == 1
    assert len(fake_api.received) == 4 and tenant.name == "acme"


async def test_a_run_whose_process_was_killed_is_listed_as_interrupted(ingest: Ingest) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record = ingest.run_store.start(Trigger.MANUAL, None, None, gone.pid)
    assert [(run.id, run.status) for run in ingest.runs(1)] == [(record.id, "interrupted")]


async def test_a_run_picks_up_stable_files_that_arrived_another_way(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    copied = tenants.folders("acme").inbox / "copied.csv"
    copied.write_text(SIGNALS, encoding="utf-8")
    old = time.time() - 60
    os.utime(copied, (old, old))
    summary = await ingest.run()
    assert [item.path for item in summary.files] == ["in/copied.csv"]
    assert summary.run.posted == 2 and uploads.history("acme")[0].source == "scan"


async def test_on_upload_stages_in_the_background(ingest: Ingest, tenants: TenantStore, uploads: UploadStore,
                                                  tenant: Tenant) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    ingest.on_upload(upload, path)
    await ingest.settled()
    assert uploads.get(upload.id).state == "staged"  # type: ignore[union-attr]


async def test_upload_states_join_counts_and_reports(ingest: Ingest, tenants: TenantStore, uploads: UploadStore,
                                                     tenant: Tenant, fake_api: FakeApi) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS + "T3,,3\n")
    await ingest.stage(upload, path)
    waiting = drop(tenants, uploads, "acme", "in/later.csv", SIGNALS)[0]
    [status] = [item for item in ingest.upload_states("acme") if item.id == upload.id]
    assert (status.state, status.feed, status.posted) == ("staged", "signals", 0)
    await ingest.run()
    later, done = ingest.upload_states("acme")
    assert (later.id, later.state, later.feed) == (waiting.id, "received", None)
    assert (done.state, done.posted, done.failed, done.rejected, done.pending) == ("partly failed", 2, 0, 1, 0)
    assert done.report is not None and done.report.endswith("-report.csv")
    assert len(ingest.upload_states("acme", limit=1)) == 1


async def test_upload_states_with_a_limit_are_the_newest_with_their_staging(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant
) -> None:
    """``sftpctl uploads --limit N``: the newest N, each with what staging recorded of it."""
    ids = []
    for number in range(5):
        upload, path = drop(tenants, uploads, "acme", f"in/sales-{number}.csv", SIGNALS)
        await ingest.stage(upload, path)
        ids.append(upload.id)
    unstaged = drop(tenants, uploads, "acme", "in/later.csv", SIGNALS)[0]
    newest = ingest.upload_states("acme", limit=3)
    assert [item.id for item in newest] == [unstaged.id, ids[4], ids[3]]
    assert [item.feed for item in newest] == [None, "signals", "signals"]
    assert [item.id for item in ingest.upload_states("acme")] == [unstaged.id, *reversed(ids)]


async def test_a_run_stopped_by_one_tenants_fault_stops_the_others_and_the_next_run_resumes_them(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, fake_api: FakeApi,
) -> None:
    ingest = Ingest(ingest_settings.replace(post__timeout_seconds=60.0), state_db, tenants, uploads)
    tenants.add("beta", "ops@beta.example", TEST_PASSWORD)
    released = asyncio.Event()

    async def held(request: Request, body: dict[str, Any]) -> Response:
        await released.wait()
        return JSONResponse({}, status_code=201)

    class Crash(Exception):
        pass

    told_after_the_run: list[str] = []
    run_over = False

    def crash_when_beta_posts(event: str, **fields: Any) -> None:
        if run_over:
            told_after_the_run.append(event)
        if event == "post.started" and fields["tenant"] == "beta":
            raise Crash

    fake_api.answer_token(tenant.api_token, held)
    for name in ("acme", "beta"):
        upload, path = drop(tenants, uploads, name, "in/sales.csv", SIGNALS)
        await ingest.stage(upload, path)
    with pytest.raises(Crash):
        await ingest.run(progress=crash_when_beta_posts)
    run_over = True
    released.set()
    await asyncio.sleep(0.5)  # acme's work, had it been left running, would go on now
    assert told_after_the_run == []
    [acme_upload] = uploads.history("acme")
    assert acme_upload.state in ("staged", "processing")  # stopped where the crash found it
    assert ingest.claims.holder("tenant:acme") is None and ingest.runs(1)[0].status == "failed"
    del fake_api.by_token[tenant.api_token]
    summary = await ingest.run()
    assert summary.run.posted == 4 and {item.tenant for item in summary.files} == {"acme", "beta"}


async def test_two_nodes_sharing_the_state_run_a_slot_once(
    ingest: Ingest, ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
) -> None:
    """Each node has the schedule; whichever starts the slot's run first runs it, the other is
    told (and the serving loop logs it as skipped), at the same moment or later."""
    other = Ingest(ingest_settings, Database(ingest_settings.state_location), tenants, uploads)
    try:
        results = await asyncio.gather(
            ingest.run(trigger=Trigger.SCHEDULED, slot=SIX_AM_PDT),
            other.run(trigger=Trigger.SCHEDULED, slot=SIX_AM_PDT), return_exceptions=True)
        assert sorted(type(result).__name__ for result in results) == ["RunSummary", "SlotTaken"]
        assert await other.catch_up(now=SIX_AM_PDT.replace(minute=5)) is None  # that slot ran
        # Both start up after a slot they missed: one catch-up run (the other sees the slot run,
        # or, had both looked before either started, is told it is taken).
        later = SIX_AM_PDT.replace(hour=20)
        results = await asyncio.gather(ingest.catch_up(now=later), other.catch_up(now=later),
                                       return_exceptions=True)
        assert sorted(type(result).__name__ for result in results) in (
            ["NoneType", "RunSummary"], ["RunSummary", "SlotTaken"])
        assert [run.slot for run in ingest.runs(10)] == ["2026-03-08T19:00:00.000Z", "2026-03-08T13:00:00.000Z"]
    finally:
        await other.aclose()
