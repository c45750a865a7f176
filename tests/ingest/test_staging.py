"""Staging: snapshots, feed folders, supersede, and the scan for files that arrived another way."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest

from core.clock import iso, utcnow
from core.tenants import Tenant, TenantStore
from core.uploads import UploadStore
from ingest.pipeline import Ingest
from ingest.staging import WITHDRAWN
from tests.ingest.conftest import FakeApi, drop

SIGNALS = "transaction_id,name,partner_unique_id\nT1,Sale,1\n"
NEWER = "transaction_id,name,partner_unique_id\nT1,Sale,1\nT2,Sale,2\n"


def make_old(path: Path, seconds: float = 600.0) -> None:
    """Back-date a file's mtime, as if it had been sitting there for a while."""
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


async def test_stage_snapshots_the_upload(ingest: Ingest, tenants: TenantStore, uploads: UploadStore,
                                          tenant: Tenant) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    staged = await ingest.stage(upload, path)
    assert staged is not None and staged.feed == "signals" and staged.sha256 == upload.sha256
    snapshot = Path(staged.snapshot)
    assert snapshot == ingest.settings.data_dir / "staging" / "acme" / str(upload.id) / "sales.csv"
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    assert uploads.get(upload.id).state == "staged"  # type: ignore[union-attr]
    # The customer's later changes to in/ do not reach the snapshot.
    path.write_text("garbage", encoding="utf-8")
    assert ingest.at_rest.read_bytes(snapshot) == SIGNALS.encode()
    assert SIGNALS.encode() not in snapshot.read_bytes()  # sealed at rest


async def test_an_adopted_kept_name_becomes_the_snapshot_without_a_copy(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant
) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    kept = path.with_name(".sales.csv.kept")
    os.link(path, kept)
    adopted = ingest.stager.adopt(upload, kept)
    assert adopted == ingest.settings.data_dir / "staging" / "acme" / str(upload.id) / "sales.csv"
    assert not kept.exists() and adopted.stat().st_ino == path.stat().st_ino
    staged = await ingest.stage(upload, path, adopted)
    assert staged is not None and staged.snapshot == str(adopted) and staged.sha256 == upload.sha256
    assert uploads.get(upload.id).state == "staged"  # type: ignore[union-attr]


def test_a_kept_name_outside_in_is_not_adopted(ingest: Ingest, tenants: TenantStore, uploads: UploadStore,
                                               tenant: Tenant) -> None:
    upload, path = drop(tenants, uploads, "acme", "out/report.csv", SIGNALS)
    assert ingest.stager.adopt(upload, path) is None and path.exists()


async def test_feed_folder_picks_the_feed(ingest: Ingest, tenants: TenantStore, uploads: UploadStore,
                                          tenant: Tenant) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/calls/day.csv", "x")
    staged = await ingest.stage(upload, path)
    assert staged is not None and (staged.feed, staged.error) == ("calls", "")


async def test_a_file_in_in_goes_to_the_tenants_chosen_default_feed(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant
) -> None:
    ingest.feeds.set("acme", ingest.feeds.text("acme", "calls"), default=True)
    upload, path = drop(tenants, uploads, "acme", "in/day.csv", "x")
    staged = await ingest.stage(upload, path)
    assert staged is not None and (staged.feed, staged.error) == ("calls", "")


async def test_unknown_feed_folder_is_staged_with_the_reason(ingest: Ingest, tenants: TenantStore,
                                                             uploads: UploadStore, tenant: Tenant) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/orders/day.csv", SIGNALS)
    staged = await ingest.stage(upload, path)
    assert staged is not None
    assert staged.error.startswith("no feed named 'orders'")
    assert "feeds: calls, signals" in staged.error


async def test_a_file_changed_before_staging_is_superseded(ingest: Ingest, tenants: TenantStore,
                                                           uploads: UploadStore, tenant: Tenant) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    path.write_text(NEWER, encoding="utf-8")
    assert await ingest.stage(upload, path) is None
    record = uploads.get(upload.id)
    assert record is not None and record.state == "superseded"
    assert not (ingest.settings.data_dir / "staging" / "acme" / str(upload.id)).exists()


async def test_a_file_removed_before_staging_is_rejected_with_a_reason(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant
) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    path.unlink()
    assert await ingest.stage(upload, path) is None
    record = uploads.get(upload.id)
    assert record is not None and (record.state, record.detail) == (
        "rejected", "the file was removed before it could be staged")


async def test_upload_of_the_same_path_supersedes_the_waiting_one(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    first, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    ingest.on_upload(first, path)
    await ingest.settled()
    second, path = drop(tenants, uploads, "acme", "in/sales.csv", NEWER)
    ingest.on_upload(second, path)
    await ingest.settled()
    older = uploads.get(first.id)
    assert older is not None and (older.state, older.detail) == ("superseded", f"superseded by upload {second.id}")
    assert not (ingest.settings.data_dir / "staging" / "acme" / str(first.id)).exists()
    summary = await ingest.run()
    assert [item.upload_id for item in summary.files] == [second.id]
    # Processed once, in the latest version: T1 once, T2 once.
    assert sorted(r.body["search"]["transaction_id"] for r in fake_api.received) == ["T1", "T2"]


async def test_an_older_upload_staged_late_does_not_replace_a_newer_one(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant
) -> None:
    first, _ = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    first_copy = tenants.folders("acme").root / "first.csv"
    first_copy.write_text(SIGNALS, encoding="utf-8")
    second, path = drop(tenants, uploads, "acme", "in/sales.csv", NEWER)
    await ingest.stage(second, path)
    late = await ingest.stage(first, first_copy)
    assert late is not None and late.state == "superseded"
    newest = ingest.staged.get(second.id)
    assert newest is not None and newest.state == "staged"


async def test_an_upload_after_the_run_claimed_the_file_is_the_next_file(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    first, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    await ingest.stage(first, path)
    await ingest.run()
    second, path = drop(tenants, uploads, "acme", "in/sales.csv", NEWER)
    await ingest.stage(second, path)
    assert uploads.get(first.id).state == "posted"  # type: ignore[union-attr]
    assert uploads.get(second.id).state == "staged"  # type: ignore[union-attr]


@pytest.fixture
def scanning(ingest: Ingest) -> Ingest:
    """Scans consider files stable after 5 seconds without a change."""
    ingest.scanner.stable_seconds = 5.0
    return ingest


async def test_scan_stages_a_file_once_it_is_stable(scanning: Ingest, tenants: TenantStore,
                                                    uploads: UploadStore, tenant: Tenant) -> None:
    inbox = tenants.folders("acme").inbox
    copied = inbox / "copied.csv"
    copied.write_text(SIGNALS, encoding="utf-8")
    assert await scanning.scan() == []  # written just now: maybe still being written
    make_old(copied, 4.0)
    assert await scanning.scan() == []  # quiet for 4 s only
    make_old(copied, 6.0)
    [staged] = await scanning.scan()
    assert (staged.path, staged.feed) == ("in/copied.csv", "signals")
    [upload] = uploads.history("acme")
    assert (upload.source, upload.state, upload.size) == ("scan", "staged", len(SIGNALS))
    assert await scanning.scan() == []  # known now: never staged twice
    fresh = Ingest(scanning.settings, scanning.db, tenants, uploads)  # nor by another process
    assert await fresh.scan() == []
    assert len(uploads.history("acme")) == 1


async def test_scan_skips_hidden_and_in_progress_names(scanning: Ingest, tenants: TenantStore,
                                                       tenant: Tenant) -> None:
    inbox = tenants.folders("acme").inbox
    for relative in (".hidden.csv", "part.csv.filepart", ".sync/inner.csv"):
        target = inbox / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(SIGNALS, encoding="utf-8")
        make_old(target)
    assert await scanning.scan() == []


async def test_scan_skips_empty_files(scanning: Ingest, tenants: TenantStore, uploads: UploadStore,
                                      tenant: Tenant) -> None:
    """An empty file (an abandoned or zero-byte upload the front door published) is no upload."""
    empty = tenants.folders("acme").inbox / "empty.csv"
    empty.write_bytes(b"")
    make_old(empty)
    assert await scanning.scan() == [] and uploads.history("acme") == []
    empty.write_text(SIGNALS, encoding="utf-8")  # written to later: now it is one
    make_old(empty)
    assert [staged.path for staged in await scanning.scan()] == ["in/empty.csv"]


async def test_scan_leaves_alone_files_that_came_through_sftp(
    scanning: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant
) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/calls/day.csv", SIGNALS)
    await scanning.stage(upload, path)
    make_old(path)
    assert await scanning.scan() == []
    assert [item.id for item in uploads.history("acme")] == [upload.id]


async def test_scan_stages_an_upload_recorded_but_never_staged(
    scanning: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant
) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)  # crash before staging
    make_old(path)
    [staged] = await scanning.scan()
    assert staged.upload_id == upload.id
    assert [item.id for item in uploads.history("acme")] == [upload.id]


async def test_scan_stages_an_upload_recorded_after_it_saw_the_file_and_never_staged(
    scanning: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant
) -> None:
    """A front door publishes a file again (the same bytes: a client's retry), and records it
    only after a scan saw it (records land after the close is answered), then dies before staging
    it: the scan seeing the file unchanged looks again once the record is older than a stable file."""
    first, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    await scanning.stage(first, path)
    make_old(path, 60.0)  # published again: the same bytes, a new mtime
    assert await scanning.scan() == []  # the same content as the last upload: nothing new
    again = uploads.record("acme", "in/sales.csv", len(SIGNALS), hashlib.sha256(SIGNALS.encode()).hexdigest())
    assert await scanning.scan() == []  # recorded just now: its front door stages it
    scanning.db.execute("UPDATE uploads SET received_at = ? WHERE id = ?",
                        (iso(utcnow() - timedelta(seconds=6)), again.id))
    [staged] = await scanning.scan()
    assert staged.upload_id == again.id
    assert uploads.get(first.id).state == "superseded"  # type: ignore[union-attr]
    assert await scanning.scan() == []


async def test_scan_records_a_changed_file_as_a_new_upload(
    scanning: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant
) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    await scanning.stage(upload, path)
    path.write_text(NEWER, encoding="utf-8")
    make_old(path)
    [staged] = await scanning.scan()
    assert staged.upload_id != upload.id
    assert uploads.get(upload.id).state == "superseded"  # type: ignore[union-attr]


def nest_past_path_max(top: Path) -> None:
    """Folders nested below ``top`` until a file's path in the last is over 4096 bytes (the OS's
    PATH_MAX) while the folder's own is not: the walk lists the folder, and the file's path is one
    the OS refuses. Made relative to an open folder, as only such tricks can."""
    name = "d" * 200
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    length = len(str(top).encode())
    try:
        while length + len(name) + 1 < 4095:
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, length = inner, length + len(name) + 1
        file = os.open("f" * 250 + ".csv", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
        os.write(file, SIGNALS.encode())
        os.close(file)
        old = time.time() - 600
        os.utime("f" * 250 + ".csv", (old, old), dir_fd=fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("max_depth", [8, 1000])
async def test_a_folder_nested_past_the_path_limit_stops_no_scan(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, max_depth: int
) -> None:
    """Within the depth limit the walk never goes there; past it the OS refuses, and the scan
    skips what it cannot reach, for this tenant and every other."""
    tenants.add("beta", "ops@beta.example", "a-long-password-for-beta")
    ingest.scanner.max_folder_depth = max_depth
    nest_past_path_max(tenants.folders("acme").inbox)
    for name in ("acme", "beta"):
        path = tenants.folders(name).inbox / "ok.csv"
        path.write_text(SIGNALS, encoding="utf-8")
        make_old(path)
    staged = await ingest.scan()
    assert sorted((item.tenant, item.path) for item in staged) == [("acme", "in/ok.csv"), ("beta", "in/ok.csv")]


async def test_a_waiting_file_renamed_then_removed_is_never_processed_under_either_name(
    scanning: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    await scanning.stage(upload, path)
    make_old(path)
    renamed = path.with_name("renamed.csv")
    path.rename(renamed)  # as the customer's client does, before any run
    [again] = await scanning.scan()  # the new name is a file like any other
    assert again.path == "in/renamed.csv"
    old = uploads.get(upload.id)
    assert old is not None and (old.state, old.detail) == ("superseded", WITHDRAWN)
    assert not Path(scanning.staged.get(upload.id).snapshot).exists()  # type: ignore[union-attr]
    renamed.unlink()
    assert await scanning.scan() == []
    assert [item.state for item in uploads.history("acme")] == ["superseded", "superseded"]
    summary = await scanning.run()
    assert summary.files == [] and fake_api.received == []


async def test_a_waiting_file_the_walk_did_not_see_is_not_withdrawn_while_it_is_there(
    scanning: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder the OS refuses to list is skipped by the walk (root here lists every folder, so
    the refusal is simulated): its files are not gone, and their uploads stay waiting."""
    upload, path = drop(tenants, uploads, "acme", "in/calls/day.csv", SIGNALS)
    await scanning.stage(upload, path)
    monkeypatch.setattr(scanning.scanner, "_files", lambda inbox: [])
    await scanning.scan()
    assert uploads.get(upload.id).state == "staged"  # type: ignore[union-attr]
    path.unlink()
    await scanning.scan()
    assert uploads.get(upload.id).state == "superseded"  # type: ignore[union-attr]


async def test_a_sealed_upload_is_staged_by_its_plaintext(ingest: Ingest, tenants: TenantStore,
                                                         uploads: UploadStore, tenant: Tenant) -> None:
    """An upload sealed at rest: its record has the plaintext's size and sha256, and so does the snapshot."""
    upload, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS, at_rest=ingest.at_rest)
    assert SIGNALS.encode() not in path.read_bytes()
    staged = await ingest.stage(upload, path)
    assert staged is not None and staged.sha256 == upload.sha256 and staged.state == "staged"
    assert ingest.at_rest.read_bytes(Path(staged.snapshot)) == SIGNALS.encode()


async def test_scan_measures_sealed_files_by_their_plaintext(scanning: Ingest, tenants: TenantStore,
                                                            uploads: UploadStore, tenant: Tenant) -> None:
    """A sealed empty file is no upload; a sealed file found by the scan is recorded with its
    plaintext's size and sha256, so it matches what the front door recorded and is not staged twice."""
    inbox = tenants.folders("acme").inbox
    scanning.at_rest.write_bytes(inbox / "empty.csv", b"")
    make_old(inbox / "empty.csv")
    assert (inbox / "empty.csv").stat().st_size > 0
    assert await scanning.scan() == [] and uploads.history("acme") == []

    scanning.at_rest.write_bytes(inbox / "found.csv", SIGNALS.encode())
    make_old(inbox / "found.csv")
    [staged] = await scanning.scan()
    [found] = uploads.history("acme")
    assert (found.size, staged.sha256) == (len(SIGNALS), hashlib.sha256(SIGNALS.encode()).hexdigest())

    upload, path = drop(tenants, uploads, "acme", "in/sent.csv", NEWER, at_rest=scanning.at_rest)
    await scanning.stage(upload, path)
    make_old(path, 10.0)  # stable, and not written after it was recorded
    assert await scanning.scan() == []  # the very upload the front door recorded: known


async def test_a_damaged_sealed_file_is_logged_once_and_stops_no_scan(
    scanning: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = tenants.folders("acme").inbox
    scanning.at_rest.write_bytes(inbox / "cut.csv", SIGNALS.encode())
    with open(inbox / "cut.csv", "r+b") as raw:
        raw.truncate(100)
    (inbox / "fine.csv").write_text(SIGNALS, encoding="utf-8")
    for name in ("cut.csv", "fine.csv"):
        make_old(inbox / name)
    assert [staged.path for staged in await scanning.scan()] == ["in/fine.csv"]
    assert await scanning.scan() == []  # the next pass (every minute) does not read or log it again
    assert caplog.text.count("staging.damaged") == 1
    scanning.at_rest.write_bytes(inbox / "cut.csv", SIGNALS.encode())  # the tenant sends it again
    make_old(inbox / "cut.csv")
    assert [staged.path for staged in await scanning.scan()] == ["in/cut.csv"]


async def test_a_scan_compares_a_file_with_the_last_upload_of_its_path_whatever_came_before(
    scanning: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    """The scan looks up the path's last upload (not the tenant's history): a file back to an
    older version's content is a new upload; the last version, unchanged, is no upload."""
    first, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    await scanning.stage(first, path)
    await scanning.run()
    other, elsewhere = drop(tenants, uploads, "acme", "in/other.csv", SIGNALS)  # same content, another path
    await scanning.stage(other, elsewhere)
    second, path = drop(tenants, uploads, "acme", "in/sales.csv", NEWER)
    await scanning.stage(second, path)
    await scanning.run()
    make_old(path)
    assert await scanning.scan() == []  # the last upload of the path, unchanged
    path.write_text(SIGNALS, encoding="utf-8")  # the first upload's content again
    make_old(path)
    [staged] = await scanning.scan()
    assert staged.upload_id not in {first.id, second.id, other.id} and staged.path == "in/sales.csv"
    assert [item.state for item in uploads.history("acme")] == ["staged", "posted", "posted", "posted"]


async def test_with_history_a_new_upload_still_supersedes_only_the_waiting_one_of_its_path(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    done, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS)
    await ingest.stage(done, path)
    await ingest.run()
    beside, path = drop(tenants, uploads, "acme", "in/other.csv", SIGNALS)
    await ingest.stage(beside, path)
    waiting, path = drop(tenants, uploads, "acme", "in/sales.csv", NEWER)
    await ingest.stage(waiting, path)
    newest, path = drop(tenants, uploads, "acme", "in/sales.csv", SIGNALS + "T3,Sale,3\n")
    await ingest.stage(newest, path)
    states = {upload.id: (upload.state, upload.detail) for upload in uploads.history("acme")}
    assert states[done.id][0] == "posted"
    assert states[beside.id][0] == "staged"
    assert states[waiting.id] == ("superseded", f"superseded by upload {newest.id}")
    assert states[newest.id][0] == "staged"


async def test_the_walk_goes_folder_by_folder_in_name_order_and_follows_no_link(
    scanning: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant
) -> None:
    """Files of a folder before its sub-folders, each by name (the order uploads are recorded
    in); a link to a folder or a file outside ``in/`` is never read."""
    inbox = tenants.folders("acme").inbox
    outside = tenants.folders("acme").root / "elsewhere"
    outside.mkdir()
    (outside / "secret.csv").write_text(SIGNALS, encoding="utf-8")
    for relative in ("b.csv", "calls/z.csv", "calls/a.csv", "a.csv", "signals/deeper/x.csv", "signals/y.csv"):
        target = inbox / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(SIGNALS, encoding="utf-8")
        make_old(target)
    (inbox / "linked").symlink_to(outside, target_is_directory=True)
    (inbox / "link.csv").symlink_to(outside / "secret.csv")
    staged = await scanning.scan()
    assert [item.path for item in staged] == ["in/a.csv", "in/b.csv", "in/calls/a.csv", "in/calls/z.csv",
                                              "in/signals/y.csv", "in/signals/deeper/x.csv"]
    assert [upload.id for upload in reversed(uploads.history("acme"))] == [item.upload_id for item in staged]
