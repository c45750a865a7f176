"""Counters derived from records never go down when retention deletes records, within a daemon's
life or across a restart."""

from __future__ import annotations

from pathlib import Path

from core.clock import utcnow
from core.config import Settings
from service.admin.carry import SHARED_CARRY_FILE, Carry, carry_path
from service.admin.figures import LiveFigures, gather
from service.admin.metrics import exposition
from service.admin.snapshot import Snapshot


def scraped(settings: Settings, carry: Carry, posted: int, logins: int = 0) -> str:
    snapshot = Snapshot(taken_at=utcnow(), run_durations=(1.0,) * posted)
    snapshot.rows[("acme", "posted")] = posted
    live = LiveFigures({"ok": logins}, {}, None, {})
    return exposition(gather(settings, snapshot, live), per_tenant=False, carry=carry).decode()


def test_a_count_that_shrinks_stays_monotonic(settings: Settings) -> None:
    carry = Carry()
    assert 'sftp_inbox_rows_total{outcome="posted"} 10.0' in scraped(settings, carry, 10)
    assert 'sftp_inbox_rows_total{outcome="posted"} 10.0' in scraped(settings, carry, 4)  # 6 pruned
    third = scraped(settings, carry, 5)
    assert 'sftp_inbox_rows_total{outcome="posted"} 11.0' in third  # one more posted
    assert "sftp_inbox_run_duration_seconds_count 11.0" in third
    assert 'sftp_inbox_run_duration_seconds_bucket{le="1"} 11.0' in third


def test_drops_while_the_daemon_was_down_count_and_its_own_counts_start_again(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "admin-counters.json"
    before = Carry(path)
    scraped(settings, before, 10, logins=7)
    before.save()
    after = Carry(path)  # the next process: 6 rows pruned meanwhile, its logins start at 0
    text = scraped(settings, after, 4, logins=1)
    assert 'sftp_inbox_rows_total{outcome="posted"} 10.0' in text
    assert 'sftp_inbox_logins_total{result="ok"} 1.0' in text  # a reset, as Prometheus expects of a restart


def test_an_unreadable_file_starts_from_the_records(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "admin-counters.json"
    path.write_text("{not json")
    assert 'sftp_inbox_rows_total{outcome="posted"} 3.0' in scraped(settings, Carry(path), 3)


def test_nodes_sharing_a_data_dir_each_carry_their_own_series(settings: Settings, tmp_path: Path) -> None:
    """Each node is scraped as a target of its own: node A, restarted, goes on from its own last
    value (10), not from node B's (4), which Prometheus would read as A's counter reset."""
    a, b = carry_path(tmp_path, 9090, "node-a"), carry_path(tmp_path, 9090, "node-b")
    assert len({a, b, carry_path(tmp_path, 9091, "node-a")}) == 3
    first_a, first_b = Carry(a), Carry(b)
    scraped(settings, first_a, 10)
    first_a.save()
    scraped(settings, first_b, 4)  # B started after 6 rows were pruned
    first_b.save()
    assert 'sftp_inbox_rows_total{outcome="posted"} 10.0' in scraped(settings, Carry(a), 4)
    assert 'sftp_inbox_rows_total{outcome="posted"} 4.0' in scraped(settings, Carry(b), 4)


def test_a_listener_with_no_file_yet_starts_from_the_one_shared_file_of_earlier_releases(
    settings: Settings, tmp_path: Path
) -> None:
    shared = tmp_path / SHARED_CARRY_FILE
    earlier = Carry(shared)
    scraped(settings, earlier, 10)
    earlier.save()
    mine = carry_path(tmp_path, 9090, "node-a")
    upgraded = Carry(mine, shared)
    assert 'sftp_inbox_rows_total{outcome="posted"} 10.0' in scraped(settings, upgraded, 4)  # 6 pruned
    upgraded.save()
    shared.unlink()  # from then on, its own file
    assert 'sftp_inbox_rows_total{outcome="posted"} 11.0' in scraped(settings, Carry(mine, shared), 5)
