"""A database server found down stays "down" for a few seconds: callers are refused at once.

Without it, every caller while the server is unreachable would wait out the connect timeout
(5 s) on its own: a login would hang, and the threads logins and uploads share would pile up.
So the first failed connect marks the server down, for every store of this process on that
server (state and ledger alike); from then on each use raises
:class:`~core.db.DatabaseUnavailable` without touching the network. Every :data:`PROBE_SECONDS`
the server is tried again by a thread of its own (the engine's ``probe``), so no caller waits
for a server that does not answer; the probe's success ends the outage, and the next use
connects. The log says when an outage begins and when it ends, once each.

A connection lost mid-statement does not start an outage by itself: a server restarted or a
connection cut is often back at once, and the next connect tells.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from core.logs import get_logger

log = get_logger(__name__)

#: How long a server found down is left alone before one caller tries it again.
PROBE_SECONDS = 3.0


class Outage:
    """The down state of one server, as this process sees it."""

    def __init__(
        self, server: str, clock: Callable[[], float] = time.monotonic, probe: Callable[[], None] | None = None,
    ) -> None:
        """``probe``: connects to the server or raises; without one, the caller whose turn it is
        tries the server itself (see :meth:`refusal`)."""
        self.server = server
        self.probe = probe
        self._prober: threading.Thread | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._since_wall = ""
        self._reason = ""
        self._next_probe = 0.0
        self._probing = False

    @property
    def down(self) -> bool:
        return self._since is not None

    def refusing(self) -> str | None:
        """Why a use would be refused now, without claiming the next try (see :meth:`refusal`)."""
        if not self.down:
            return None
        with self._lock:
            if self._since is None or not (self._probing or self._clock() < self._next_probe):
                return None
            return self._message()

    def _message(self) -> str:
        wait = max(0.0, self._next_probe - self._clock())
        return (f"the database server is unreachable since {self._since_wall} ({self._reason});"
                f" next try in {wait:.0f} s")

    def refusal(self) -> str | None:
        """Why a use must be refused now, or None: the server is not known down, or (without a
        ``probe``) this caller is the one to try it again and must report :meth:`failed` or
        :meth:`recovered`. With a ``probe``, a try that is due starts in the background and this
        caller is refused all the same."""
        if not self.down:  # the common case, without the lock
            return None
        with self._lock:
            if self._since is not None and (self._probing or self._clock() < self._next_probe):
                return self._message()
            self._probing = self._since is not None
            if not self._probing or self.probe is None:
                return None
            message = self._message()
            self._prober = threading.Thread(target=self._probe_once, args=(self.probe,),
                                            name="db-outage-probe", daemon=True)
        self._prober.start()
        return message

    def _probe_once(self, probe: Callable[[], None]) -> None:
        try:
            probe()
        except Exception as exc:  # noqa: BLE001 - any failure to connect means still down
            self.failed((str(exc).strip().splitlines() or [type(exc).__name__])[0])
        else:
            self.recovered()

    def settled(self, timeout: float | None = None) -> None:
        """Wait for the background try under way, if any (for tests and orderly shutdowns)."""
        prober = self._prober
        if prober is not None:
            prober.join(timeout)

    def failed(self, reason: str) -> None:
        """A connect failed: the server is down (or still is) for the next few seconds."""
        with self._lock:
            now = self._clock()
            began = self._since is None
            if began:
                self._since = now
                self._since_wall = datetime.now(UTC).strftime("%H:%M:%SZ")
            self._reason = reason
            self._next_probe = now + PROBE_SECONDS
            self._probing = False
        if began:
            log.error("database.unavailable", server=self.server, reason=reason,
                      retry_every_seconds=PROBE_SECONDS)

    def recovered(self) -> None:
        """A connect succeeded: the outage, if any, is over."""
        if self._since is None:
            return
        with self._lock:
            since, self._since = self._since, None
            self._probing = False
        if since is not None:
            log.warning("database.available", server=self.server,
                        down_seconds=round(self._clock() - since, 1))


_outages: dict[str, Outage] = {}
_outages_lock = threading.Lock()


def outage_of(server: str, probe: Callable[[], None] | None = None) -> Outage:
    """The one :class:`Outage` of ``server`` (a URL without its password) in this process;
    ``probe`` (how to try the server) is kept if it has none yet."""
    with _outages_lock:
        outage = _outages.get(server)
        if outage is None:
            outage = _outages[server] = Outage(server, probe=probe)
        elif outage.probe is None:
            outage.probe = probe
        return outage
