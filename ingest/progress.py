"""How far each file's delivery has come: rows done and left, rows per second, expected finish.

A delivery pass may take seconds (the embedded ledger) or hours (a remote Signal API paced at
its token's limit), so whoever watches must see each file move: ``sftpctl run`` prints a
``file.progress`` event at most every :data:`TELL_EVERY_SECONDS` per file (and at its last row),
and the log gets one per file in progress every :data:`LOG_EVERY_SECONDS`, rows moving or not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.logs import get_logger

log = get_logger("ingest.progress")

TELL_EVERY_SECONDS = 1.0
LOG_EVERY_SECONDS = 10.0
#: A pass's rate is told once it has run this long: over less, it measures the start, not the
#: pace (the first rows wait for the ledger's first batch, or come in a remote token's first
#: burst); a 5 MB file's first row, 0.2 s in, was told at 4 rows/s and 6,000 s left.
RATE_AFTER_SECONDS = 1.0

Emit = Callable[..., None]


@dataclass(frozen=True)
class FileProgress:
    """One file's rows in one delivery pass."""

    tenant: str
    file: str
    upload: int
    done: int
    total: int
    seconds: float

    @property
    def left(self) -> int:
        return self.total - self.done

    @property
    def rate(self) -> float:
        """Rows per second so far: 0 until a row is done and :data:`RATE_AFTER_SECONDS` passed,
        unless every row is (a short file's whole pass is its pace)."""
        measured = self.seconds >= RATE_AFTER_SECONDS or (not self.left and self.seconds > 0)
        return self.done / self.seconds if measured and self.done else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until the last row at the rate so far; None while the rate is unknown."""
        if not self.left:
            return 0.0
        return self.left / self.rate if self.rate else None

    def fields(self) -> dict[str, Any]:
        eta = self.eta_seconds
        return {"tenant": self.tenant, "file": self.file, "upload": self.upload, "done": self.done,
                "total": self.total, "rate": round(self.rate, 1),
                "eta_seconds": None if eta is None else round(eta, 1)}


class DeliveryProgress:
    """Counts a pass's rows per file as they are delivered, and tells of them (see the module)."""

    def __init__(
        self, tenant: str, files: Mapping[int, str], uploads: Iterable[int], emit: Emit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenant = tenant
        self._clock = clock
        self._emit = emit
        self._started = clock()
        self._files = dict(files)
        self._total: dict[int, int] = {}
        for upload in uploads:
            self._total[upload] = self._total.get(upload, 0) + 1
        self._done = dict.fromkeys(self._total, 0)
        self._told = dict.fromkeys(self._total, float("-inf"))

    def of(self, upload: int) -> FileProgress:
        return FileProgress(self.tenant, self._files.get(upload, ""), upload, self._done[upload],
                            self._total[upload], self._clock() - self._started)

    def row_done(self, upload: int) -> None:
        """One row of ``upload`` was delivered (whatever its outcome)."""
        self._done[upload] += 1
        now = self._clock()
        last = self._done[upload] == self._total[upload]
        if last or now - self._told[upload] >= TELL_EVERY_SECONDS:
            self._told[upload] = now
            self._emit("file.progress", **self.of(upload).fields())

    def log_now(self) -> None:
        for upload in self._total:
            progress = self.of(upload)
            if progress.left:
                log.info("ingest.file_progress", **progress.fields())

    async def log_every(self, seconds: float = LOG_EVERY_SECONDS) -> None:
        """Log each unfinished file every ``seconds`` until cancelled."""
        while True:
            await asyncio.sleep(seconds)
            self.log_now()
