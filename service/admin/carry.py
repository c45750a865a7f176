"""Counters that never go down, though the records they count are deleted.

Most counters of ``/metrics`` are counts of records (runs, per-row results, outbox items), and
retention deletes old records; a failed file reopened for a retry leaves its old state. A counter
that drops reads to Prometheus as a reset, and ``increase()`` would count the whole remainder
again. :class:`Carry` adds each drop to that series' offset instead. Drops while the daemon is
down count too (``sftpctl prune``, or the daemon's last hour): the last value seen and the offset
of each series are kept in a small file of the data dir, written at most every
:data:`SAVE_INTERVAL_SECONDS` and when the daemon stops: one file per admin listener (host and
port, :func:`carry_path`), since the nodes of a cluster share the data dir and each is scraped
as a target of its own, with last values of its own. The daemon's in-memory counts (logins,
refused uploads) are not carried: they start at zero with the process, the reset Prometheus
expects of a restart.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from core.logs import get_logger

log = get_logger("service.admin")

#: The one file of releases before it was one per listener: read by a listener with no file yet.
SHARED_CARRY_FILE = "admin-counters.json"
SAVE_INTERVAL_SECONDS = 5.0
CARRIED_TYPES = ("counter", "histogram")


def carry_path(data_dir: Path, listen_port: int, host: str | None = None) -> Path:
    """The carry file of the admin listener on ``listen_port`` of ``host`` (this machine's)."""
    name = re.sub(r"[^A-Za-z0-9.-]", "_", host or socket.gethostname())
    return data_dir / f"admin-counters-{name}-{listen_port}.json"


class Carry:
    """Used by one thread at a time (the admin's reader thread). Starts from ``path``, or from
    ``earlier`` where ``path`` does not exist yet."""

    def __init__(self, path: Path | None = None, earlier: Path | None = None) -> None:
        self._path = path
        self._last: dict[str, float] = {}
        self._offset: dict[str, float] = {}
        self._dirty = False
        self._saved_at = 0.0
        for source in (path, earlier):
            if source is not None and self._load(source):
                break

    def apply(self, families: list[Metric], in_memory: Callable[[Sample], bool]) -> list[Metric]:
        """The families with every counter and histogram sample carried (changed in place), but
        the ``in_memory`` ones."""
        for family in families:
            if family.type not in CARRIED_TYPES:
                continue
            for index, sample in enumerate(family.samples):
                if in_memory(sample):
                    continue
                key = sample.name + json.dumps(sorted(sample.labels.items()))
                last = self._last.get(key)
                if last is not None and sample.value < last:
                    self._offset[key] = self._offset.get(key, 0.0) + last - sample.value
                if last != sample.value:
                    self._last[key] = sample.value
                    self._dirty = True
                family.samples[index] = sample._replace(value=sample.value + self._offset.get(key, 0.0))
        if time.monotonic() - self._saved_at >= SAVE_INTERVAL_SECONDS:
            self.save()
        return families

    def save(self) -> None:
        """Write the file if anything changed since it was last written (atomically: a new file
        renamed over the old)."""
        if self._path is None or not self._dirty:
            return
        temporary = self._path.with_name(f".{self._path.name}.tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps({"last": self._last, "offset": self._offset}), encoding="utf-8")
            os.replace(temporary, self._path)
        except OSError as exc:
            log.warning("admin.carry_not_saved", path=str(self._path), error=str(exc))
            return
        self._dirty = False
        self._saved_at = time.monotonic()

    def _load(self, path: Path) -> bool:
        """False if there is no file at ``path``."""
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            last, offset = saved["last"], saved["offset"]
            self._last = {str(key): float(value) for key, value in last.items()}
            self._offset = {str(key): float(value) for key, value in offset.items()}
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Counters then start from the records alone: at worst one reset as Prometheus sees it.
            log.warning("admin.carry_unreadable", path=str(path), error=str(exc))
        return True
