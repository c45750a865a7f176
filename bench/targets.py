"""The targets of issues 5 and 12, judged on the rows of a run.

Throughput, concurrency and login targets are ratios to OpenSSH and are judged only on rows whose
client pinned cipher and key exchange alike for both servers (``.pinned`` keys); rows with each
server's defaults are shown for information. Memory and processor targets are absolute.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bench.stats import Row, format_number


class Rule(enum.Enum):
    RATIO_AT_LEAST = "ratio_at_least"
    RATIO_AT_MOST = "ratio_at_most"
    OURS_BELOW = "ours_below"
    OURS_AT_LEAST = "ours_at_least"
    # Our figure on a row over ours on its one-process twin (the key without ``w<N>.``).
    SCALING_AT_LEAST = "scaling_at_least"


#: Rules on our figure alone; a quick run's smaller sizes cannot meet them.
ABSOLUTE = frozenset({Rule.OURS_BELOW, Rule.OURS_AT_LEAST})


@dataclass(frozen=True)
class Target:
    text: str
    key_prefixes: tuple[str, ...]
    rule: Rule
    threshold: float
    zero_errors: bool = False
    pinned_only: bool = True

    def rows(self, rows: Iterable[Row]) -> list[Row]:
        return [
            row for row in rows
            if row.key.startswith(self.key_prefixes)
            and (not self.pinned_only or row.key.endswith(".pinned"))
        ]


@dataclass(frozen=True)
class Verdict:
    target: Target
    status: str
    measured: str

    @property
    def met(self) -> bool:
        return self.status == "met"


TARGETS = (
    Target("200 MB upload and 40 x 5 MB in one session: at least 1.0x OpenSSH's MiB/s",
           ("1.single.", "1.batch."), Rule.RATIO_AT_LEAST, 1.0),
    Target("1,000 small files: at least 1.0x OpenSSH's files/s",
           ("2.small.",), Rule.RATIO_AT_LEAST, 1.0),
    Target("20 and 100 concurrent uploads, argon2id checked: at least 2.5x OpenSSH's aggregate, zero errors",
           ("3.c",), Rule.RATIO_AT_LEAST, 2.5, zero_errors=True),
    Target("The same with 2 workers: at least 2.5x OpenSSH's aggregate, zero errors",
           ("3.w2.",), Rule.RATIO_AT_LEAST, 2.5, zero_errors=True),
    Target("2 workers: at least 1.6x one worker's aggregate (same clients, same run)",
           ("3.w2.",), Rule.SCALING_AT_LEAST, 1.6),
    Target("login with argon2id: at most 0.6x OpenSSH's login time (curve25519-sha256)",
           ("4.login.",), Rule.RATIO_AT_MOST, 0.6),
    Target("500 idle sessions in under 500 MiB resident",
           ("5.rss.",), Rule.OURS_BELOW, 500.0),
    Target("5 MB XLSX read, validated and mapped in under 1 s",
           ("6.xlsx",), Rule.OURS_BELOW, 1.0, pinned_only=False),
    Target("5 MB CSV read, validated and mapped in under 0.3 s",
           ("6.csv",), Rule.OURS_BELOW, 0.3, pinned_only=False),
    Target("5 MB signal file, shipped defaults, upload to report in out/: at most 3x `sftpctl check` of it",
           ("7.e2e",), Rule.RATIO_AT_MOST, 3.0, pinned_only=False),
    Target("5 MB signal file, shipped defaults, upload to report in out/: under 5 s",
           ("7.e2e",), Rule.OURS_BELOW, 5.0, pinned_only=False),
    Target("20,000 calls from a calls file, shipped defaults, upload to report in out/: at most 3x"
           " `sftpctl check` of it",
           ("7.calls",), Rule.RATIO_AT_MOST, 3.0, pinned_only=False),
    Target("A remote destination (the embedded API over HTTP, its rate limit on): throughput within 5% of the"
           " limit over 5 minutes, zero 429s",
           ("8.remote",), Rule.OURS_AT_LEAST, 95.0, zero_errors=True, pinned_only=False),
)


def judge(target: Target, rows: Iterable[Row]) -> Verdict:
    """Met only if every matching row meets it; a row without figures makes it n/a."""
    rows = list(rows)
    if target.rule is Rule.SCALING_AT_LEAST:
        return _judge_scaling(target, rows)
    matching = target.rows(rows)
    if not matching:
        return Verdict(target, "n/a (not measured)", "—")
    parts: list[str] = []
    met = True
    for row in matching:
        if target.rule in ABSOLUTE:
            figure = row.ours.median
            shown = f"{format_number(figure)} {row.unit}"
            ok = figure is not None and (figure < target.threshold if target.rule is Rule.OURS_BELOW
                                         else figure >= target.threshold)
        else:
            figure = row.ratio
            shown = "—" if figure is None else f"{figure:.2f}x"
            if figure is None:
                ok = False
            elif target.rule is Rule.RATIO_AT_LEAST:
                ok = figure >= target.threshold
            else:
                ok = figure <= target.threshold
        if figure is None:
            reason = row.unavailable or (row.ours.failures or row.peer.failures or ["no figures"])[-1]
            return Verdict(target, f"n/a ({reason})", "—")
        if target.zero_errors and row.ours.errors:
            ok = False
            shown += f", {row.ours.errors} errors"
        parts.append(f"{row.title}, {row.variant}: {shown}")
        met = met and ok
    return Verdict(target, "met" if met else "not met", "; ".join(parts))


def _judge_scaling(target: Target, rows: list[Row]) -> Verdict:
    """Each matching row's median over its one-process twin's (``3.w2.c20...`` over ``3.c20...``)."""
    by_key = {row.key: row for row in rows}
    parts: list[str] = []
    met = True
    matching = target.rows(rows)
    if not matching:
        return Verdict(target, "n/a (not measured)", "—")
    for row in matching:
        twin = by_key.get(re.sub(r"^(\d+)\.w\d+\.", r"\1.", row.key))
        ours, single = row.ours.median, twin.ours.median if twin else None
        if ours is None or not single:
            return Verdict(target, "n/a (a row of the pair has no figures)", "—")
        ratio = ours / single
        parts.append(f"{row.title}, {row.variant}: {ratio:.2f}x")
        met = met and ratio >= target.threshold
    return Verdict(target, "met" if met else "not met", "; ".join(parts))


def judge_all(rows: list[Row], quick: bool = False) -> list[Verdict]:
    """Every target; a quick run's smaller files and fewer sessions cannot meet an absolute one."""
    return [
        Verdict(target, "n/a (quick run: smaller sizes)", "—")
        if quick and target.rule in ABSOLUTE
        else judge(target, rows)
        for target in TARGETS
    ]
