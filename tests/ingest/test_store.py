"""The pipeline's tables: feeds per tenant, the supersede rule, the outbox's all-or-nothing claim."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from core.db import Database, PostgresLocation, Reader
from core.tenants import Tenant, TenantStore
from core.uploads import UploadState, UploadStore
from ingest.delivery.outbox import Outbox, QueuedRequest, QueuedRows, RejectedRow
from ingest.rows.errors import FeedError
from ingest.rows.feeds import parse_feed
from ingest.store import (
    MIGRATIONS,
    FeedStore,
    RunCounts,
    RunStatus,
    RunStore,
    StagedStore,
    StagedUpload,
    Trigger,
    UnknownFeed,
    migrate,
)

ORDERS = """\
name = "orders"
template = "signals"
[mapping]
kind = "signal"
"""


@pytest.fixture
def db(state_db: Database) -> Database:
    migrate(state_db)
    return state_db


def staged(upload_id: int, path: str = "in/sales.csv") -> StagedUpload:
    return StagedUpload(upload_id=upload_id, tenant="acme", path=path, feed="signals", snapshot=f"/s/{upload_id}",
                        sha256="0" * 64, staged_at="2026-01-01T00:00:00.000Z", state="staged", error="",
                        run_id=None, rows_total=0, report=None, finished_at=None)


def test_migrations_apply_once(db: Database) -> None:
    migrate(db)
    row = db.query_one("SELECT version FROM schema_versions WHERE component = 'ingest'")
    assert row is not None and row["version"] == len(MIGRATIONS)


def test_a_new_tenant_has_the_shipped_feeds(db: Database, tenant: Tenant) -> None:
    feeds = FeedStore(db)
    assert [feed.name for feed in feeds.list("acme")] == ["signals", "calls"]
    assert feeds.default("acme").name == "signals"
    for feed in feeds.list("acme"):  # shown as TOML that sets the very same feed
        assert parse_feed(feeds.text("acme", feed.name)) == feed


def test_set_get_and_show_a_feed(db: Database, tenant: Tenant) -> None:
    feeds = FeedStore(db)
    feed = feeds.set("acme", ORDERS, source="orders.toml")
    assert feed.name == "orders"
    assert feeds.get("acme", "orders").mapping.kind == "signal"
    assert feeds.text("acme", "orders") == ORDERS
    assert [item.name for item in feeds.list("acme")] == ["signals", "calls", "orders"]
    assert feeds.names("acme") == ["calls", "orders", "signals"]  # the same, none parsed
    assert feeds.default("acme").name == "signals"
    feeds.set("acme", ORDERS, default=True)
    assert feeds.default("acme").name == "orders"
    feeds.set("acme", ORDERS)  # setting it again keeps it the default
    assert feeds.default("acme").name == "orders"


def test_a_stored_feed_replaces_the_shipped_one_of_that_name(db: Database, tenant: Tenant) -> None:
    feeds = FeedStore(db)
    feeds.set("acme", ORDERS.replace('name = "orders"', 'name = "calls"'))
    assert feeds.get("acme", "calls").mapping.kind == "signal"
    assert len(feeds.list("acme")) == 2 and feeds.names("acme") == ["calls", "signals"]


def test_a_bad_feed_is_refused_with_its_line_and_nothing_is_stored(db: Database, tenant: Tenant) -> None:
    feeds = FeedStore(db)
    with pytest.raises(FeedError, match=r"^orders.toml:4: mapping kind must be one of"):
        feeds.set("acme", ORDERS.replace('"signal"', '"telegram"'), source="orders.toml")
    assert feeds.find("acme", "orders") is None


def test_an_unknown_feed_names_the_ones_there_are(db: Database, tenant: Tenant) -> None:
    with pytest.raises(UnknownFeed, match=r"tenant 'acme' has no feed named 'nope' \(feeds: signals, calls\)"):
        FeedStore(db).get("acme", "nope")


def test_feeds_go_with_their_tenant(db: Database, tenants: TenantStore, tenant: Tenant) -> None:
    FeedStore(db).set("acme", ORDERS)
    tenants.purge("acme")
    assert db.query("SELECT * FROM ingest_feeds") == []


def test_supersede_keeps_only_the_newest_waiting_upload(db: Database, uploads: UploadStore,
                                                        tenant: Tenant) -> None:
    store = StagedStore(db)
    ids = [uploads.record("acme", "in/sales.csv", 1, "0" * 64).id for _ in range(3)]
    assert store.add(staged(ids[0])) == []
    assert [item.upload_id for item in store.add(staged(ids[2]))] == [ids[0]]
    assert [item.upload_id for item in store.add(staged(ids[1]))] == [ids[1]]  # late and older: itself
    assert store.add(staged(ids[2])) == []  # staging twice is a no-op
    assert [item.upload_id for item in store.waiting(["acme"])] == [ids[2]]


def test_an_older_upload_never_staged_is_superseded_by_a_newer_one(db: Database, uploads: UploadStore,
                                                                   tenant: Tenant) -> None:
    """A node recorded it and died before staging it; its client sent the file again."""
    store = StagedStore(db)
    orphan, other_path, again = (uploads.record("acme", path, 1, "0" * 64).id
                                 for path in ("in/sales.csv", "in/other.csv", "in/sales.csv"))
    assert store.add(staged(again)) == []
    assert uploads.get(orphan).state == UploadState.SUPERSEDED  # type: ignore[union-attr]
    assert uploads.get(other_path).state == UploadState.RECEIVED  # type: ignore[union-attr]
    # Staged after all (its stager was only slow): it supersedes itself, as a late older one does.
    assert [item.upload_id for item in store.add(staged(orphan))] == [orphan]
    assert [item.upload_id for item in store.waiting(["acme"])] == [again]


def test_no_tenants_have_no_uploads_on_either_engine(db: Database, uploads: UploadStore, tenant: Tenant) -> None:
    """A run between tenants holds none (``sftpctl runs`` asks for its files then): an empty list
    is no query, since PostgreSQL refuses ``IN ()`` (``sftpctl runs`` crashed on it during a run,
    found by the end-to-end test)."""
    store = StagedStore(db)
    store.add(staged(uploads.record("acme", "in/sales.csv", 1, "0" * 64).id))
    assert store.waiting([]) == store.processing([]) == store.unreported_rejections([]) == []
    assert [item.tenant for item in store.waiting(["acme"])] == ["acme"]


def test_outbox_claims_a_file_and_queues_its_rows_all_or_nothing(db: Database, uploads: UploadStore,
                                                                  tenant: Tenant) -> None:
    store, outbox, runs = StagedStore(db), Outbox(db), RunStore(db)
    run = runs.start(Trigger.MANUAL, None, None, 1)
    first = uploads.record("acme", "in/sales.csv", 1, "0" * 64).id
    second = uploads.record("acme", "in/sales.csv", 1, "0" * 64).id
    store.add(staged(first))
    store.add(staged(second))  # supersedes the first
    request = QueuedRequest(2, "signal", "POST", "http://x/api", None, "k", '{"signal":{"name":"Sale"}}')

    def claim_and_queue(upload_id: int, rows_total: int, rejected: list[RejectedRow]) -> bool:
        """As the processor does: the claim and the queue in one transaction."""
        with db.transaction():
            if not store.claim(upload_id, run.id, rows_total, "queued"):
                return False
            outbox.enqueue(upload_id, run.id, "acme", QueuedRows.of([request]), rejected)
            return True

    assert not claim_and_queue(first, 1, [])
    assert db.query("SELECT * FROM ingest_outbox") == []
    assert claim_and_queue(second, 2, [RejectedRow(3, "bad")])
    assert store.get(second).state == UploadState.PROCESSING  # type: ignore[union-attr]
    assert uploads.get(second).state == UploadState.PROCESSING  # type: ignore[union-attr]
    [item] = outbox.pending(["acme"])
    assert item.body == {"signal": {"name": "Sale"}} and item.token is None
    assert isinstance(item, QueuedRequest) and (item.key, item.text) == (request.key, request.text)
    outbox.mark_posted(item.id, 201, "T-1", 1)
    outbox.mark_posted(item.id, 200, "T-2", 1)  # a second answer for a settled row changes nothing
    counts = outbox.counts(second)
    assert (counts.total, counts.posted, counts.rejected, counts.pending) == (2, 1, 1, 0)
    assert [(r.row_number, r.status, r.transaction_id) for r in outbox.results(second)] == [
        (2, "posted", "T-1"), (3, "rejected", None)]


def test_an_older_database_keeps_its_files_and_rows_under_one_state_and_one_word(
        state_db: Database, uploads: UploadStore, tenant: Tenant) -> None:
    """Version 3 kept the state twice, the JSON as ``body`` and a posted request as "sent"."""
    state_db.migrate("ingest", MIGRATIONS[:3])
    run = state_db.query_one("INSERT INTO ingest_runs (trigger, pid, started_at) VALUES ('manual', 1, 'x')"
                             " RETURNING id")
    assert run is not None
    upload = uploads.record("acme", "in/sales.csv", 1, "0" * 64).id
    uploads.set_state(upload, UploadState.PROCESSING, "1 rows queued")
    state_db.execute("INSERT INTO ingest_staged (upload_id, tenant, path, feed, snapshot, sha256, staged_at, state,"
                     " run_id, rows_total) VALUES (?, 'acme', 'in/sales.csv', 'signals', '/s', ?, 'x',"
                     " 'processing', ?, 2)", (upload, "0" * 64, run["id"]))
    for number, state in ((2, "sent"), (3, "pending")):
        state_db.execute("INSERT INTO ingest_outbox (run_id, upload_id, tenant, row_number, kind, method, url, key,"
                         " body, state) VALUES (?, ?, 'acme', ?, 'signal', 'POST', 'http://x/api', ?, '{}', ?)",
                         (run["id"], upload, number, f"k{number}", state))
    # The upgrade is an operator's step on PostgreSQL (`sftpctl migrate`: the location allows it).
    upgrader = (Database(dataclasses.replace(state_db.path, migrate=True))
                if isinstance(state_db.path, PostgresLocation) else state_db)
    migrate(upgrader)
    assert [item.upload_id for item in StagedStore(state_db).processing(["acme"])] == [upload]
    reader = Reader(state_db.path, timeout_seconds=10.0)
    try:
        assert "state" not in reader.columns("ingest_staged")
    finally:
        reader.close()
    [item] = Outbox(state_db).pending(["acme"])
    assert (item.row_number, item.body) == (3, {})
    states = state_db.query("SELECT state FROM ingest_outbox ORDER BY row_number")
    assert [row["state"] for row in states] == ["posted", "pending"]


def test_runs_remember_their_slot_and_stale_runs_are_closed(db: Database) -> None:
    runs = RunStore(db)
    assert runs.last_slot() is None
    slot = datetime(2026, 3, 8, 13, tzinfo=UTC)
    stale = runs.start(Trigger.SCHEDULED, slot, None, 4242)
    alive = runs.start(Trigger.MANUAL, None, "acme", 4243)
    assert runs.last_slot() == "2026-03-08T13:00:00.000Z"
    assert runs.mark_gone(lambda pid: pid == 4243) == 1  # only the run whose process is gone
    assert runs.get(stale.id).status == RunStatus.INTERRUPTED  # type: ignore[union-attr]
    assert runs.get(alive.id).status == RunStatus.RUNNING  # type: ignore[union-attr]
    done = runs.finish(stale.id, RunStatus.FINISHED, RunCounts(files=1, posted=3))
    assert (done.files, done.posted, done.status) == (1, 3, "finished")
    assert [run.id for run in runs.recent(1)] == [alive.id]
