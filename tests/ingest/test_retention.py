"""Retention: real uploads, runs, files and database; only the clock is moved (``now`` passed in)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.clock import iso, utcnow
from core.config import RetentionSettings
from core.db import Database
from core.tenants import Tenant, TenantStore
from core.uploads import Upload, UploadStore
from ingest import retention
from ingest.claims import PRUNE, Claims
from ingest.pipeline import Ingest
from ingest.retention import (
    ASIDE_PREFIX,
    LEFTOVER,
    MAIL,
    REPORT,
    SNAPSHOT,
    UPLOAD,
    Pruner,
    PruneResult,
    prune_hourly,
    prune_once,
)
from ingest.staging import STAGING_DIR
from tests.conftest import TEST_PASSWORD
from tests.ingest.conftest import FakeApi, drop, status

CLEAN = "transaction_id,name,partner_unique_id\nT1,Sale,1\nT2,Sale,2\n"
# Same size as CLEAN, other bytes: only the sha256 tells them apart.
CLEAN_EDITED = "transaction_id,name,partner_unique_id\nT1,Sale,1\nT9,Sale,2\n"
ONE_BAD_ROW = "transaction_id,name,partner_unique_id,sale_amount\nT1,Sale,1,10.50\nT2,Sale,2,12.345\n"
REFUSED = "transaction_id,partner_unique_id\nT1,1\n"


def days_later(days: float) -> datetime:
    return utcnow() + timedelta(days=days)


async def processed(ingest: Ingest, tenants: TenantStore, uploads: UploadStore, relative: str, content: str,
                    tenant: str = "acme") -> Upload:
    upload, path = drop(tenants, uploads, tenant, relative, content)
    await ingest.stage(upload, path)
    await ingest.run()
    return upload


def snapshot_of(ingest: Ingest, upload: Upload) -> Path:
    return ingest.settings.data_dir / STAGING_DIR / upload.tenant / str(upload.id)


def report_of(ingest: Ingest, upload: Upload) -> Path:
    staged = ingest.staged.get(upload.id)
    assert staged is not None and staged.report is not None
    return Path(staged.report)


def bodies(db: Database, upload: Upload) -> list[str]:
    return [row["text"] for row in db.query("SELECT text FROM ingest_outbox WHERE upload_id = ? ORDER BY id",
                                            (upload.id,))]


def count(db: Database, table: str, upload: Upload) -> int:
    row = db.query_one(f"SELECT COUNT(*) AS n FROM {table} WHERE upload_id = ?", (upload.id,))
    assert row is not None
    return int(row["n"])


def deleted(result: PruneResult) -> set[tuple[str, str, int | None]]:
    return {(item.what, item.rule, item.upload_id) for item in result.deleted}


@pytest.fixture
def pruner(ingest: Ingest, tenants: TenantStore) -> Pruner:
    return Pruner(ingest.settings, ingest.db, tenants)


async def test_a_processed_upload_goes_after_upload_days_its_report_after_report_days(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    upload = await processed(ingest, tenants, uploads, "in/sales.csv", CLEAN)
    inbox_file = tenants.folders("acme").root / "in/sales.csv"
    before = uploads.get(upload.id)
    assert before is not None and before.state == "posted"

    young = pruner.prune(days_later(29))
    assert young.deleted == [] and young.kept == []
    assert inbox_file.exists() and snapshot_of(ingest, upload).is_dir() and all(bodies(ingest.db, upload))

    result = pruner.prune(days_later(31))
    assert deleted(result) == {(UPLOAD, "upload_days", upload.id), (SNAPSHOT, "upload_days", upload.id)}
    assert not inbox_file.exists() and not snapshot_of(ingest, upload).exists()
    assert bodies(ingest.db, upload) == ["", ""] and result.state.bodies == 2
    assert report_of(ingest, upload).exists() and count(ingest.db, "ingest_rows", upload) == 2
    # The upload history keeps name, size, sha256 and outcome.
    assert uploads.get(upload.id) == before
    assert pruner.prune(days_later(31)).deleted == []  # each upload is visited once

    later = pruner.prune(days_later(91))
    assert deleted(later) == {(REPORT, "report_days", upload.id)}
    assert not report_of(ingest, upload).exists() and count(ingest.db, "ingest_rows", upload) == 0
    assert later.state.row_results == 2 and uploads.get(upload.id) == before
    assert tenants.folders("acme").reports_dir.is_dir() and tenants.folders("acme").inbox.is_dir()


@pytest.mark.parametrize("newer", ["transaction_id,name,partner_unique_id\nT7,Sale,7\n", CLEAN_EDITED])
async def test_a_newer_upload_of_the_same_name_is_never_deleted(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi, newer: str,
) -> None:
    upload = await processed(ingest, tenants, uploads, "in/sales.csv", CLEAN)
    replacement, path = drop(tenants, uploads, "acme", "in/sales.csv", newer)
    result = pruner.prune(days_later(31))
    assert deleted(result) == {(SNAPSHOT, "upload_days", upload.id)}
    [kept] = result.kept
    assert (kept.what, kept.upload_id) == (UPLOAD, upload.id) and "newer upload" in kept.reason
    assert path.read_text() == newer
    # Once processed in its turn, the newer one goes by its own age.
    await ingest.stage(replacement, path)
    await ingest.run()
    assert (UPLOAD, "upload_days", replacement.id) in deleted(pruner.prune(days_later(31)))
    assert not path.exists()


async def test_a_dry_run_deletes_nothing_and_lists_what_the_prune_deletes(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    first = await processed(ingest, tenants, uploads, "in/a.csv", ONE_BAD_ROW)
    second = await processed(ingest, tenants, uploads, "in/b.csv", REFUSED)
    files = sorted(path for path in ingest.settings.data_dir.rglob("*") if path.is_file() and path.suffix != ".db"
                   and "-wal" not in path.name and "-shm" not in path.name)
    state = (bodies(ingest.db, first), count(ingest.db, "ingest_rows", first), count(ingest.db, "ingest_rows", second))
    moment = days_later(200)

    dry = pruner.prune(moment, dry_run=True)
    assert dry.dry_run and {item.what for item in dry.deleted} == {UPLOAD, SNAPSHOT, REPORT, MAIL}
    assert all(path.exists() for path in files)
    assert (bodies(ingest.db, first), count(ingest.db, "ingest_rows", first),
            count(ingest.db, "ingest_rows", second)) == state

    real = pruner.prune(moment)
    assert real.deleted == dry.deleted and real.state == dry.state and real.kept == dry.kept
    assert not any(Path(item.path).exists() for item in real.deleted)


async def test_whole_passes_are_recorded_for_the_operator_and_only_the_last_few_kept(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A dry run or one tenant's prune is no pass of the rules over everything: not recorded."""
    await processed(ingest, tenants, uploads, "in/a.csv", ONE_BAD_ROW)
    pruner.prune(days_later(200), dry_run=True)
    pruner.prune(days_later(200), tenant="acme")
    assert ingest.db.query("SELECT * FROM retention_passes") == []
    await processed(ingest, tenants, uploads, "in/b.csv", ONE_BAD_ROW)
    result = pruner.prune(days_later(200))
    passes = [tuple(row) for row in ingest.db.query("SELECT finished_at, files, problems FROM retention_passes")]
    assert passes == [(result.now, len(result.deleted), 0)] and len(result.deleted) > 0
    monkeypatch.setattr(retention, "PASSES_KEPT", 3)
    moments = [days_later(day) for day in range(201, 206)]
    for moment in moments:
        pruner.prune(moment)
    kept = [row["finished_at"] for row in ingest.db.query("SELECT finished_at FROM retention_passes ORDER BY id")]
    assert kept == [iso(moment) for moment in moments[-3:]]  # the newest 3


async def test_zero_days_deletes_at_the_first_prune_after_processing(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    tenants.set_retention("acme", {"upload_days": 0, "report_days": 0})
    waiting, path = drop(tenants, uploads, "acme", "in/later.csv", CLEAN)  # received, not processed yet
    upload = await processed(ingest, tenants, uploads, "in/sales.csv", CLEAN)
    result = pruner.prune(utcnow())
    assert deleted(result) == {(UPLOAD, "upload_days", upload.id), (SNAPSHOT, "upload_days", upload.id),
                               (REPORT, "report_days", upload.id)}
    assert path.exists() and uploads.get(waiting.id) is not None


async def test_a_tenants_own_rules_win_over_the_installations(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, fake_api: FakeApi,
) -> None:
    store = TenantStore(tenants.db, tenants.tenants_dir, tenants.hasher, RetentionSettings(upload_days=10))
    for name in ("acme", "beta"):
        store.add(name, f"ops@{name}.example", TEST_PASSWORD)
    store.set_retention("acme", {"upload_days": 3})
    acme = await processed(ingest, store, uploads, "in/a.csv", CLEAN, tenant="acme")
    beta = await processed(ingest, store, uploads, "in/b.csv", CLEAN, tenant="beta")
    pruner = Pruner(ingest.settings, ingest.db, store)

    assert {item.upload_id for item in pruner.prune(days_later(4)).deleted} == {acme.id}
    assert {item.upload_id for item in pruner.prune(days_later(9)).deleted} == set()
    assert {item.upload_id for item in pruner.prune(days_later(11)).deleted} == {beta.id}


async def test_rejected_files_go_after_rejected_days(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    tenants.set_retention("acme", {"rejected_days": 2})
    good = await processed(ingest, tenants, uploads, "in/good.csv", CLEAN)
    bad = await processed(ingest, tenants, uploads, "in/bad.csv", REFUSED)
    assert uploads.get(bad.id).state == "rejected"  # type: ignore[union-attr]
    result = pruner.prune(days_later(3))
    assert deleted(result) == {(UPLOAD, "rejected_days", bad.id), (SNAPSHOT, "rejected_days", bad.id)}
    assert (tenants.folders("acme").root / "in/good.csv").exists() and snapshot_of(ingest, good).exists()


async def test_pruning_one_tenant_leaves_the_others(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    tenants.add("beta", "ops@beta.example", TEST_PASSWORD)
    beta = await processed(ingest, tenants, uploads, "in/b.csv", CLEAN, tenant="beta")
    acme = await processed(ingest, tenants, uploads, "in/a.csv", CLEAN)
    assert {item.upload_id for item in pruner.prune(days_later(31), tenant="acme").deleted} == {acme.id}
    assert (tenants.folders("beta").root / "in/b.csv").exists() and snapshot_of(ingest, beta).exists()


async def test_a_file_not_finished_is_never_pruned(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    fake_api.answer(*[status(503)] * 20)  # the destination is down: the rows stay pending
    upload = await processed(ingest, tenants, uploads, "in/sales.csv", CLEAN)
    assert uploads.get(upload.id).state == "processing"  # type: ignore[union-attr]
    result = pruner.prune(days_later(10_000))
    assert {item.what for item in result.deleted} == {MAIL}  # the mail that told of the trouble
    assert result.state.outbox_rows == result.state.bodies == result.state.row_results == 0
    assert (tenants.folders("acme").root / "in/sales.csv").exists() and snapshot_of(ingest, upload).is_dir()
    assert all(bodies(ingest.db, upload)) and len(bodies(ingest.db, upload)) == 2


async def test_the_state_of_finished_files_goes_with_their_report(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    first = await processed(ingest, tenants, uploads, "in/a.csv", ONE_BAD_ROW)
    second = await processed(ingest, tenants, uploads, "in/b.csv", CLEAN)
    notices = ingest.db.query_one("SELECT COUNT(*) AS n FROM ingest_notices WHERE sent_at IS NOT NULL")
    assert notices is not None and notices["n"] == 1
    stray = tenants.folders("acme").reports_dir / "notes.txt"  # not a report we wrote
    stray.write_text("keep me")

    result = pruner.prune(days_later(91))
    assert {(item.what, item.upload_id) for item in result.deleted if item.what == REPORT} == {
        (REPORT, first.id), (REPORT, second.id)}
    assert count(ingest.db, "ingest_rows", first) == count(ingest.db, "ingest_rows", second) == 0
    assert count(ingest.db, "ingest_outbox", first) == 0
    # The newest outbox row stays, so no id is ever given twice (the ledger's replay memory).
    assert count(ingest.db, "ingest_outbox", second) == 1
    assert result.state.notices == 1 and ingest.db.query("SELECT * FROM ingest_notices") == []
    assert stray.read_text() == "keep me"
    assert [u.state for u in uploads.history("acme")] == ["posted", "partly failed"]


async def test_a_report_and_mail_whose_notice_is_unsent_are_kept(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    upload = await processed(ingest, tenants, uploads, "in/a.csv", ONE_BAD_ROW)
    [mail] = ingest.settings.mail_spool.glob("*.eml")
    # As after a crash between writing the mail and marking it sent: the next run sends it again.
    ingest.db.execute("UPDATE ingest_notices SET sent_at = NULL")
    result = pruner.prune(days_later(91))
    assert {item.what for item in result.deleted} == {UPLOAD, SNAPSHOT}
    assert report_of(ingest, upload).exists() and mail.exists() and count(ingest.db, "ingest_rows", upload) == 2
    ingest.db.execute("UPDATE ingest_notices SET sent_at = mail_key")
    assert {item.what for item in pruner.prune(days_later(91)).deleted} == {REPORT, MAIL}


async def test_mails_go_by_their_age_on_disk_and_only_ours(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    await processed(ingest, tenants, uploads, "in/a.csv", ONE_BAD_ROW)
    [mail] = ingest.settings.mail_spool.glob("*.eml")
    other = ingest.settings.mail_spool / "operator-notes.eml"
    other.write_text("not ours")
    assert MAIL not in {item.what for item in pruner.prune(days_later(89)).deleted}
    assert mail.exists()
    assert [item.path for item in pruner.prune(days_later(91)).deleted if item.what == MAIL] == [str(mail)]
    assert other.exists()


async def test_old_run_records_go_but_those_that_name_files_and_the_latest(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    for _ in range(3):
        await ingest.run()  # nothing to do: runs that name no file
    await processed(ingest, tenants, uploads, "in/a.csv", CLEAN)
    await ingest.run()
    runs = [run.id for run in ingest.runs(10)]
    assert len(runs) == 5
    assert pruner.prune(days_later(89)).state.runs == 0
    assert pruner.prune(days_later(91), tenant="acme").state.runs == 0  # runs go in a whole prune only
    assert pruner.prune(days_later(91)).state.runs == 3
    assert [run.id for run in ingest.runs(10)] == runs[:2]  # the latest, and the one that processed a.csv


async def test_a_link_in_the_inbox_is_never_followed(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi, tmp_path: Path,
) -> None:
    upload = await processed(ingest, tenants, uploads, "in/sales.csv", CLEAN)
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text(CLEAN)
    link = tenants.folders("acme").root / "in/sales.csv"
    link.unlink()
    link.symlink_to(elsewhere)
    result = pruner.prune(days_later(31))
    assert [(item.what, item.upload_id) for item in result.kept] == [(UPLOAD, upload.id)]
    assert link.is_symlink() and elsewhere.read_text() == CLEAN


async def test_the_daemons_pruning_prunes_at_start_and_goes_on(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    tenants.set_retention("acme", {"upload_days": 0})
    await processed(ingest, tenants, uploads, "in/sales.csv", CLEAN)
    inbox_file = tenants.folders("acme").root / "in/sales.csv"
    task = asyncio.create_task(prune_hourly(pruner, ingest.claims, interval=0.01))
    try:
        for _ in range(500):
            if not inbox_file.exists():
                break
            await asyncio.sleep(0.01)
        assert not inbox_file.exists() and not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_nodes_of_a_cluster_prune_once_an_hour_between_them(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    """Two daemons on one database (each its own claims and pruner): the first to prune does this
    hour's pass; the other finds it done, or under way, and skips it; once half an hour has gone
    by the next pass is due, whichever node comes first."""
    other = Pruner(ingest.settings, ingest.db, tenants)
    other_claims = Claims(ingest.db)
    tenants.set_retention("acme", {"upload_days": 0})
    assert await prune_once(pruner, ingest.claims)
    await processed(ingest, tenants, uploads, "in/sales.csv", CLEAN)
    inbox_file = tenants.folders("acme").root / "in/sales.csv"
    assert not await prune_once(other, other_claims)  # pruned already
    assert inbox_file.exists()
    # Half an hour later, as the clock would have it.
    ingest.db.execute("UPDATE retention_passes SET finished_at = ?", (iso(utcnow() - timedelta(minutes=30)),))
    with ingest.claims.held(PRUNE):  # the first node's pass under way
        assert not await prune_once(other, other_claims)
    assert inbox_file.exists()
    assert await prune_once(other, other_claims)
    assert not inbox_file.exists()
    assert len(ingest.db.query("SELECT * FROM retention_passes")) == 2


async def test_a_file_a_killed_prune_left_aside_goes_an_hour_later(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, tenant: Tenant, fake_api: FakeApi,
) -> None:
    inbox = tenants.folders("acme").inbox
    (inbox / "calls").mkdir()
    leftover = inbox / "calls" / f"{ASIDE_PREFIX}0123456789abcdef"
    leftover.write_text(CLEAN)
    lookalike = inbox / "retention-notes.csv"
    lookalike.write_text(CLEAN)
    assert pruner.prune(utcnow()).deleted == []
    [item] = pruner.prune(utcnow() + timedelta(hours=2)).deleted
    assert (item.what, item.path, item.rule) == (UPLOAD, str(leftover), LEFTOVER)
    assert not leftover.exists() and lookalike.exists()


async def test_a_files_counts_outlive_its_pruned_per_row_results(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    upload = await processed(ingest, tenants, uploads, "in/sales.csv", CLEAN)
    [before] = ingest.upload_states("acme")
    pruner.prune(days_later(91))
    assert count(ingest.db, "ingest_rows", upload) == 0  # the per-row results are gone ...
    [after] = ingest.upload_states("acme")
    assert (after.posted, after.failed, after.rejected, after.pending) == (before.posted, 0, 0, 0) != (0, 0, 0, 0)


async def test_a_sealed_upload_is_told_by_its_plaintext_and_pruned(
    ingest: Ingest, pruner: Pruner, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    """An upload sealed at rest is larger on disk than its record: it is still that upload (its
    plaintext's size and sha256) and goes; a sealed newer upload of the same size stays."""
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", CLEAN, at_rest=ingest.at_rest)
    await ingest.stage(upload, path)
    await ingest.run()
    edited, edited_path = drop(tenants, uploads, "acme", "in/other.csv", CLEAN, at_rest=ingest.at_rest)
    await ingest.stage(edited, edited_path)
    await ingest.run()
    ingest.at_rest.write_bytes(edited_path, CLEAN_EDITED.encode())  # replaced since, same size

    result = pruner.prune(days_later(31))
    assert (UPLOAD, "upload_days", upload.id) in deleted(result) and not path.exists()
    [kept] = result.kept
    assert kept.upload_id == edited.id and "another sha256" in kept.reason and edited_path.exists()
