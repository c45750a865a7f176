"""Password-only authentication with brute-force protection.

Every attempt costs one argon2 verification, whether the user exists, is disabled, has no login
or is locked out, so neither the answer nor its timing tells an attacker which names are real or
whether a guessed password was right while locked out. Hashing runs in a worker thread so the
event loop keeps serving transfers while logins are checked.

Public-key and host-based authentication are refused outright; keyboard-interactive is offered
only as a single password prompt, which is how WinSCP and FileZilla send passwords.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

import asyncssh

from core.config import DefenderSettings
from core.db import DatabaseUnavailable
from core.logs import get_logger
from core.tenants import TenantStore
from sftpd.defender import MAX_KEY_LENGTH, Defender, Lockout
from sftpd.limits import Admission, Refused

log = get_logger(__name__)

PASSWORD_PROMPT = "Password: "
# What a client is told when a login cannot be checked: the database is unreachable.
UNAVAILABLE = "the server cannot check logins right now; please try again in a few minutes"


class Unavailable(asyncssh.DisconnectError):
    """A login that cannot be decided (the database is unreachable): the client is disconnected
    at once with :data:`UNAVAILABLE`, not told its password was wrong, and nothing is counted."""

    def __init__(self) -> None:
        super().__init__(asyncssh.DISC_SERVICE_NOT_AVAILABLE, UNAVAILABLE)


class LoginGate:
    """Decides password logins for every connection of one server."""

    def __init__(
        self,
        tenants: TenantStore,
        defender: Defender,
        settings: DefenderSettings,
        hash_executor: Executor | None = None,
    ) -> None:
        self._tenants = tenants
        self._defender = defender
        self._delay = settings.failure_delay_seconds
        self._hash_executor = hash_executor
        tenants.hasher.warm()

    async def check(self, username: str, password: str, source: str, method: str) -> bool:
        """True if ``username`` may log in from ``source`` with ``password``; :class:`Unavailable`
        if the database cannot say (then no password is hashed and no failure counted)."""
        try:
            return await self._check(username, password, source, method)
        except DatabaseUnavailable as exc:
            log.error("auth.unavailable", user=_printable(username), source=source, method=method,
                      reason=str(exc))
            raise Unavailable() from exc

    async def _check(self, username: str, password: str, source: str, method: str) -> bool:
        lockout, stored = await asyncio.to_thread(self._lookup, username, source)
        matched = await asyncio.get_running_loop().run_in_executor(
            self._hash_executor, self._tenants.hasher.verify, password, stored
        )
        user = _printable(username)
        if lockout is not None:
            log.warning(
                "auth.refused",
                user=user,
                source=source,
                method=method,
                reason=f"{lockout.kind} locked until {lockout.until}",
            )
        elif matched and stored is not None:
            await asyncio.to_thread(self._succeeded, username, password, stored, source)
            log.info("auth.ok", user=user, source=source, method=method)
            return True
        else:
            await asyncio.to_thread(self._defender.record_failure, username, source)
            log.warning("auth.failed", user=user, source=source, method=method)
        await asyncio.sleep(self._delay)
        return False

    def _lookup(self, username: str, source: str) -> tuple[Lockout | None, str | None]:
        """The lockout, if any, else the hash to verify: None (verify against nothing, refuse)
        unless the tenant exists and :attr:`core.tenants.Tenant.may_log_in`."""
        lockout = self._defender.lockout_for(username, source)
        return lockout, None if lockout else self._tenants.password_hash(username)

    def _succeeded(self, username: str, password: str, stored: str, source: str) -> None:
        self._defender.record_success(username, source)
        self._tenants.rehash_if_needed(username, password, stored)


class TenantSSHServer(asyncssh.SSHServer):
    """One SSH connection's authentication: passwords (plain or keyboard-interactive) only.

    ``opened`` admits the new connection from its source address under the connection limits
    (see :mod:`sftpd.limits`), or raises :class:`Refused`; ``closed`` is told when it ends. A
    good password is a login only if the tenant's session limit has room.
    """

    def __init__(
        self,
        gate: LoginGate,
        opened: Callable[[asyncssh.SSHServerConnection, str], Admission],
        closed: Callable[[asyncssh.SSHServerConnection], None],
    ) -> None:
        self._gate = gate
        self._opened = opened
        self._closed = closed
        self._conn: asyncssh.SSHServerConnection | None = None
        self._admission: Admission | None = None
        self._source = "unknown"

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        peer = conn.get_extra_info("peername")
        self._source = str(peer[0]) if peer else "unknown"
        try:
            self._admission = self._opened(conn, self._source)
        except Refused as exc:
            conn.disconnect(exc.code, exc.reason)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._closed(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        ok = await self._gate.check(username, password, self._source, "password")
        return ok and await self._logged_in(username)

    def get_kbdint_challenge(
        self, username: str, lang: str, submethods: str
    ) -> tuple[str, str, str, Sequence[tuple[str, bool]]]:
        return "", "", "", [(PASSWORD_PROMPT, False)]

    async def validate_kbdint_response(self, username: str, responses: Sequence[str]) -> bool:
        if len(responses) != 1:
            return False
        ok = await self._gate.check(username, responses[0], self._source, "keyboard-interactive")
        return ok and await self._logged_in(username)

    async def _logged_in(self, username: str) -> bool:
        """Count the login against the tenant's session limit; :class:`Refused` (which asyncssh
        turns into a disconnect with the reason) when it is full, :class:`Unavailable` when the
        database cannot count it."""
        if self._admission is None:
            return False
        try:
            await self._admission.log_in(username)
        except DatabaseUnavailable as exc:
            log.error("auth.unavailable", user=_printable(username), source=self._source, reason=str(exc))
            raise Unavailable() from exc
        return True


def _printable(username: str) -> str:
    """The user name as logged: attacker-chosen, so cut to a sane length."""
    return username[:MAX_KEY_LENGTH]
