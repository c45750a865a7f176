"""Case 8's arithmetic and target: the share of the limit from the server's log, 429s as errors."""

from __future__ import annotations

from typing import Any

import pytest

from bench.remote_pacing import Pacing, Recorder, _result
from bench.stats import Row, Sample, Series
from bench.targets import TARGETS, judge, judge_all


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    return None


def test_the_share_is_the_window_over_the_mean_gap_between_request_k_and_k_plus_limit() -> None:
    recorder = Recorder(_no_app)
    recorder.answers += [(0.0, 201), (0.01, 201), (0.5, 429), (1.02, 201), (1.03, 201), (2.04, 201),
                         (2.05, 201), (3.5, 201), (3.6, 429)]
    result = _result(Pacing(limit=2, window=1.0, seconds=3.0), recorder)
    assert result.gaps == pytest.approx([1.02] * 4)
    assert result.share == pytest.approx(1 / 1.02)
    # What falls after the measured span does not count, a 429 in it does.
    assert (result.admitted, result.best, result.throttled, result.other_errors) == (6, 6, 1, 0)


def remote_row(share: float, errors: int = 0) -> Row:
    ours = Series()
    ours.add(Sample(share, errors=errors))
    return Row(key="8.remote", case=8, title="remote", variant="httpx, loopback", unit="% of limit",
               higher_is_better=True, peer_name="—", ours=ours, peer=Series())


def test_the_remote_target_needs_95_percent_of_the_limit_and_no_429() -> None:
    target = next(t for t in TARGETS if t.key_prefixes == ("8.remote",))
    assert judge(target, [remote_row(99.5)]).met
    assert not judge(target, [remote_row(94.0)]).met
    assert not judge(target, [remote_row(99.5, errors=1)]).met
    quick = next(v for v in judge_all([remote_row(99.5)], quick=True) if v.target is target)
    assert quick.status.startswith("n/a")
