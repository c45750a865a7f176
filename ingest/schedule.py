"""When runs happen: fixed wall-clock hours in one time zone, correct across DST changes.

Slots are computed from local wall-clock times with :mod:`zoneinfo`, never by adding hours to a
UTC instant, so a day with 23 or 25 hours still has each configured hour exactly once. An hour
that does not exist on a spring-forward day (02:00 in Los Angeles) runs at the first instant
after the gap; an hour that happens twice on a fall-back day runs at its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.config import ScheduleSettings
from core.errors import UsageError

HOURS_PER_DAY = 24
# Every day has a slot, so the local days either side of an instant hold its neighbours.
_DAYS_AROUND = 1


class ScheduleError(ValueError, UsageError):
    """The schedule settings cannot describe a schedule; the message names the setting."""


class Schedule:
    """The run slots of ``schedule.hours`` in ``schedule.timezone``, as aware UTC datetimes."""

    def __init__(self, settings: ScheduleSettings) -> None:
        try:
            self.zone = ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"schedule.timezone: unknown time zone {settings.timezone!r}") from None
        if not settings.hours:
            raise ScheduleError("schedule.hours: at least one hour is needed")
        bad = [hour for hour in settings.hours if not 0 <= hour < HOURS_PER_DAY]
        if bad:
            raise ScheduleError(f"schedule.hours: {bad[0]} is not an hour of the day (0-23)")
        self.hours = tuple(sorted(set(settings.hours)))

    def slots_on(self, day: date) -> list[datetime]:
        """The slots of one local calendar day, in order, each once."""
        slots = {self._instant(day, hour) for hour in self.hours}
        return sorted(slots)

    def next_slot(self, after: datetime) -> datetime:
        """The first slot strictly after ``after`` (an aware datetime)."""
        for slot in self._slots_around(after):
            if slot > after:
                return slot
        raise AssertionError("a schedule with hours always has a slot within a day")

    def latest_slot(self, at_or_before: datetime) -> datetime:
        """The last slot at or before ``at_or_before`` (an aware datetime)."""
        for slot in reversed(self._slots_around(at_or_before)):
            if slot <= at_or_before:
                return slot
        raise AssertionError("a schedule with hours always has a slot within a day")

    def _slots_around(self, moment: datetime) -> list[datetime]:
        if moment.tzinfo is None:
            raise ValueError("schedule times must be timezone-aware")
        local_day = moment.astimezone(self.zone).date()
        days = (local_day + timedelta(days=offset) for offset in range(-_DAYS_AROUND, _DAYS_AROUND + 1))
        return sorted({slot for day in days for slot in self.slots_on(day)})

    def _instant(self, day: date, hour: int) -> datetime:
        # fold=0 gives a wall time in a spring-forward gap the offset from before the change,
        # which lands on the instant the gap ends; a repeated fall-back hour gets its first pass.
        return datetime.combine(day, time(hour), tzinfo=self.zone).astimezone(UTC)
