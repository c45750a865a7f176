"""``GET /metrics``: the figures in Prometheus' text format, through ``prometheus-client``.

Names follow Prometheus' conventions: one prefix, base units (bytes, seconds), ``_total`` on
counters. Counters derived from the state database (uploads, files, rows, runs, responses) are
counts of its records, so they include ``sftpctl run``'s work; records pruned or reopened do not
make them drop (``service/admin/carry.py``). Tenants are labels only with
``[admin] per_tenant_labels``: each tenant multiplies the series.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from core.clock import parse_iso
from core.compat import installed_version
from service.admin.carry import Carry
from service.admin.figures import Figures
from service.admin.snapshot import WAITING_STATES

PREFIX = "sftp_inbox_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LOGIN_RESULTS = ("ok", "failed", "locked")
LOCKOUT_SCOPES = ("account", "pair", "source")
FINAL_FILE_STATES = ("posted", "partly failed", "failed", "rejected", "superseded")
ROW_OUTCOMES = ("posted", "failed", "rejected")
RUN_STATUSES = ("finished", "failed", "interrupted")
# Runs take seconds (an embedded batch) to hours (a remote destination paced at 100 a minute).
RUN_DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)


def exposition(figures: Figures, per_tenant: bool, carry: Carry | None = None) -> bytes:
    families = list(InboxCollector(figures, per_tenant).collect())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(carry.apply(families, in_memory) if carry else families))
    return generate_latest(registry)


def in_memory(sample: Sample) -> bool:
    """A sample of the daemon's own counts (reset with the process), not of the database's."""
    if sample.name in (f"{PREFIX}logins_total", f"{PREFIX}limit_refusals_total"):
        return True
    return sample.name == f"{PREFIX}uploads_total" and sample.labels.get("result") != "completed"


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class InboxCollector(Collector):
    """The metric families of one :class:`Figures`."""

    def __init__(self, figures: Figures, per_tenant: bool) -> None:
        self._f = figures
        self._per_tenant = per_tenant

    def collect(self) -> Iterator[Metric]:
        yield from self._front_door()
        yield from self._ingest()
        yield from self._system()

    def _front_door(self) -> Iterator[Metric]:
        f, snap = self._f, self._f.snapshot
        logins = _counter("logins", "Password attempts by result (this daemon's, since it started).", ["result"])
        for result in LOGIN_RESULTS:
            logins.add_metric([result], f.logins.get(result, 0))
        yield logins
        scopes = Counter(lockout.kind for lockout in snap.lockouts)
        lockouts = _gauge("lockouts_active", "Login lockouts in force, by scope.", ["scope"])
        for scope in LOCKOUT_SCOPES:
            lockouts.add_metric([scope], scopes[scope])
        yield lockouts
        if f.connections is not None:
            yield GaugeMetricFamily(f"{PREFIX}sessions", "SSH connections open now (logged in or not; "
                                    "this daemon's).", value=f.connections)
        yield self._by_tenant(_gauge("logged_in_sessions", "Logged-in SFTP sessions now, on every worker "
                                     "and node.", []), snap.sessions)
        refusals = _counter("limit_refusals", "Connections, logins and uploads refused or cut off by a "
                            "connection limit (this daemon's).", ["limit"])
        for limit, count in sorted(f.limit_refusals.items()):
            refusals.add_metric([limit], count)
        yield refusals
        uploads = _counter("uploads", "Uploads: completed (recorded, every process), refused and aborted "
                           "(this daemon's).", ["result"])
        uploads.add_metric(["completed"], sum(snap.uploads.values()))
        for result in ("refused", "aborted"):
            uploads.add_metric([result], f.upload_refusals.get(result, 0))
        yield uploads
        yield self._by_tenant(_counter("upload_bytes", "Bytes of completed uploads.", []), snap.upload_bytes)

    def _ingest(self) -> Iterator[Metric]:
        snap = self._f.snapshot
        files = _counter("files", "Uploaded files by the state they ended in.", ["state"], self._per_tenant)
        waiting = _gauge("files_waiting", "Uploaded files not finished yet, by state.", ["state"], self._per_tenant)
        for family, states in ((files, FINAL_FILE_STATES), (waiting, WAITING_STATES)):
            for tenant, state, count in self._keyed(snap.files, states):
                family.add_metric([*tenant, state.replace(" ", "_")], count)
            yield family
        rows = _counter("rows", "Rows settled, by outcome.", ["outcome"], self._per_tenant)
        for tenant, outcome, count in self._keyed(snap.rows, ROW_OUTCOMES):
            rows.add_metric([*tenant, outcome], count)
        yield rows
        runs = _counter("runs", "Processing runs ended, by status (the daemon's and sftpctl's).", ["status"])
        for status in RUN_STATUSES:
            runs.add_metric([status], snap.runs[status])
        yield runs
        yield GaugeMetricFamily(f"{PREFIX}runs_running", "Processing runs recorded as running now.",
                                value=snap.runs["running"])
        yield _histogram(snap.run_durations)
        yield self._by_tenant(_gauge("outbox_pending", "Requests queued for a destination, not yet settled.", []),
                              snap.outbox_pending)
        oldest = snap.outbox_oldest
        age = 0.0
        if oldest is not None and oldest.queued_at:
            age = max(0.0, (snap.taken_at - parse_iso(oldest.queued_at)).total_seconds())
        yield GaugeMetricFamily(f"{PREFIX}outbox_oldest_age_seconds",
                                "Age of the oldest pending request (0: none pending).", value=age)
        responses = _counter("destination_responses", "Queued requests by the HTTP status class of the "
                             "answer that settled them (or the latest, while pending).", ["code_class"])
        for code_class in sorted(snap.responses):
            responses.add_metric([code_class], snap.responses[code_class])
        yield responses

    def _system(self) -> Iterator[Metric]:
        f = self._f
        yield GaugeMetricFamily(f"{PREFIX}next_run_timestamp_seconds", "When the next scheduled run starts "
                                "(Unix time).", value=f.next_run.timestamp())
        yield GaugeMetricFamily(f"{PREFIX}disk_free_bytes", "Bytes free on the data dir's file system.",
                                value=f.disk_free_bytes)
        prune = f.snapshot.last_prune
        yield GaugeMetricFamily(f"{PREFIX}retention_last_pass_timestamp_seconds", "When the last whole "
                                "retention pass ended (Unix time; 0: none yet).",
                                value=parse_iso(prune.finished_at).timestamp() if prune else 0.0)
        yield GaugeMetricFamily(f"{PREFIX}retention_last_pass_problems", "Tenants the last whole retention "
                                "pass failed for.", value=prune.problems if prune else 0)
        info = InfoMetricFamily(f"{PREFIX}build", "The running version.")
        info.add_metric([], {"version": installed_version("sftp-inbox"), "python": platform.python_version()})
        yield info

    def _by_tenant(self, family: CounterMetricFamily | GaugeMetricFamily, counts: Counter[str]) -> Metric:
        if self._per_tenant:
            family = type(family)(family.name, family.documentation, labels=["tenant"])
            for tenant in sorted(counts):
                family.add_metric([tenant], counts[tenant])
        else:
            family.add_metric([], sum(counts.values()))
        return family

    def _keyed(
        self, counts: Counter[tuple[str, str]], labels: Iterable[str]
    ) -> Iterator[tuple[list[str], str, int]]:
        """(tenant label values, label, count): every label once without tenants (0 included),
        each tenant's labels with them."""
        for label in labels:
            if self._per_tenant:
                for (tenant, key), count in sorted(counts.items()):
                    if key == label:
                        yield [tenant], label, count
            else:
                yield [], label, sum(count for (_, key), count in counts.items() if key == label)


def _counter(name: str, doc: str, labels: list[str], per_tenant: bool = False) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}{name}", doc, labels=(["tenant"] if per_tenant else []) + labels)


def _gauge(name: str, doc: str, labels: list[str], per_tenant: bool = False) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", doc, labels=(["tenant"] if per_tenant else []) + labels)


def _histogram(durations: tuple[float, ...]) -> HistogramMetricFamily:
    buckets = [(f"{bound:g}", float(sum(1 for d in durations if d <= bound))) for bound in RUN_DURATION_BUCKETS]
    buckets.append(("+Inf", float(len(durations))))
    return HistogramMetricFamily(f"{PREFIX}run_duration_seconds", "How long ended runs took.",
                                 buckets=buckets, sum_value=sum(durations))
