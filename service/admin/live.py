"""Figures only the daemon's own memory holds: logins, refused uploads, open connections.

Logins happen in the daemon alone, so counting them in its memory loses nothing another process
did; the counts start at zero with the process, as Prometheus expects of a counter. The defender
is the one place every password attempt is decided (sftpd/auth.py asks it for a lockout, then
tells it of a failure or a success), so :class:`CountingDefender` counts there. Refused and aborted
uploads are not recorded anywhere; the front door logs each (``upload.refused``,
``upload.aborted``, warnings), and :class:`UploadEvents` counts those log records.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from core.clock import utcnow
from core.config import DefenderSettings
from core.db import Database
from sftpd.defender import Defender, Lockout

# The logger sftpd/sftp.py writes its upload events to, and the events counted.
UPLOAD_LOGGER = "sftpd.sftp"
UPLOAD_EVENTS = {"upload.refused": "refused", "upload.aborted": "aborted"}


class CountingDefender(Defender):
    """The defender, counting each password attempt's result: ``ok``, ``failed`` or ``locked``."""

    def __init__(self, db: Database, settings: DefenderSettings, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(db, settings, clock)
        self._logins: Counter[str] = Counter()
        self._lock = threading.Lock()  # attempts are decided on worker threads

    @property
    def logins(self) -> dict[str, int]:
        with self._lock:
            return dict(self._logins)

    def lockout_for(self, account: str, source: str) -> Lockout | None:
        lockout = super().lockout_for(account, source)
        if lockout is not None:
            self._tally("locked")
        return lockout

    def record_failure(self, account: str, source: str) -> list[Lockout]:
        self._tally("failed")
        return super().record_failure(account, source)

    def record_success(self, account: str, source: str) -> None:
        self._tally("ok")
        super().record_success(account, source)

    def _tally(self, result: str) -> None:
        with self._lock:
            self._logins[result] += 1


class UploadEvents(logging.Handler):
    """Counts the front door's refused and aborted uploads from its log records.

    Attached to the ``sftpd.sftp`` logger by :meth:`attach`; it sees the records as long as that
    logger passes warnings (any ``log_level`` but ERROR and CRITICAL).
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        """Called under the handler's lock (``logging.Handler.handle``)."""
        result = UPLOAD_EVENTS.get(record.getMessage())
        if result is not None:
            self._counts[result] += 1

    @property
    def counts(self) -> dict[str, int]:
        with self.lock or contextlib.nullcontext():
            return dict(self._counts)

    def attach(self) -> None:
        logging.getLogger(UPLOAD_LOGGER).addHandler(self)

    def detach(self) -> None:
        logging.getLogger(UPLOAD_LOGGER).removeHandler(self)


class Live:
    """What the metrics read from the running daemon; every part is optional (tests, no SSH)."""

    def __init__(
        self,
        defender: CountingDefender | None = None,
        uploads: UploadEvents | None = None,
        connections: Callable[[], int] | None = None,
        limit_refusals: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.defender = defender
        self.uploads = uploads
        self.connections = connections
        self.limit_refusals = limit_refusals

    def logins(self) -> dict[str, int]:
        return self.defender.logins if self.defender else {}

    def upload_refusals(self) -> dict[str, int]:
        return self.uploads.counts if self.uploads else {}
