"""Counters derived from records never go down when retention deletes records, within a daemon's
life or across a restart."""

from __future__ import annotations

from pathlib import Path

from core.clock import utcnow
from core.config import Settings
from service.admin.carry import Carry
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
