"""``GET /``: the status page, one server-rendered HTML document with inline CSS and no script.

Read-only, and readable on a phone (tables scroll sideways in their own box). Every value that
comes from the database or a tenant is escaped here, in :func:`_e`: tenant names are safe by the
name rules, but file names and addresses are whatever a client sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from core.clock import parse_iso
from core.compat import installed_version
from core.config import RETENTION_RULES, Settings
from service.admin.figures import Figures
from service.admin.hostkeys import HostKeyFingerprint

STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:12px;color:#1b1b1b;background:#f6f7f9}
h1{font-size:1.3em;margin:0 0 4px}h2{font-size:1.05em;margin:2px 0 6px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px 12px;margin:0 0 10px}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;white-space:nowrap}
th{font-weight:600;color:#4a5563}code{font:13px ui-monospace,monospace;word-break:break-all}
.bad{color:#b00020;font-weight:600}.ok{color:#0a7d32}.muted{color:#6b7280}
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 12px;margin:0}dt{color:#4a5563}dd{margin:0}
"""


def render(settings: Settings, figures: Figures, keys: Sequence[HostKeyFingerprint],
           listeners: dict[str, str]) -> str:
    zone = ZoneInfo(settings.schedule.timezone)
    snap = figures.snapshot
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width, initial-scale=1">',
        '<link rel=icon href="data:,">',
        f"<title>sftp-inbox status</title><style>{STYLE}</style></head><body>",
        f"<h1>sftp-inbox {_e(installed_version('sftp-inbox'))}</h1>",
        f'<p class=muted>as of {_e(_at(snap.taken_at, zone))} (schedule zone {_e(settings.schedule.timezone)})</p>',
        _section("Listeners", _dl(listeners.items())),
        _section("SSH host keys", _dl([(k.algorithm, f"<code>{_e(k.fingerprint)}</code>") for k in keys], raw=True)
                 if keys else '<p class=muted>none yet</p>'),
        _section("Runs", _runs(figures, zone)),
        _section("Tenants", _tenants(settings, figures, zone)),
        _section("Outbox", _outbox(figures, zone)),
        _section("Active lockouts", _table(
            ("scope", "account", "source", "until"),
            [(_e(lock.kind), _e(lock.account), _e(lock.source), _e(_at_text(lock.until, zone)))
             for lock in snap.lockouts])),
        _section("Disk", _dl([("free on the data dir", _bytes(figures.disk_free_bytes)),
                              ("health threshold", _bytes(settings.admin.min_free_disk_bytes))], raw=True)),
    ]
    retention = getattr(settings, "retention", None)
    if dataclasses.is_dataclass(retention):
        prune = snap.last_prune
        last = (f"{_at_text(prune.finished_at, zone)}: {prune.files} file(s) deleted"
                + (f", failed for {prune.problems} tenant(s)" if prune.problems else "")) if prune else "none yet"
        rules = [(f.name, str(getattr(retention, f.name))) for f in dataclasses.fields(retention)]
        parts.append(_section("Retention (days; a tenant's own rules are marked * above)",
                              _dl([*rules, ("last whole pass", last)])))
    parts.append("</body></html>")
    return "".join(parts)


def _runs(figures: Figures, zone: ZoneInfo) -> str:
    last = figures.snapshot.last_run
    if last is None:
        last_text = "none yet"
    else:
        ended = f", ended {_at_text(last.finished_at, zone)}" if last.finished_at else ""
        last_text = (f"#{last.id} {last.trigger}, {last.status}, started {_at_text(last.started_at, zone)}"
                     f"{ended}" + (f" (tenant {last.tenant})" if last.tenant else ""))
    return _dl([("last run", last_text), ("next run", _at(figures.next_run, zone))])


def _tenants(settings: Settings, figures: Figures, zone: ZoneInfo) -> str:
    rows = []
    for t in figures.snapshot.tenants:
        login = ("may log in" if t.enabled and t.has_login else "disabled" if not t.enabled else "no login")
        login_cell = f'<span class={"ok" if login == "may log in" else "bad"}>{_e(login)}</span>'
        lock = f'<span class=bad>until {_e(_at_text(t.locked_until, zone))}</span>' if t.locked_until else "none"
        rows.append((_e(t.name), login_cell, lock, _e(_at_text(t.last_upload, zone)),
                     _e(_at_text(t.last_report, zone)), str(t.files_waiting), str(t.rows_pending),
                     _retention(settings, t.retention_own)))
    return _table(("tenant", "login", "lockout", "last upload", "last report", "files waiting", "rows pending",
                   "kept days (upload/report/rejected)"), rows)


def _retention(settings: Settings, own: dict[str, int]) -> str:
    """The rules in force, the tenant's own ones marked with an asterisk."""
    retention = getattr(settings, "retention", None)
    days = []
    for rule in RETENTION_RULES:
        if rule in own:
            days.append(f"<b>{own[rule]}*</b>")
        else:
            days.append(_e(str(getattr(retention, rule, "?"))))
    return "/".join(days)


def _outbox(figures: Figures, zone: ZoneInfo) -> str:
    snap = figures.snapshot
    oldest = snap.outbox_oldest
    items = [("pending requests", str(sum(snap.outbox_pending.values())))]
    if oldest is not None:
        items.append(("oldest", f"{oldest.tenant} {oldest.path}, queued {_at_text(oldest.queued_at, zone)}"))
    return _dl(items)


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{body}</section>"


def _dl(items: Iterable[tuple[str, str]], raw: bool = False) -> str:
    """A definition list; values are escaped unless ``raw`` (numbers formatted here)."""
    cells = "".join(f"<dt>{_e(k)}</dt><dd>{v if raw else _e(v)}</dd>" for k, v in items)
    return f"<dl>{cells}</dl>"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table of cells already escaped (or built of escaped parts)."""
    if not rows:
        return '<p class=muted>none</p>'
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<div class=scroll><table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></div>'


def _e(text: str) -> str:
    return escape(text, quote=True)


def _at(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _at_text(text: str | None, zone: ZoneInfo) -> str:
    if not text:
        return "never"
    try:
        return _at(parse_iso(text), zone)
    except ValueError:
        return text


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{count} B"
        size /= 1024
    raise AssertionError("unreachable")
