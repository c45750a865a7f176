"""The outbox's pace (rows delivered and left, and when the last should be delivered) and its pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.db import Database
from core.tenants import Tenant, TenantStore
from core.uploads import UploadStore
from ingest.delivery.destinations import EmbeddedLedger
from ingest.delivery.outbox import Outbox, Pace, QueuedRequest, QueuedRows
from ingest.store import RunStore, StagedStore, StagedUpload, Trigger, migrate
from tests.conftest import TEST_PASSWORD

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def test_the_expected_finish_is_the_rows_left_at_the_recent_pace() -> None:
    assert Pace(done=100, left=500, recent=100, window_seconds=60).finish_at(NOW) == NOW + timedelta(minutes=5)
    assert Pace(done=100, left=0, recent=0, window_seconds=60).finish_at(NOW) == NOW
    assert Pace(done=100, left=10, recent=0, window_seconds=60).finish_at(NOW) is None  # nothing moved lately


def test_pace_counts_a_files_delivered_pending_and_recent_rows(state_db: Database, uploads: UploadStore,
                                                               tenant: Tenant) -> None:
    migrate(state_db)
    staged, outbox = StagedStore(state_db), Outbox(state_db)
    run = RunStore(state_db).start(Trigger.MANUAL, None, None, 1)
    upload = uploads.record("acme", "in/sales.csv", 1, "0" * 64).id
    staged.add(StagedUpload(upload_id=upload, tenant="acme", path="in/sales.csv", feed="signals",
                            snapshot="/s", sha256="0" * 64, staged_at="2026-01-01T00:00:00.000Z", state="staged",
                            error="", run_id=None, rows_total=0, report=None, finished_at=None))
    rows = [QueuedRequest(n, "signal", "POST", "http://x/api", None, f"k{n}", "{}") for n in range(2, 8)]
    with state_db.transaction():
        assert staged.claim(upload, run.id, len(rows), "queued")
        outbox.enqueue(upload, run.id, "acme", QueuedRows.of(rows), [])
    items = outbox.pending(["acme"])
    for item in items[:3]:
        outbox.mark_posted(item.id, 201, None, 1)
    outbox.mark_failed(items[3].id, 404, "no call", 1)
    state_db.execute("UPDATE ingest_outbox SET updated_at = '2000-01-01T00:00:00.000Z' WHERE id = ?",
                     (items[0].id,))  # delivered long ago: not part of the recent pace
    pace = outbox.pace([upload])
    assert (pace.done, pace.left, pace.recent) == (4, 2, 3)
    assert pace.expected_finish() is not None
    assert outbox.pace([]) == Pace(0, 0, 0, pace.window_seconds)


def queue_file(state_db: Database, uploads: UploadStore, tenant: str, name: str, urls: list[str]) -> int:
    """A processing file of ``tenant`` with one pending row per URL; its upload id."""
    staged, outbox = StagedStore(state_db), Outbox(state_db)
    run = RunStore(state_db).start(Trigger.MANUAL, None, None, 1)
    upload = uploads.record(tenant, f"in/{name}", 1, "0" * 64).id
    staged.add(StagedUpload(upload_id=upload, tenant=tenant, path=f"in/{name}", feed="signals",
                            snapshot="/s", sha256="0" * 64, staged_at="2026-01-01T00:00:00.000Z", state="staged",
                            error="", run_id=None, rows_total=0, report=None, finished_at=None))
    rows = [QueuedRequest(n, "signal", "POST", url, None, f"{name}-{n}", "{}") for n, url in enumerate(urls, 2)]
    with state_db.transaction():
        assert staged.claim(upload, run.id, len(rows), "queued")
        outbox.enqueue(upload, run.id, tenant, QueuedRows.of(rows), [])
    return upload


def test_pages_give_every_pending_row_once_in_id_order_while_rows_come_and_go(
    state_db: Database, uploads: UploadStore, tenants: TenantStore, tenant: Tenant,
) -> None:
    migrate(state_db)
    tenants.add("beta", "ops@beta.example", TEST_PASSWORD)
    outbox = Outbox(state_db)
    first = queue_file(state_db, uploads, "acme", "a.csv", ["http://x/api"] * 7)
    queue_file(state_db, uploads, "beta", "b.csv", ["http://x/api"] * 3)  # another tenant's: never in acme's pages
    pending = [item.id for item in outbox.pending(["acme"])]
    outbox.note_attempts(pending[1], 503, "down", 1, "2999-01-01T00:00:00.000Z")  # set aside: not due
    seen: list[int] = []
    after, later = 0, 0
    while page := outbox.page(["acme"], after, limit=3):
        seen += [item.id for item in page]
        after = page[-1].id
        if len(seen) == 3:
            outbox.mark_posted(pending[4], 201, None, 1)  # settled by someone else before its page
            later = queue_file(state_db, uploads, "acme", "c.csv", ["http://x/api"] * 2)  # queued meanwhile
        for item in page:
            if item.id != pending[4]:
                outbox.mark_posted(item.id, 201, None, 1)
    added = [row["id"] for row in state_db.query("SELECT id FROM ingest_outbox WHERE upload_id = ? ORDER BY id",
                                                 (later,))]
    assert seen == [pending[0], *pending[2:4], *pending[5:], *added]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert outbox.pending(["acme"]) == [] and outbox.counts(first).pending == 1  # the one set aside


def test_a_pass_counts_its_rows_per_file_and_stops_at_the_last_one_due(
    state_db: Database, uploads: UploadStore, tenant: Tenant,
) -> None:
    migrate(state_db)
    outbox = Outbox(state_db)
    first = queue_file(state_db, uploads, "acme", "a.csv", ["http://x/api"] * 4)
    second = queue_file(state_db, uploads, "acme", "b.csv", ["http://x/api"] * 2)
    due = outbox.due(["acme"])
    assert (due.per_upload, due.total) == ({first: 4, second: 2}, 6)
    queue_file(state_db, uploads, "acme", "c.csv", ["http://x/api"] * 2)  # after the pass began
    paged = outbox.page(["acme"], upto=due.last, limit=100)
    assert [item.upload_id for item in paged] == [first] * 4 + [second] * 2
    assert outbox.due(["nobody"]).last == 0


def test_a_url_prefix_splits_the_rows_between_destinations_without_loss(
    state_db: Database, uploads: UploadStore, tenant: Tenant,
) -> None:
    migrate(state_db)
    outbox = Outbox(state_db)
    base = "http://127.0.0.1:8080/api/2020-10-01"
    urls = [f"{base}/signals", "https://remote.example/api/signals", f"{base}x/signals", f"{base}/calls"]
    queue_file(state_db, uploads, "acme", "a.csv", urls)
    every = outbox.pending(["acme"])
    local = outbox.page(["acme"], url_prefix=base + "/", prefixed=True)
    remote = outbox.page(["acme"], url_prefix=base + "/", prefixed=False)
    assert [item.url for item in local] == [item.url for item in every if EmbeddedLedger.takes(item, base)]
    assert sorted(item.id for item in local + remote) == [item.id for item in every]
    assert [item.url for item in remote] == urls[1:3]
