"""``etc/prometheus-alerts.yml`` and ``etc/grafana-dashboard.json`` load, and name only metrics
that ``/metrics`` serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml  # PyYAML: installed with schemathesis (the test extra)

from core.clock import utcnow
from core.config import Settings
from service.admin.figures import LiveFigures, gather
from service.admin.live import Live
from service.admin.metrics import exposition
from service.admin.snapshot import Snapshot

ETC = Path(__file__).parents[3] / "etc"
NAME = re.compile(r"\bsftp_inbox_\w+")


def served(settings: Settings) -> set[str]:
    live = LiveFigures.of(Live(connections=lambda: 0))
    text = exposition(gather(settings, Snapshot(taken_at=utcnow()), live), per_tenant=False).decode()
    return set(NAME.findall(text))


def test_alert_rules(settings: Settings) -> None:
    rules = yaml.safe_load((ETC / "prometheus-alerts.yml").read_text())
    [group] = rules["groups"]
    assert {"alert", "expr", "annotations"} <= set(group["rules"][0])
    named = {name for rule in group["rules"] for name in NAME.findall(str(rule["expr"]))}
    assert named and named <= served(settings)


def test_dashboard(settings: Settings) -> None:
    dashboard = json.loads((ETC / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = {name for expr in exprs for name in NAME.findall(expr)}
    assert len(dashboard["panels"]) >= 10 and named <= served(settings)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
