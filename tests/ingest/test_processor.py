"""A run end to end: queue, post, report, states; tenants that wait; a crash and its resumption."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from core.config import Settings
from core.db import Database
from core.tenants import Tenant, TenantStore
from core.uploads import UploadStore
from ingest.pipeline import Ingest
from ingest.processor import Processor
from tests.conftest import TEST_PASSWORD
from tests.ingest import hostile
from tests.ingest.conftest import FakeApi, drop, errors, idempotent
from tests.support.at_rest import stored_csv, stored_text

FIXTURES = Path(__file__).parent / "fixtures"
SIGNALS = "transaction_id,name,partner_unique_id,sale_amount\nT1,Sale,1,10.50\nT2,Sale,2,12.345\nT3,Quote,3,\n"


def signals(count: int, ids: list[str] | None = None) -> str:
    ids = ids or [f"T{n}" for n in range(1, count + 1)]
    return "transaction_id,name,partner_unique_id\n" + "".join(f"{tid},Sale,{n}\n" for n, tid in enumerate(ids, 1))


def read_report(ingest: Ingest, path: str | None) -> tuple[dict[str, str], list[list[str]]]:
    """A report's summary and rows, read through the keys it is sealed with."""
    assert path is not None
    lines = stored_csv(path, ingest.settings)
    blank = lines.index([])
    return dict(lines[:blank]), lines[blank + 2:]


async def stage(ingest: Ingest, tenants: TenantStore, uploads: UploadStore, relative: str, content: str,
                tenant: str = "acme") -> int:
    upload, path = drop(tenants, uploads, tenant, relative, content)
    await ingest.stage(upload, path)
    return upload.id


async def test_a_clean_file_is_posted_reported_and_not_mailed(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    upload_id = await stage(ingest, tenants, uploads, "in/sales.csv", signals(3))
    summary = await ingest.run()
    assert summary.ok and summary.run.status == "finished"
    assert (summary.run.files, summary.run.posted) == (1, 3)
    [request] = [r for r in fake_api.received if r.body["search"]["transaction_id"] == "T1"]
    assert request.body == {"search": {"transaction_id": "T1"}, "signal": {"name": "Sale", "partner_unique_id": "1"},
                            "oauth_token": tenant.api_token}
    head, rows = read_report(ingest, summary.files[0].report)
    assert (head["result"], head["rows posted"]) == ("posted", "3")
    assert [row[:2] for row in rows] == [["2", "posted"], ["3", "posted"], ["4", "posted"]]
    assert all(row[2].startswith("T-") for row in rows)
    assert Path(summary.files[0].report).parent == tenants.folders("acme").reports_dir  # type: ignore[arg-type]
    assert uploads.get(upload_id).state == "posted"  # type: ignore[union-attr]
    assert not ingest.settings.mail_spool.exists()


async def test_bad_rows_are_rejected_and_the_rest_posted(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    await stage(ingest, tenants, uploads, "in/sales.csv", SIGNALS)
    summary = await ingest.run()
    assert not summary.ok
    assert (summary.run.posted, summary.run.rejected) == (2, 1)
    _, rows = read_report(ingest, summary.files[0].report)
    assert rows[1][:2] == ["3", "rejected"] and "sale_amount" in rows[1][3]
    assert len(list(ingest.settings.mail_spool.glob("*.eml"))) == 1


@pytest.mark.parametrize(
    ("relative", "content", "reason"),
    [
        ("in/sales.csv", "transaction_id,partner_unique_id\nT1,1\n", "name"),
        ("in/orders/sales.csv", signals(1), "no feed named 'orders'"),
        ("in/sales.txt", signals(1), "file type .txt is not accepted"),
    ],
)
async def test_a_refused_file_is_rejected_with_a_report_and_a_mail(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi,
    relative: str, content: str, reason: str,
) -> None:
    upload_id = await stage(ingest, tenants, uploads, relative, content)
    summary = await ingest.run()
    assert fake_api.received == []
    [item] = summary.files
    assert item.state == "rejected" and reason in item.error
    head, _ = read_report(ingest, item.report)
    assert head["result"] == "rejected" and reason in head["reason"]
    record = uploads.get(upload_id)
    assert record is not None and record.state == "rejected" and reason in record.detail
    [mail] = ingest.settings.mail_spool.glob("*.eml")
    assert Path(item.report).name in stored_text(mail, ingest.settings)  # type: ignore[arg-type]


async def test_a_damaged_snapshot_is_rejected_not_read(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    upload_id = await stage(ingest, tenants, uploads, "in/sales.csv", signals(3))
    [staged] = ingest.staged.waiting(["acme"])
    Path(staged.snapshot).write_text("transaction_id,name,partner_unique_id\n")  # as after a power cut
    summary = await ingest.run()
    assert fake_api.received == []
    [item] = summary.files
    assert item.state == "rejected" and "upload the file again" in item.error
    record = uploads.get(upload_id)
    assert record is not None and record.state == "rejected"


async def test_one_mail_per_tenant_per_run_with_every_report(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    await stage(ingest, tenants, uploads, "in/a.csv", SIGNALS)
    await stage(ingest, tenants, uploads, "in/b.csv", "nonsense\n")
    summary = await ingest.run()
    assert len(summary.files) == 2
    [mail] = ingest.settings.mail_spool.glob("*.eml")
    text = stored_text(mail, ingest.settings)
    assert all(Path(item.report).name in text for item in summary.files)  # type: ignore[arg-type]


async def test_files_of_a_tenant_without_login_wait_until_it_has_one(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    upload_id = await stage(ingest, tenants, uploads, "in/sales.csv", signals(2))
    tenants.remove_login("acme")
    summary = await ingest.run()
    assert fake_api.received == [] and summary.files == []
    assert summary.problems == ["tenant 'acme' has no login; its files wait unprocessed"]
    assert uploads.get(upload_id).state == "staged"  # type: ignore[union-attr]
    tenants.set_password("acme", TEST_PASSWORD)
    summary = await ingest.run()
    assert summary.ok and summary.run.posted == 2


async def test_disabled_tenants_wait_and_a_run_can_be_for_one_tenant(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    tenants.add("beta", "it@beta.example", TEST_PASSWORD)
    await stage(ingest, tenants, uploads, "in/a.csv", signals(1))
    await stage(ingest, tenants, uploads, "in/b.csv", signals(2), tenant="beta")
    summary = await ingest.run(tenant="beta")
    assert [item.tenant for item in summary.files] == ["beta"] and summary.run.tenant == "beta"
    tenants.set_enabled("acme", False)
    summary = await ingest.run()
    assert summary.files == [] and "tenant 'acme' is disabled" in summary.problems[0]


async def test_a_run_works_only_for_tenants_with_something_to_do(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    """Idle tenants cost a run nothing per tenant: no claim, no pass (issue 15: O(T) fixed cost)."""
    for number in range(30):
        tenants.add(f"idle{number}", f"it@idle{number}.example", TEST_PASSWORD)
    tenants.add("beta", "it@beta.example", TEST_PASSWORD)
    await stage(ingest, tenants, uploads, "in/b.csv", signals(2), tenant="beta")
    events: list[tuple[str, dict[str, Any]]] = []
    summary = await ingest.run(progress=lambda event, **fields: events.append((event, fields)))
    assert [fields["tenant"] for event, fields in events if event == "post.started"] == ["beta"]
    assert summary.ok and summary.run.posted == 2
    # With nothing left anywhere, a run works for nobody; a named tenant is worked for anyway.
    events.clear()
    await ingest.run(progress=lambda event, **fields: events.append((event, fields)))
    assert [event for event, _ in events if event == "post.started"] == []
    await ingest.run(tenant="idle3", progress=lambda event, **fields: events.append((event, fields)))
    assert [fields["tenant"] for event, fields in events if event == "post.started"] == ["idle3"]


async def test_progress_reports_files_and_rows(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    await stage(ingest, tenants, uploads, "in/sales.csv", signals(12))
    events: list[tuple[str, dict[str, Any]]] = []
    await ingest.run(progress=lambda event, **fields: events.append((event, fields)))
    names = [event for event, _ in events]
    assert names == ["run.started", "file.started", "file.queued", "post.started", "file.progress",
                     "file.progress", "file.done", "run.finished"]
    told = [fields for event, fields in events if event == "file.progress"]
    # The first row at once, then at most one a second, and the last row always.
    assert [(item["file"], item["done"], item["total"]) for item in told] == [("in/sales.csv", 1, 12),
                                                                              ("in/sales.csv", 12, 12)]
    assert told[-1]["eta_seconds"] == 0.0 and told[-1]["rate"] > 0


async def test_queueing_rejecting_and_reporting_run_off_the_event_loop_and_tell_it(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each takes time in proportion to a file's rows: the daemon's logins and API wait for none
    of them (bench/run_lag.py measures the loop), and their events reach the caller on the loop."""
    loop_thread = threading.get_ident()
    ran_on: dict[str, set[bool]] = {}
    for name in ("_queue", "_reject", "_finish"):
        original = getattr(Processor, name)

        def wrapped(self: Processor, *args: Any, _name: str = name, _original: Any = original) -> Any:
            ran_on.setdefault(_name, set()).add(threading.get_ident() == loop_thread)
            return _original(self, *args)

        monkeypatch.setattr(Processor, name, wrapped)
    await stage(ingest, tenants, uploads, "in/sales.csv", signals(3))
    await stage(ingest, tenants, uploads, "in/refused.csv", "not,the,template\n1,2,3\n")
    told_on: set[bool] = set()
    summary = await ingest.run(progress=lambda event, **fields: told_on.add(threading.get_ident() == loop_thread))
    assert sorted(item.state for item in summary.files) == ["posted", "rejected"]
    assert ran_on == {"_queue": {False}, "_reject": {False}, "_finish": {False}}
    assert told_on == {True}


async def test_a_crash_with_a_request_in_flight_loses_nothing_and_repeats_nothing_that_changes_data(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, fake_api: FakeApi,
) -> None:
    server_applied_row_4 = asyncio.Event()
    release = asyncio.Event()

    async def apply_then_hang(request: Request, body: dict[str, Any]) -> Response:
        await idempotent(fake_api, request.headers.get("idempotency-key"))
        server_applied_row_4.set()
        await release.wait()
        return Response(status_code=201)

    async def normal(request: Request, body: dict[str, Any]) -> Response:
        return await idempotent(fake_api, request.headers.get("idempotency-key"))

    fake_api.answer(normal, normal, normal, apply_then_hang)
    first = Ingest(ingest_settings, state_db, tenants, uploads)
    upload_id = await stage(first, tenants, uploads, "in/sales.csv", signals(8))
    run = asyncio.create_task(first.run())
    await asyncio.wait_for(server_applied_row_4.wait(), 10)
    run.cancel()  # the process dies: row 4 was applied by the server, its answer never recorded
    with pytest.raises(asyncio.CancelledError):
        await run
    release.set()
    await first.aclose()

    second = Ingest(ingest_settings, state_db, tenants, uploads)
    summary = await second.run()
    await second.aclose()
    assert summary.run.posted == 5 and summary.ok  # rows 4..8: 4 again, then the rest
    assert len(fake_api.applied) == 8  # every row applied ...
    assert fake_api.repeats == {fake_api.received[3].key: 1}  # ... once; only row 4 came twice, as a no-op
    head, rows = read_report(second, summary.files[0].report)
    assert head["rows posted"] == "8" and [row[1] for row in rows] == ["posted"] * 8
    assert uploads.get(upload_id).state == "posted"  # type: ignore[union-attr]
    [interrupted, finished] = second.runs(10)[::-1]
    assert interrupted.status == "interrupted" and finished.status == "finished"


async def test_a_crash_after_queueing_before_any_post_resumes_from_the_outbox(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, fake_api: FakeApi,
) -> None:
    class Crash(Exception):
        pass

    def die_once_queued(event: str, **fields: Any) -> None:
        if event == "post.started":
            raise Crash

    first = Ingest(ingest_settings, state_db, tenants, uploads)
    await stage(first, tenants, uploads, "in/sales.csv", signals(5))
    with pytest.raises(Crash):
        await first.run(progress=die_once_queued)
    await first.aclose()
    assert fake_api.received == []
    assert first.runs(1)[0].status == "failed"
    # A newer upload of the same path does not supersede a file already queued.
    await stage(first, tenants, uploads, "in/sales.csv", signals(1, ids=["T9"]))
    second = Ingest(ingest_settings, state_db, tenants, uploads)
    summary = await second.run()
    await second.aclose()
    assert summary.run.posted == 6 and summary.run.files == 1
    assert sorted(r.body["search"]["transaction_id"] for r in fake_api.received) == [
        "T1", "T2", "T3", "T4", "T5", "T9"]


async def test_crash_and_resume_against_the_embedded_ledger(
    settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
) -> None:
    from ledger.server import ApiServer

    # Over HTTP, paced, so the run can be stopped mid-file (the in-process writer's crash and
    # replay: tests/ingest/delivery/test_destinations.py).
    fast = settings.replace(post__rate_limit_requests=3, post__rate_limit_window_seconds=0.3,
                            post__backoff_base_seconds=0.01, post__backoff_max_seconds=0.05,
                            post__embedded_in_process=False)
    api = ApiServer(fast, tenants)
    await api.start()
    try:
        ingest = Ingest(fast, state_db, tenants, uploads)
        calls = "customer_id,call_start,call_end\n" + "".join(
            f"c{n},2026-03-08T1{n}:00:00Z,2026-03-08T1{n}:05:00Z\n" for n in range(6))
        await stage(ingest, tenants, uploads, "in/calls/calls.csv", calls)
        made = await ingest.run()
        assert made.ok, made
        _, rows = read_report(ingest, made.files[0].report)
        call_ids = [row[2] for row in rows]
        await stage(ingest, tenants, uploads, "in/sales.csv", signals(6, ids=call_ids))
        run = asyncio.create_task(ingest.run())
        while ingest.upload_states("acme")[0].posted < 2:
            await asyncio.sleep(0.01)
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await ingest.aclose()
        resumed = Ingest(fast, state_db, tenants, uploads)
        summary = await resumed.run()
        await resumed.aclose()
        assert summary.ok and summary.files[0].posted == 6
        async with httpx.AsyncClient(base_url=api.url) as http:
            response = await http.get("/api/2020-10-01/transactions.json",
                                      params={"transaction_type": "signal", "oauth_token": tenant.api_token})
        signals_seen = response.json()
        assert len(signals_seen) == 6  # one transaction per row: nothing lost, no correction made
        assert all(row["corrects_transaction_id"] is None for row in signals_seen)
    finally:
        await api.close()


async def test_spreadsheet_bombs_are_rejected_with_a_reason_and_the_others_still_run(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi,
) -> None:
    """The 1.6 KB workbook that used to abort the whole daemon, with and without its declared range,
    and a zip bomb, each beside a good file of the same tenant."""
    for name, data in [("far.xlsx", hostile.far_cell(declare=False)), ("declared.xlsx", hostile.far_cell(declare=True)),
                       ("bomb.xlsx", hostile.zip_bomb(32))]:
        upload, path = drop(tenants, uploads, "acme", f"in/{name}", data)
        await ingest.stage(upload, path)
    await stage(ingest, tenants, uploads, "in/fine.csv", signals(2))
    summary = await ingest.run()
    states = {Path(item.path).name: (item.state, item.error) for item in summary.files}
    assert states["far.xlsx"][0] == "rejected" and "MiB of memory allowed" in states["far.xlsx"][1]
    assert states["declared.xlsx"][0] == "rejected" and "A1:XFD1048576" in states["declared.xlsx"][1]
    assert states["bomb.xlsx"][0] == "rejected" and "zip bomb" in states["bomb.xlsx"][1]
    assert states["fine.csv"] == ("posted", "")
    head, _ = read_report(ingest, summary.files[[Path(f.path).name for f in summary.files].index("far.xlsx")].report)
    assert "stray cell" in head["reason"]
    assert summary.run.status == "finished"


async def test_a_file_whose_report_cannot_be_written_waits_and_the_others_finish(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi,
) -> None:
    """A fault on one file (here its tenant's out/ is not a folder) is that file's, and the run's
    record says so; the next run finishes it."""
    tenants.add("beta", "ops@beta.example", TEST_PASSWORD)
    await stage(ingest, tenants, uploads, "in/a.csv", signals(1))
    await stage(ingest, tenants, uploads, "in/b.csv", signals(1), tenant="beta")
    out = tenants.folders("acme").reports_dir
    out.rmdir()
    out.write_text("not a folder", encoding="utf-8")
    summary = await ingest.run()
    assert summary.run.status == "finished" and not summary.ok
    assert [(item.tenant, item.state) for item in summary.files] == [("beta", "posted")]
    assert "acme: in/a.csv" in summary.run.detail and "could not be finished" in summary.run.detail
    out.unlink()
    out.mkdir()
    again = await ingest.run()
    assert [(item.tenant, item.state) for item in again.files] == [("acme", "posted")]
    assert again.ok and len(list(out.iterdir())) == 1


async def test_a_rejection_whose_report_failed_gets_one_report_and_one_mail_later(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi,
) -> None:
    """The report path is recorded before the report is written, the mail queued with the finish:
    a fault between rejecting a file and reporting it loses neither, and doubles neither."""
    await stage(ingest, tenants, uploads, "in/bad.csv", "no_such_column\nx\n")
    out = tenants.folders("acme").reports_dir
    out.rmdir()
    out.write_text("not a folder", encoding="utf-8")
    first = await ingest.run()
    assert first.files == [] and "could not be finished" in first.run.detail
    assert not ingest.settings.mail_spool.exists()
    out.unlink()
    out.mkdir()
    second = await ingest.run()
    [item] = second.files
    assert item.state == "rejected" and item.report is not None
    assert [path.name for path in out.iterdir()] == [Path(item.report).name]
    [mail] = ingest.settings.mail_spool.glob("*.eml")
    assert Path(item.report).name in stored_text(mail, ingest.settings)
    third = await ingest.run()
    assert third.files == [] and len(list(ingest.settings.mail_spool.glob("*.eml"))) == 1
    assert len(list(out.iterdir())) == 1


async def test_a_mail_that_could_not_go_is_sent_at_the_next_run_under_its_own_name(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi,
) -> None:
    await stage(ingest, tenants, uploads, "in/bad.csv", "no_such_column\nx\n")
    spool = ingest.settings.mail_spool
    spool.parent.mkdir(parents=True, exist_ok=True)
    spool.write_text("not a folder", encoding="utf-8")
    first = await ingest.run()
    assert [item.state for item in first.files] == ["rejected"]
    assert "failure mail could not be sent" in first.run.detail
    spool.unlink()
    await stage(ingest, tenants, uploads, "in/worse.csv", "no_such_column\nx\n")
    second = await ingest.run()
    mails = sorted(spool.glob("*.eml"))
    # The first run's message, sent now under its first name, and the second run's own.
    assert [mail.name.split("-", 1)[1] for mail in mails] == ["run1-acme.eml", "run2-acme.eml"]
    first_mail = stored_text(mails[0], ingest.settings)
    assert "bad.csv" in first_mail and "worse.csv" not in first_mail
    assert "Message-ID: <" + mails[0].stem + "@" in first_mail
    assert [item.state for item in second.files] == ["rejected"]
    await ingest.run()
    assert len(list(spool.glob("*.eml"))) == 2


async def test_sealed_snapshots_are_decrypted_in_the_child_and_a_damaged_one_is_refused(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    """Uploads sealed at rest whose kept names became their snapshots, as the front door hands
    them over: the sandboxed child reads their plaintext (CSV and XLSX); a snapshot changed on
    disk is refused as damaged, never read."""
    files = {"sales.csv": signals(3).encode(), "book.xlsx": (FIXTURES / "signals.xlsx").read_bytes(),
             "cut.csv": signals(2, ["C1", "C2"]).encode()}
    for name, content in files.items():
        upload, path = drop(tenants, uploads, "acme", f"in/{name}", content, at_rest=ingest.at_rest)
        kept = path.with_name(f".{name}.kept")
        os.link(path, kept)
        adopted = ingest.stager.adopt(upload, kept)
        assert adopted is not None and content not in adopted.read_bytes()
        await ingest.stage(upload, path, adopted)
        if name == "cut.csv":
            with open(adopted, "r+b") as raw:
                raw.seek(-1, os.SEEK_END)
                last = raw.read(1)
                raw.seek(-1, os.SEEK_END)
                raw.write(bytes([last[0] ^ 1]))
    summary = await ingest.run()
    states = {Path(item.path).name: (item.state, item.error) for item in summary.files}
    rows = {Path(item.path).name: item.rows_total for item in summary.files}
    assert states["sales.csv"] == ("posted", "") and rows["sales.csv"] == 3
    assert rows["book.xlsx"] == 3  # read whole (its cells do not fit the signals template: rejected)
    assert states["cut.csv"][0] == "rejected" and "damaged" in states["cut.csv"][1]
    assert not any(r.body["search"]["transaction_id"].startswith("C") for r in fake_api.received)


async def test_a_long_queue_is_delivered_page_by_page_every_row_once_in_order(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    ingest.processor.page_rows = 2
    await stage(ingest, tenants, uploads, "in/sales.csv", signals(7))
    events: list[tuple[str, dict[str, Any]]] = []
    summary = await ingest.run(progress=lambda event, **fields: events.append((event, fields)))
    assert summary.ok and summary.run.posted == 7
    assert [r.body["search"]["transaction_id"] for r in fake_api.received] == [f"T{n}" for n in range(1, 8)]
    assert [fields["rows"] for event, fields in events if event == "post.started"] == [7]
    told = [fields for event, fields in events if event == "file.progress"]
    assert (told[-1]["done"], told[-1]["total"]) == (7, 7)
    assert fake_api.repeats == {}


async def test_a_refused_token_ends_the_pass_at_its_page_and_the_next_run_sends_the_rest(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    ingest.processor.page_rows = 2
    fake_api.answer(errors(401, "Unauthorized", "Invalid oauth token"))
    await stage(ingest, tenants, uploads, "in/sales.csv", signals(5))
    summary = await ingest.run()
    assert len(fake_api.received) == 1 and summary.run.pending == 5
    again = await ingest.run()
    assert again.run.posted == 5 and again.ok
    assert [r.body["search"]["transaction_id"] for r in fake_api.received[1:]] == [f"T{n}" for n in range(1, 6)]
