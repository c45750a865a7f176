"""The database read behind a scrape: every figure from the tables, and cut off at its deadline."""

from __future__ import annotations

import pytest

from core.config import Settings
from core.tenants import open_state
from ingest.store import migrate
from service.admin.snapshot import SnapshotError, SnapshotReader

ROWS = 100_000


@pytest.fixture
def history(settings: Settings) -> Settings:
    """One tenant with a file of ROWS posted rows, one of them still pending in the outbox."""
    db = open_state(settings.state_location)
    migrate(db)
    with db.transaction() as conn:
        conn.execute("INSERT INTO tenants (name, email, api_token, created_at, updated_at)"
                     " VALUES ('acme', 'a@example.com', 't1', '2026-01-01', '2026-01-01')")
        conn.execute("INSERT INTO uploads (id, tenant, path, size, sha256, received_at, source, state)"
                     " VALUES (1, 'acme', 'in/<b>.csv', 10, '', '2026-01-01T00:00:00.000Z', 'sftp', 'processing')")
        conn.execute("INSERT INTO ingest_runs (id, trigger, pid, started_at) VALUES (1, 'manual', 1, "
                     "'2026-01-01T00:00:00.000Z')")
        conn.execute("INSERT INTO ingest_staged (upload_id, tenant, path, feed, snapshot, sha256, staged_at)"
                     " VALUES (1, 'acme', 'in/<b>.csv', 'signals', '', '', '2026-01-01T00:00:00.000Z')")
        conn.executemany("INSERT INTO ingest_rows (upload_id, row_number, status) VALUES (1, ?, 'posted')",
                         [(row,) for row in range(ROWS)])
        conn.execute("INSERT INTO ingest_outbox (run_id, upload_id, tenant, row_number, kind, method, url, key,"
                     " text, queued_at) VALUES (1, 1, 'acme', ?, 'signal', 'POST', '', '', '{}',"
                     " '2026-01-01T00:00:00.000Z')", (ROWS,))
    db.close()
    return settings


async def test_the_figures_come_from_the_tables(history: Settings) -> None:
    reader = SnapshotReader(history.state_location, timeout_seconds=10.0)
    try:
        snapshot = await reader.snapshot()
        again = await reader.snapshot()
    finally:
        await reader.close()
    assert again is snapshot  # a read younger than a second is reused
    assert snapshot.rows == {("acme", "posted"): ROWS}
    assert snapshot.outbox_pending == {"acme": 1}
    assert snapshot.outbox_oldest is not None and snapshot.outbox_oldest.path == "in/<b>.csv"
    assert snapshot.runs == {"running": 1}
    [tenant] = snapshot.tenants
    assert (tenant.name, tenant.files_waiting, tenant.rows_pending, tenant.has_login) == ("acme", 1, 1, False)


async def test_a_read_past_its_deadline_is_cut_off(history: Settings) -> None:
    reader = SnapshotReader(history.state_location, timeout_seconds=0.001)
    try:
        with pytest.raises(SnapshotError, match=r"did not answer within 0\.001 s"):
            await reader.snapshot()
    finally:
        await reader.close()
