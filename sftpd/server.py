"""The SSH listener: host keys, password logins and a chrooted SFTP subsystem, nothing more.

No port forwarding, agent or X11 forwarding: asyncssh refuses each of them unless a handler is
given, and none is. A shell, a command (legacy ``scp -O`` included) or another subsystem gets one
line on stderr saying this server offers SFTP only, and exit status 1, rather than a bare channel
failure (:func:`sftp_only`). Each connection is authenticated by
:class:`~sftpd.auth.TenantSSHServer`; each SFTP session runs a
:class:`~sftpd.sftp.TenantSFTPServer` over the tenant's own folders.

File I/O uses plain ``os`` calls on the event loop: writes of at most a few hundred KiB to the
local page cache take microseconds, far less than handing each one to a thread (as aiofiles
would). Work that can take long or wait on a lock (argon2, the database, re-reading a file)
runs in threads; argon2 has its own pool, sized to the CPUs, and the recorder its own thread, so
neither a burst of logins nor staging can delay the work of the loop. So do folder listings, a
chunk of names at a time (see :mod:`sftpd.sftp`). How many connections, sessions and open files
each address, tenant and session may hold is :mod:`sftpd.limits`' business.

Stopping (:meth:`SftpServer.drain`, the daemon's answer to SIGTERM): the listener closes,
connections not logged in yet are disconnected, and an SFTP session opened meanwhile on a
logged-in connection has every request refused, so nothing new begins; the uploads under way at
that moment get a window to finish, and a client's close within it publishes as usual. Whatever
is still open at its end is discarded as a dropped session's uploads are: never published, never
recorded.
"""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import asyncssh

from core.config import Settings
from core.crypto import AtRest
from core.logs import get_logger
from core.tenants import TenantStore
from core.uploads import UploadStore
from sftpd.asyncssh_compat import disconnect
from sftpd.auth import LoginGate, TenantSSHServer
from sftpd.defender import Defender
from sftpd.events import FeedFolders, UploadListener
from sftpd.hostkeys import host_key_pairs, load_or_create_host_keys
from sftpd.inflight import UploadsInProgress
from sftpd.limits import Admission, ConnectionLimits, LimitCounters, Refused
from sftpd.proxy_protocol import reader_for
from sftpd.recorder import UploadRecorder
from sftpd.rules import UploadRules
from sftpd.sessions import END_POLL_SECONDS, RENEW_EVERY_SECONDS, Sessions
from sftpd.sftp import TenantSFTPServer
from sftpd.tcp import QuickAckListener
from sftpd.vfs import TenantFileSystem

log = get_logger(__name__)

# The largest SSH packet OpenSSH sends or accepts (PACKET_MAX_SIZE). Offering it as the channel's
# packet size lets a client send each SFTP write of up to 255 KiB (what OpenSSH's sftp picks from
# the limits extension) in one SSH packet instead of eight: an eighth of the per-packet work.
CHANNEL_MAX_PACKET_BYTES = 256 * 1024
# Connections the kernel may hold before they are accepted: a burst of clients logging in at once
# waits there, instead of being refused (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 1024
SFTP_ONLY_EXIT_STATUS = 1
SHUTTING_DOWN = "the server is shutting down; connect again in a minute"
# How often a drain looks whether the uploads it waits for have ended.
DRAIN_POLL_SECONDS = 0.05
# A kept name younger than this may be another node's, its recorder waiting (sftpd.recorder).
SHARED_KEPT_SECONDS = 3600.0


def sftp_only(process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Answer a shell, a command or a subsystem other than SFTP: say why, and fail."""
    asked = process.command or process.subsystem
    what = f"{asked!r} is not available" if asked else "there is no shell"
    # A client that asked for a terminal has put its own in raw mode: end the line with CR LF.
    end = "\r\n" if process.term_type else "\n"
    process.stderr.write(
        f"sftpd: this server offers SFTP only ({what}); connect with an SFTP client, e.g."
        f" sftp, or scp without -O{end}".encode()
    )
    process.exit(SFTP_ONLY_EXIT_STATUS)


@dataclass(frozen=True)
class Drained:
    """What a drain waited for, as ``tenant:/in/path``: the uploads that ended within the window
    (published, unless a rule refused them at the close) and those discarded at its end."""

    finished: tuple[str, ...]
    discarded: tuple[str, ...]


class SftpServer:
    """The front door: ``await start()``, serve until ``await close()`` (or ``drain()``)."""

    def __init__(
        self,
        settings: Settings,
        tenants: TenantStore,
        uploads: UploadStore,
        defender: Defender,
        on_upload: UploadListener | None = None,
        feed_folders: FeedFolders | None = None,
        at_rest: AtRest | None = None,
    ) -> None:
        """``feed_folders`` names a tenant's feed folders, the only sub-folders of ``in/``
        uploads are accepted in; without it, any sub-folder is (see :mod:`sftpd.sftp`).
        ``at_rest`` is what stored files are sealed and read through (the daemon's, shared with
        ingest); without it, the master key of ``[server] keys_dir``, made if there is none."""
        self._settings = settings
        self._at_rest = at_rest or AtRest.load(settings.server.keys_dir, settings.data_dir, create=True)
        self._tenants = tenants
        self._rules = UploadRules(settings.server)
        self._recorder = UploadRecorder(uploads, on_upload)
        self._feed_folders = feed_folders
        self._in_progress = UploadsInProgress()
        self._defender = defender
        self._hash_pool: ThreadPoolExecutor | None = None
        self._gate: LoginGate | None = None
        self._sessions = Sessions(defender.db)
        self._limits = ConnectionLimits(settings.server, self._sessions)
        self._keeper: asyncio.Task[None] | None = None
        self._connections: dict[asyncssh.SSHServerConnection, Admission] = {}
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._draining = False

    @property
    def port(self) -> int:
        """The port actually listened on (useful when the configured port is 0)."""
        if self._acceptor is None:
            raise RuntimeError("the server is not started")
        return self._acceptor.get_port()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def limit_counters(self) -> LimitCounters:
        """How often each connection limit refused or cut something off (see sftpd.limits)."""
        return self._limits.counters

    async def start(self) -> None:
        server = self._settings.server
        keys = await asyncio.to_thread(load_or_create_host_keys, server.keys_dir)
        shared = server.worker_count > 1
        if not shared:  # with workers, the supervisor clears once, before any worker accepts
            await asyncio.to_thread(clear_in_flight, self._settings)
        self._hash_pool = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 1, thread_name_prefix="sftpd-argon2"
        )
        self._gate = LoginGate(
            self._tenants, self._defender, self._settings.defender, self._hash_pool
        )
        self._acceptor = await asyncssh.listen(
            server.listen_host,
            server.listen_port,
            server_factory=self._new_connection,
            server_host_keys=host_key_pairs(keys),
            sftp_factory=self._new_session,
            process_factory=sftp_only,
            encoding=None,
            allow_scp=False,
            line_editor=False,
            max_pktsize=CHANNEL_MAX_PACKET_BYTES,
            password_auth=True,
            kbdint_auth=True,
            public_key_auth=False,
            host_based_auth=False,
            gss_host=None,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=server.login_timeout_seconds,
            tunnel=QuickAckListener(LISTEN_BACKLOG, reader_for(server.trusted_proxies)
                                    if server.proxy_protocol else None, reuse_port=shared),
        )
        self._keeper = asyncio.create_task(self._keep_sessions())
        log.info("sftpd.listening", host=server.listen_host, port=self.port)

    async def drain(self, seconds: float) -> Drained:
        """Take no new connection, login or SFTP session; give the uploads under way up to
        ``seconds`` to end, then :meth:`close` (which discards those still open)."""
        self._draining = True
        await self._stop_listening()
        for conn, admission in list(self._connections.items()):
            if admission.tenant is None:
                conn.disconnect(asyncssh.DISC_BY_APPLICATION, SHUTTING_DOWN)
        waiting = [(tenant, upload) for tenant, upload in self._in_progress]
        log.info("sftpd.draining", uploads=len(waiting), seconds=seconds)
        deadline = asyncio.get_running_loop().time() + seconds
        while (any(upload.is_open for _, upload in waiting)
               and asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        drained = Drained(
            finished=tuple(f"{tenant}:{u.path}" for tenant, u in waiting if not u.is_open),
            discarded=tuple(f"{tenant}:{u.path}" for tenant, u in waiting if u.is_open),
        )
        await self.close()
        return drained

    async def close(self) -> None:
        """Stop listening and end every session; uploads still open are discarded."""
        await self._stop_listening()
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        await asyncio.gather(*(conn.wait_closed() for conn in connections))
        await self._stop_sessions()
        if self._hash_pool is not None:
            self._hash_pool.shutdown(wait=False, cancel_futures=True)
            self._hash_pool = None
        await self._recorder.close()
        log.info("sftpd.stopped")

    async def _stop_listening(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None

    async def _keep_sessions(self) -> None:
        """While serving: close the sessions an operator ended (``sftpd.sessions.end_sessions``),
        and keep this process's sessions counted (their lease)."""
        renew_every = min(RENEW_EVERY_SECONDS, self._sessions.lease_seconds / 4)
        renewed = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(min(END_POLL_SECONDS, renew_every))
            try:
                self._end(await asyncio.to_thread(self._sessions.to_end))
                if asyncio.get_running_loop().time() - renewed >= renew_every:
                    await asyncio.to_thread(self._sessions.renew)
                    renewed = asyncio.get_running_loop().time()
            except Exception:  # the database: the next round tries again
                log.error("sftpd.sessions_keep_failed", exc_info=True)

    def _end(self, ending: list[tuple[int, str]]) -> None:
        if not ending:  # the usual answer: no connection to look through
            return
        reasons = dict(ending)
        for conn, admission in list(self._connections.items()):
            if admission.session in reasons:
                log.warning("session.ended", tenant=admission.tenant, source=admission.source,
                            reason=reasons[admission.session])
                disconnect(conn, asyncssh.DISC_BY_APPLICATION, reasons[admission.session])

    async def _stop_sessions(self) -> None:
        """Stop renewing and remove this process's sessions; a database that cannot be reached
        now lets them lapse with their lease."""
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        try:
            await asyncio.to_thread(self._sessions.close_all)
        except Exception:  # the database: the rows lapse with their lease
            log.warning("sftpd.sessions_not_removed", exc_info=True)

    async def settled(self) -> None:
        """Wait until every upload finished so far is recorded and handed to the listener."""
        await self._recorder.settled()

    def _new_connection(self) -> TenantSSHServer:
        assert self._gate is not None, "connections arrive only after start()"
        return TenantSSHServer(self._gate, self._connection_opened, self._connection_closed)

    def _connection_opened(self, conn: asyncssh.SSHServerConnection, source: str) -> Admission:
        if self._draining:
            raise Refused(SHUTTING_DOWN)
        admission = self._limits.admit(source, functools.partial(disconnect, conn))
        self._connections[conn] = admission
        return admission

    def _connection_closed(self, conn: asyncssh.SSHServerConnection) -> None:
        admission = self._connections.pop(conn, None)
        if admission is not None:
            admission.close()

    def _new_session(self, chan: asyncssh.SSHServerChannel[bytes]) -> TenantSFTPServer:
        tenant = chan.get_extra_info("username")
        fs = TenantFileSystem(self._tenants.folders(tenant).root)
        admission = self._connections[cast(asyncssh.SSHServerConnection, chan.get_connection())]
        # asyncssh has accepted the subsystem by now, and ending the channel before its SFTP
        # handler read the client's first packet drops the whole connection (and the uploads
        # it still carries): a session begun while draining is refused request by request.
        return TenantSFTPServer(chan, tenant, fs, self._rules, self._recorder, admission,
                                self._in_progress, self._feed_folders,
                                refusal=SHUTTING_DOWN if self._draining else None,
                                at_rest=self._at_rest)


def clear_in_flight(settings: Settings) -> None:
    """Remove partial uploads and kept names a previous run left behind (it crashed or was
    killed); a kept name lost this way costs only a copy, as the scan stages its file.

    Only while no connection of this process is served: a worker restarted beside others leaves
    their uploads be. With the state on PostgreSQL other nodes may share the data dir: their
    uploads under way hold their files' locks and stay (``TenantFileSystem.clear_in_flight``),
    and their kept names stay for an hour, the time their recorder may wait for the database."""
    kept_for_seconds = SHARED_KEPT_SECONDS if settings.database.url else 0.0
    tenants_dir = settings.tenants_dir
    if not tenants_dir.is_dir():
        return
    for root in sorted(tenants_dir.iterdir()):
        if root.is_dir():
            fs = TenantFileSystem(root)
            try:
                removed = fs.clear_in_flight(kept_for_seconds)
            finally:
                fs.close()
            if removed:
                log.info("upload.stale_removed", tenant=root.name, files=removed)
