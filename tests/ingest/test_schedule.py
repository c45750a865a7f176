"""Slots in America/Los_Angeles across the 2026 DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.config import ScheduleSettings
from ingest.schedule import Schedule, ScheduleError

LA = ZoneInfo("America/Los_Angeles")
UTC = UTC


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def walk(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every slot from ``start`` to ``end`` by repeated next_slot, as the daemon finds them."""
    slots, moment = [], start
    while (moment := schedule.next_slot(moment)) < end:
        slots.append(moment)
    return slots


def test_spring_forward_day_has_each_hour_once() -> None:
    schedule = Schedule(ScheduleSettings())
    slots = schedule.slots_on(date(2026, 3, 8))
    assert [slot.astimezone(LA).hour for slot in slots] == [0, 6, 12, 18]
    # 00:00 is still PST (UTC-8); from 06:00 on it is PDT (UTC-7): only 5 real hours between.
    assert slots == [utc(2026, 3, 8, 8), utc(2026, 3, 8, 13), utc(2026, 3, 8, 19), utc(2026, 3, 9, 1)]


def test_fall_back_day_has_each_hour_once() -> None:
    schedule = Schedule(ScheduleSettings())
    slots = schedule.slots_on(date(2026, 11, 1))
    assert slots == [utc(2026, 11, 1, 7), utc(2026, 11, 1, 14), utc(2026, 11, 1, 20), utc(2026, 11, 2, 2)]


@pytest.mark.parametrize("day", [date(2026, 3, 8), date(2026, 11, 1)])
def test_walking_across_a_dst_change_neither_skips_nor_doubles(day: date) -> None:
    schedule = Schedule(ScheduleSettings())
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), tzinfo=LA) - timedelta(minutes=1)
    end = datetime.combine(day + timedelta(days=2), datetime.min.time(), tzinfo=LA) - timedelta(minutes=1)
    slots = walk(schedule, start, end)
    local = [(slot.astimezone(LA).date(), slot.astimezone(LA).hour) for slot in slots]
    expected = [(day + timedelta(days=d), hour) for d in (-1, 0, 1) for hour in (0, 6, 12, 18)]
    assert local == expected
    assert len(set(slots)) == len(slots)


def test_an_hour_in_the_spring_gap_runs_once_when_the_gap_ends() -> None:
    schedule = Schedule(ScheduleSettings(hours=(1, 2, 4)))
    slots = schedule.slots_on(date(2026, 3, 8))
    # 02:00 does not exist that night: it runs at 03:00 PDT (10:00 UTC), the end of the gap.
    assert slots == [utc(2026, 3, 8, 9), utc(2026, 3, 8, 10), utc(2026, 3, 8, 11)]


def test_an_hour_that_happens_twice_in_the_fall_runs_at_its_first_pass() -> None:
    schedule = Schedule(ScheduleSettings(hours=(1, 2)))
    slots = walk(schedule, utc(2026, 11, 1, 6), utc(2026, 11, 1, 12))
    # 01:00 PDT (08:00 UTC) only, not again at 01:00 PST (09:00 UTC); then 02:00 PST.
    assert slots == [utc(2026, 11, 1, 8), utc(2026, 11, 1, 10)]


def test_next_and_latest_slot_around_a_slot_instant() -> None:
    schedule = Schedule(ScheduleSettings())
    six = utc(2026, 3, 8, 13)  # 06:00 PDT
    assert schedule.latest_slot(six) == six
    assert schedule.next_slot(six) == utc(2026, 3, 8, 19)
    assert schedule.latest_slot(six - timedelta(seconds=1)) == utc(2026, 3, 8, 8)
    assert schedule.next_slot(six - timedelta(seconds=1)) == six


def test_other_zone_and_hours_are_honoured() -> None:
    schedule = Schedule(ScheduleSettings(timezone="Europe/Paris", hours=(9,)))
    assert schedule.next_slot(utc(2026, 3, 29, 0)) == utc(2026, 3, 29, 7)  # CEST from that night


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ScheduleSettings(timezone="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (ScheduleSettings(hours=()), "at least one hour"),
        (ScheduleSettings(hours=(6, 24)), "24 is not an hour of the day"),
    ],
)
def test_bad_schedule_settings_are_named(settings: ScheduleSettings, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Schedule(settings)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Schedule(ScheduleSettings()).next_slot(datetime(2026, 1, 1))
