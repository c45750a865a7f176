"""Everything one scrape or page load shows, gathered once: the database's snapshot, the
daemon's own counts, the disk and the schedule."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime

from core.config import Settings
from ingest.schedule import Schedule
from service.admin.live import Live
from service.admin.snapshot import Snapshot


@dataclass(frozen=True)
class Figures:
    snapshot: Snapshot
    logins: dict[str, int]
    upload_refusals: dict[str, int]
    connections: int | None
    limit_refusals: dict[str, int]
    disk_free_bytes: int
    next_run: datetime


@dataclass(frozen=True)
class LiveFigures:
    """The daemon's in-memory counts, copied on the event loop that changes them."""

    logins: dict[str, int]
    upload_refusals: dict[str, int]
    connections: int | None
    limit_refusals: dict[str, int]

    @classmethod
    def of(cls, live: Live) -> LiveFigures:
        return cls(live.logins(), live.upload_refusals(), live.connections() if live.connections else None,
                   live.limit_refusals() if live.limit_refusals else {})


def gather(settings: Settings, snapshot: Snapshot, live: LiveFigures) -> Figures:
    """Blocking (it asks the file system): called on the admin's reader thread."""
    return Figures(
        snapshot=snapshot,
        logins=live.logins,
        upload_refusals=live.upload_refusals,
        connections=live.connections,
        limit_refusals=live.limit_refusals,
        disk_free_bytes=disk_free(settings),
        next_run=Schedule(settings.schedule).next_slot(snapshot.taken_at),
    )


def disk_free(settings: Settings) -> int:
    """Bytes free to the daemon on the data dir's file system (its parent before it exists)."""
    path = settings.data_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free
