"""The closeness rule that picks the call a ``call_start_time`` search means.

Clocks are never perfectly synchronised, so a search names a start time (and, ideally, a
duration) and the ledger takes the closest call:

    distance = |start time gap in seconds| + DURATION_GAP_WEIGHT × |duration gap in seconds|

``DURATION_GAP_WEIGHT`` is 20, Invoca's older published rule: a 20-second gap in start time
weighs as much as a 1-second gap in duration, because durations are measured far more exactly
than two systems' clocks agree. The duration term counts only when both the search and the call
have a duration. A call whose distance exceeds ``ApiSettings.match_tolerance_seconds`` never
matches. Ties go to the earlier call, then to the one recorded first, so a search always picks
the same call.

Candidates come nearest start time first, so the search stops at the first call whose start
time alone is farther than the best distance found: with a million calls in a day, a search
reads the few calls around its start time, not every call within the tolerance.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.records import Call

DURATION_GAP_WEIGHT = 20.0


def distance(call: Call, start_time: float, duration_in_seconds: int | None) -> float:
    """Weighted seconds between ``call`` and what the search describes."""
    gap = abs(call.start_time - start_time)
    call_duration = call.content.duration_in_seconds
    if duration_in_seconds is not None and call_duration is not None:
        gap += DURATION_GAP_WEIGHT * abs(call_duration - duration_in_seconds)
    return gap


def closest_call(
    candidates: Iterable[Call], start_time: float, duration_in_seconds: int | None, tolerance: float
) -> Call | None:
    """The candidate nearest the search within ``tolerance`` weighted seconds, or None.

    ``candidates`` come in order of their start time's distance from ``start_time``, nearest
    first: a call farther than the best distance by start time alone cannot win, nor can any
    after it.
    """
    best: tuple[float, float, int] | None = None
    chosen: Call | None = None
    for call in candidates:
        if best is not None and abs(call.start_time - start_time) > best[0]:
            break
        gap = distance(call, start_time, duration_in_seconds)
        if gap > tolerance:
            continue
        rank = (gap, call.start_time, call.id)
        if best is None or rank < best:
            best, chosen = rank, call
    return chosen
