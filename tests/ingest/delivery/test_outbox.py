"""The outbox's pace: rows delivered and left, and when the last should be delivered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.db import Database
from core.tenants import Tenant
from core.uploads import UploadStore
from ingest.delivery.outbox import Outbox, Pace, QueuedRequest, QueuedRows
from ingest.store import RunStore, StagedStore, StagedUpload, Trigger, migrate

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
