"""The lockout rules themselves, on a clock the tests move by hand."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from core.config import DefenderSettings
from core.db import Database
from core.tenants import open_state
from sftpd.defender import Defender

SOURCE = "203.0.113.7"
OTHER_SOURCE = "198.51.100.9"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def defender(state_db: Database, clock: Clock) -> Defender:
    return Defender(state_db, DefenderSettings(), clock)


def fail(defender: Defender, times: int, account: str = "acme", source: str = SOURCE) -> None:
    for _ in range(times):
        defender.record_failure(account, source)


def test_five_failures_lock_the_account_for_fifteen_minutes(
    defender: Defender, clock: Clock
) -> None:
    fail(defender, 4)
    assert not defender.is_locked("acme", SOURCE)
    fail(defender, 1)
    assert defender.is_locked("acme", SOURCE)
    assert defender.is_locked("acme", OTHER_SOURCE), "locked for every source it never used"
    assert not defender.is_locked("globex", SOURCE)
    account, pair = defender.lockouts()
    assert (pair.kind, pair.key, pair.source, pair.failures) == ("pair", "acme", SOURCE, 5)
    assert (account.kind, account.key, account.source) == ("account", "acme", "")
    assert account.failures == 5
    assert account.until == pair.until == "2024-03-10T12:15:00.000Z"

    clock.advance(899)
    assert defender.is_locked("acme", SOURCE)
    clock.advance(1)
    assert not defender.is_locked("acme", SOURCE)
    assert defender.lockouts() == []


def test_failures_older_than_the_window_do_not_count(defender: Defender, clock: Clock) -> None:
    fail(defender, 4)
    clock.advance(301)
    fail(defender, 4)
    assert not defender.is_locked("acme", SOURCE)
    fail(defender, 1)
    assert defender.is_locked("acme", SOURCE)


def test_a_good_login_forgets_the_account_failures(defender: Defender) -> None:
    fail(defender, 4)
    defender.record_success("acme", SOURCE)
    fail(defender, 4)
    assert not defender.is_locked("acme", SOURCE)


def test_a_source_with_many_failures_is_locked_for_every_account(defender: Defender) -> None:
    for number in range(20):
        defender.record_failure(f"guess-{number}", SOURCE)
    lockout = defender.lockout_for("acme", SOURCE)
    assert lockout is not None and (lockout.kind, lockout.key) == ("source", SOURCE)
    assert not defender.is_locked("acme", OTHER_SOURCE)
    assert defender.unlock_source(SOURCE)
    assert not defender.is_locked("acme", SOURCE)
    assert not defender.unlock_source(SOURCE)


def test_unknown_names_are_locked_like_real_ones(defender: Defender) -> None:
    fail(defender, 5, account="no-such-tenant")
    assert defender.is_locked("no-such-tenant", SOURCE)


def test_the_account_lockout_spares_a_source_that_logged_in_before(defender: Defender) -> None:
    defender.record_success("acme", OTHER_SOURCE)
    fail(defender, 5)
    assert defender.is_locked("acme", SOURCE)
    assert defender.is_locked("acme", "192.0.2.1"), "a stranger is still locked out"
    assert not defender.is_locked("acme", OTHER_SOURCE), "the tenant's own address keeps working"
    assert not defender.is_locked("globex", OTHER_SOURCE)
    assert defender.is_known("acme", OTHER_SOURCE) and not defender.is_known("globex", OTHER_SOURCE)


def test_failures_from_a_known_source_lock_that_pair_only(defender: Defender) -> None:
    defender.record_success("acme", SOURCE)
    fail(defender, 5)
    lockout = defender.lockout_for("acme", SOURCE)
    assert lockout is not None and (lockout.kind, lockout.source) == ("pair", SOURCE)
    assert not defender.is_locked("globex", SOURCE), "the address itself is not locked yet"


def test_a_distributed_attack_locks_the_account_for_strangers_only(
    defender: Defender, clock: Clock
) -> None:
    defender.record_success("acme", OTHER_SOURCE)
    for number in range(5):
        fail(defender, 1, source=f"192.0.2.{number}")
    assert [lock.kind for lock in defender.lockouts()] == ["account"]
    assert defender.is_locked("acme", "192.0.2.200")
    assert not defender.is_locked("acme", OTHER_SOURCE)


def test_a_known_source_is_forgotten_after_the_configured_days(
    state_db: Database, clock: Clock
) -> None:
    day = 86400
    settings = DefenderSettings(known_source_days=2, account_lockout_seconds=10 * day)
    defender = Defender(state_db, settings, clock)
    defender.record_success("acme", OTHER_SOURCE)
    clock.advance(day / 2)
    defender.record_success("acme", OTHER_SOURCE)  # within a day of the last write: not rewritten
    clock.advance(day * 1.4)
    fail(defender, 5)
    assert not defender.is_locked("acme", OTHER_SOURCE)
    clock.advance(day * 0.2)
    assert defender.is_locked("acme", OTHER_SOURCE), "two days after the recorded login"


def test_with_known_sources_off_the_account_lockout_stops_everyone(
    state_db: Database, clock: Clock
) -> None:
    defender = Defender(state_db, DefenderSettings(known_source_days=0), clock)
    defender.record_success("acme", OTHER_SOURCE)
    fail(defender, 5)
    assert defender.is_locked("acme", OTHER_SOURCE)


def test_pair_thresholds_come_from_the_settings(state_db: Database, clock: Clock) -> None:
    settings = DefenderSettings(
        pair_max_failures=2, pair_lockout_seconds=60, account_max_failures=100
    )
    defender = Defender(state_db, settings, clock)
    fail(defender, 2)
    assert [(lock.kind, lock.key, lock.source) for lock in defender.lockouts()] == [
        ("pair", "acme", SOURCE)
    ]
    assert defender.is_locked("acme", SOURCE)
    assert not defender.is_locked("acme", OTHER_SOURCE)
    clock.advance(60)
    assert not defender.is_locked("acme", SOURCE)


def test_unblocking_a_source_lifts_its_pair_lockouts(state_db: Database, clock: Clock) -> None:
    defender = Defender(state_db, DefenderSettings(account_max_failures=100), clock)
    fail(defender, 5)
    assert defender.unlock_source(SOURCE)
    assert not defender.is_locked("acme", SOURCE)
    fail(defender, 5)
    assert defender.unlock_account("acme")
    assert defender.lockouts() == []


def test_unlock_clears_the_lockout_and_the_count(defender: Defender) -> None:
    fail(defender, 5)
    assert defender.unlock_account("acme")
    assert not defender.is_locked("acme", SOURCE)
    fail(defender, 4)
    assert not defender.is_locked("acme", SOURCE)
    assert not defender.unlock_account("acme")
    assert not defender.unlock_account("globex")


def test_lockouts_are_shared_with_other_processes(
    defender: Defender, state_db: Database, clock: Clock
) -> None:
    other_db = open_state(state_db.path)
    try:
        other = Defender(other_db, DefenderSettings(), clock)
        fail(defender, 5)
        assert [lockout.key for lockout in other.lockouts()] == ["acme", "acme"]
        assert other.unlock_account("acme")
        assert not defender.is_locked("acme", SOURCE)
    finally:
        other_db.close()


def test_lockouts_are_logged(defender: Defender, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    fail(defender, 5)
    defender.unlock_account("acme")
    events = [(record.getMessage(), getattr(record, "fields", {})) for record in caplog.records]
    until = "2024-03-10T12:15:00.000Z"
    assert events == [
        (
            "auth.locked",
            {"kind": "pair", "key": "acme", "source": SOURCE, "until": until, "failures": 5},
        ),
        ("auth.locked", {"kind": "account", "key": "acme", "until": until, "failures": 5}),
        ("auth.unlocked", {"kind": "account", "key": "acme"}),
        ("auth.unlocked", {"kind": "pair", "key": "acme", "source": SOURCE}),
    ]


def test_thresholds_come_from_the_settings(state_db: Database, clock: Clock) -> None:
    settings = DefenderSettings(account_max_failures=2, account_lockout_seconds=60)
    defender = Defender(state_db, settings, clock)
    fail(defender, 2)
    assert defender.is_locked("acme", SOURCE)
    clock.advance(60)
    assert not defender.is_locked("acme", SOURCE)


def test_attempted_names_are_stored_cut_to_a_sane_length(defender: Defender) -> None:
    fail(defender, 5, account="x" * 10_000)
    assert [len(lockout.key) for lockout in defender.lockouts()] == [255, 255]


def test_forgetting_an_account_drops_its_known_sources_and_lockouts(defender: Defender) -> None:
    """What ``tenant purge`` relies on: a new tenant of the name inherits no trusted address."""
    defender.record_success("acme", SOURCE)
    fail(defender, 5, source="198.51.100.7")
    assert defender.is_known("acme", SOURCE) and defender.lockouts()
    defender.forget_account("acme")
    assert not defender.is_known("acme", SOURCE) and not defender.lockouts()
