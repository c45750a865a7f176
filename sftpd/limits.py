"""Connection limits: how much of the listener one address, one tenant or one session may hold.

The listener's connections, the process's file descriptors and the event loop are shared by
every tenant, so each is bounded per source address and per tenant (DESIGN.md, "Tenants never
share a fate"):

- connections not logged in yet, per source address, and all connections per source address,
  under the global cap: a flood from one address fills only its own share (an IPv6 address
  counts as its /64, see :func:`source_of`);
- logged-in connections per tenant, across every process serving the state database (workers,
  nodes: :mod:`sftpd.sessions`): one more login is refused at login, with the reason, and
  nobody already connected is dropped for it;
- a logged-in connection with no SFTP request for ``idle_timeout_seconds`` is closed (asyncssh
  offers only ``login_timeout``, for connections that never log in, and keepalives, which a
  connected but idle client answers);
- files open at once per logged-in connection;
- a minimum average rate for an upload in progress: a slower one is aborted and never published.

The per-source caps are counted in this process's memory: they protect the process, and
counting every connection attempt in the database would let a flood write to it. Each refusal
is logged as a JSON event and counted in :class:`LimitCounters`. Everything here runs on the
event loop's thread, so the counts need no lock; the sessions' table is written from worker
threads.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from collections.abc import Callable
from typing import NoReturn

import asyncssh
from asyncssh import SFTPFailure

from core.config import ServerSettings
from core.logs import get_logger
from sftpd.sessions import Sessions, SessionsFull

log = get_logger(__name__)

Disconnect = Callable[[int, str], None]
"""How an admission ends its connection: ``SSHServerConnection.disconnect(code, reason)``."""


class Refused(asyncssh.DisconnectError):
    """A connection or login refused by a limit; asyncssh sends the reason to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(asyncssh.DISC_TOO_MANY_CONNECTIONS, reason)


class LimitCounters:
    """How often each limit refused or cut something off, for a metrics endpoint to read."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def add(self, limit: str) -> None:
        self._counts[limit] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts so far, by limit name (only those that were ever hit)."""
        return dict(self._counts)


class ConnectionLimits:
    """The limits of one server: admits connections and hands each an :class:`Admission`."""

    def __init__(self, settings: ServerSettings, sessions: Sessions, counters: LimitCounters | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.counters = counters or LimitCounters()
        self._total = 0
        self._per_source: Counter[str] = Counter()
        self._prelogin: Counter[str] = Counter()

    def admit(self, address: str, disconnect: Disconnect) -> Admission:
        """Take a place for a new connection from ``address``, or raise :class:`Refused`."""
        server = self.settings
        source = source_of(address, server.ipv6_prefix_length)
        if self._total >= server.max_connections:
            self._refuse("max_connections", "server busy: too many connections", source=source)
        if self._per_source[source] >= server.max_connections_per_source:
            self._refuse("max_connections_per_source", "too many connections from your address",
                         source=source)
        if self._prelogin[source] >= server.max_prelogin_per_source:
            self._refuse("max_prelogin_per_source",
                         "too many connections from your address waiting to log in", source=source)
        self._total += 1
        self._per_source[source] += 1
        self._prelogin[source] += 1
        return Admission(self, source, disconnect)

    async def _log_in(self, admission: Admission, tenant: str) -> bool:
        """Take a session's place for ``admission``; False if it was closed meanwhile."""
        limit = self.settings.max_sessions_per_tenant
        try:
            session = await asyncio.to_thread(self.sessions.open, tenant, admission.source, limit)
        except SessionsFull:
            self._refuse("max_sessions_per_tenant",
                         f"{tenant} already has {limit} sessions open, the most allowed; "
                         "close one and try again", source=admission.source, tenant=tenant)
        if admission._closed:  # the connection ended while its place was taken
            self._give_back(session)
            return False
        admission.tenant, admission.session = tenant, session
        _drop(self._prelogin, admission.source)
        return True

    def _release(self, admission: Admission) -> None:
        self._total -= 1
        _drop(self._per_source, admission.source)
        if admission.tenant is None:
            _drop(self._prelogin, admission.source)
        elif admission.session is not None:
            self._give_back(admission.session)

    def _give_back(self, session: int) -> None:
        """Free a session's place: at once for this process, in the database from a thread."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (it has stopped): nothing else to hold up
            self._close_session(session)
            return
        loop.run_in_executor(None, self._close_session, session)

    def _close_session(self, session: int) -> None:
        try:
            self.sessions.close(session)
        except Exception:  # the database: the place is free here, renew removes the row
            log.warning("session.close_deferred", exc_info=True, session=session)

    def _refuse(self, limit: str, reason: str, **fields: str) -> NoReturn:
        self.counters.add(limit)
        log.warning("connection.refused", limit=limit, reason=reason, **fields)
        raise Refused(reason)


class Admission:
    """One connection's place under the limits, from accept to :meth:`close`."""

    def __init__(self, limits: ConnectionLimits, source: str, disconnect: Disconnect) -> None:
        self.source = source
        self.tenant: str | None = None
        #: Its row in the sessions' table (:mod:`sftpd.sessions`) once logged in.
        self.session: int | None = None
        self._limits = limits
        self._disconnect = disconnect
        self._handles = 0
        self._last_request = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closed = False

    async def log_in(self, tenant: str) -> None:
        """Count the connection as ``tenant``'s session, or raise :class:`Refused`; starts the
        idle timeout. ``core.db.DatabaseUnavailable`` if the sessions cannot be counted."""
        if self.tenant is not None or self._closed:
            return
        if not await self._limits._log_in(self, tenant):  # closed meanwhile
            return
        self.touch()
        self._arm_idle_timer(self._limits.settings.idle_timeout_seconds)

    def touch(self) -> None:
        """An SFTP request arrived: the connection is not idle."""
        self._last_request = asyncio.get_running_loop().time()

    def take_handle(self) -> None:
        """Count one more open file or folder listing, or fail with a message (SSH_FX_FAILURE)."""
        limit = self._limits.settings.max_handles_per_session
        if self._handles >= limit:
            self._limits.counters.add("max_handles_per_session")
            log.warning("sftp.handle_refused", limit="max_handles_per_session",
                        tenant=self.tenant, source=self.source, open=self._handles)
            raise SFTPFailure(f"too many open files in this session ({limit} at most); "
                              "close some and try again")
        self._handles += 1

    def release_handle(self) -> None:
        self._handles = max(0, self._handles - 1)

    def watch_upload(self, path: str, abort: Callable[[str], None]) -> UploadPace | None:
        """A pace watch for an upload just opened, or None if there is no minimum rate."""
        settings = self._limits.settings
        if settings.min_upload_bytes_per_second <= 0 or settings.upload_rate_window_seconds <= 0:
            return None
        return UploadPace(self, path, abort)

    def close(self) -> None:
        """The connection ended: give its places back; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._limits._release(self)

    def _arm_idle_timer(self, delay: float) -> None:
        if delay > 0:
            self._idle_timer = asyncio.get_running_loop().call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self._closed:
            return
        timeout = self._limits.settings.idle_timeout_seconds
        idle = asyncio.get_running_loop().time() - self._last_request
        if idle < timeout:
            self._arm_idle_timer(timeout - idle)
            return
        self._limits.counters.add("idle_timeout")
        log.warning("session.idle_closed", limit="idle_timeout_seconds", tenant=self.tenant,
                    source=self.source, idle_seconds=round(idle, 3))
        self._disconnect(asyncssh.DISC_BY_APPLICATION,
                         f"closed after {timeout:g} seconds without a request")


class UploadPace:
    """Aborts an upload whose average rate over a window stays below the minimum.

    Each window the upload must bring ``min_upload_bytes_per_second`` times the window's length;
    one that does not is aborted through ``abort`` (with the reason), which the session turns
    into a failed upload that is never published. :meth:`stop` when the upload is closed.
    """

    def __init__(self, admission: Admission, path: str, abort: Callable[[str], None]) -> None:
        settings = admission._limits.settings
        self._admission = admission
        self._path = path
        self._abort = abort
        self._window = settings.upload_rate_window_seconds
        self._minimum = settings.min_upload_bytes_per_second
        self._received = 0
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            self._window, self._check
        )

    def add(self, size: int) -> None:
        self._received += size

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        received, self._received = self._received, 0
        if received >= self._minimum * self._window:
            self._timer = asyncio.get_running_loop().call_later(self._window, self._check)
            return
        self._timer = None
        admission = self._admission
        admission._limits.counters.add("min_upload_bytes_per_second")
        rate = received / self._window
        log.warning("upload.too_slow", limit="min_upload_bytes_per_second",
                    tenant=admission.tenant, source=admission.source, path=self._path,
                    bytes_per_second=round(rate, 1))
        self._abort(f"upload aborted: {rate:.0f} bytes/s over the last {self._window:g} s, "
                    f"below the minimum of {self._minimum} bytes/s")


def source_of(address: str, ipv6_prefix_length: int) -> str:
    """The source a connection is counted against: an IPv4 address as it is, an IPv6 address as
    its network of ``ipv6_prefix_length`` bits.

    One IPv6 subscriber commonly holds a whole /64 (RFC 6177), 2**64 addresses to spread a flood
    over; counted one by one, per-address limits would not limit such a source at all.
    """
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{ipv6_prefix_length}", strict=False))
    return str(ip)


def _drop(counter: Counter[str], key: str) -> None:
    """Count one less for ``key``, forgetting it at zero so the counter does not grow forever."""
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
