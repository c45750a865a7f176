"""The one module that relies on asyncssh's internals; it checks them when imported.

It changes three things about asyncssh's SFTP server, each by wrapping one entry point of
``SFTPServerHandler`` (never by replacing asyncssh's own code), so everything else asyncssh does
for those requests stays as it is, and offers one way to end a connection (:func:`disconnect`).

**The client's close.** asyncssh calls ``SFTPServer.close(file_obj)`` both for a client's
``SSH_FXP_CLOSE`` and, when a session ends, for every handle still open, whether the client quit
cleanly or its connection broke off in the middle of an upload, and it tells the server nothing
about which. A file counts as uploaded only after the client's own close request, so the entry of
asyncssh's request dispatch table that serves ``SSH_FXP_CLOSE`` is wrapped: while it runs,
:func:`client_requested_close` is true. The session-end path (``SFTPServerHandler._cleanup``) does
not set it, so a close made there reads false and the upload is discarded.
*Upstream fix:* tell ``SFTPServer.close()`` why it is called, e.g. a separate
``SFTPServer.abort(file_obj)`` hook (defaulting to ``close``) that ``_cleanup`` calls for the
handles a session left open.

**Write requests with bytes after the data** (rclone). pkg/sftp before v1.13.6 (rclone 1.60, as
Debian 12 ships it) sends the last, short write of a file from ``ReadFromWithConcurrency`` with
the data string's length set to the bytes read, but with the whole 32 KiB buffer after it: the
request ``uint32 id, string handle, uint64 offset, string data`` is followed by up to 32 KiB of
stale bytes (the tail of the previous chunk), and the SFTP packet's length counts them
(pkg/sftp pull request 537). OpenSSH's sftp-server reads the fields it needs and skips whatever
a request leaves over (``process()`` consumes the rest of each message), so it writes exactly the
data string. asyncssh's ``_process_write`` calls ``packet.check_end()`` and answers
``SSH_FX_BAD_MESSAGE "Unexpected data at end of packet"``, so every rclone upload over 32 KiB
whose size is not a multiple of 32 KiB failed. The entry serving ``SSH_FXP_WRITE`` is wrapped to
hand asyncssh the request cut after its data string (:func:`write_request_length`); the bytes past
it are never written, as with OpenSSH.
*Upstream fix:* in ``SFTPServerHandler._process_write``, drop ``packet.check_end()`` for version
3-5 (as OpenSSH's sftp-server does, ignore what follows the data string), or at least accept
trailing bytes when the packet was sent with the data string's declared length.

**How the session ended.** ``SFTPServer.exit()`` is called when the session ends, without the
reason: a client's end of input (a normal close) or an error (a malformed request). The server
answers the first with exit status 0, which ``scp`` checks, and the second with a failure, so
``SFTPServerHandler._cleanup`` is wrapped: while it runs, :func:`session_end` says which.
*Upstream fix:* ``SFTPServer.exit()`` taking the exception (None on a clean end), and asyncssh
sending exit status 0 itself when an SFTP subsystem ends cleanly (OpenSSH's sshd does).

**A disconnect the client hears.** ``SSHConnection.disconnect(code, reason)`` closes every
channel (``SSH_MSG_CHANNEL_CLOSE``) before it sends ``SSH_MSG_DISCONNECT``. OpenSSH's client ends
as soon as its session channel closes, so it often never reads the disconnect, and a customer
whose session an operator ended (``sftpctl tenant disable``) or the idle timeout closed saw
nothing, or "Connection closed" at the next command, instead of the reason. :func:`disconnect`
sends the disconnect first, then closes the connection as asyncssh does for a refused login
(``_send_disconnect`` then ``_force_close``); the channels end with it, as when a connection
drops, and an upload still open is discarded as then.
*Upstream fix:* ``disconnect()`` sending ``SSH_MSG_DISCONNECT`` before closing the channels (RFC
4253 section 11.1: no message follows it anyway).

What it relies on, checked at import (:func:`problems`); if any of it moved, importing this module
raises :class:`AsyncsshIncompatible` and the daemon refuses to start with that message, so no
upload is ever acknowledged and then discarded, and no rclone upload refused again:

- ``asyncssh.sftp.SFTPServerHandler._process_close(self, packet)``, a coroutine function that
  calls ``self._server.close``; ``_process_write(self, packet)``, a coroutine function that
  reads the request with ``get_string`` and ``get_uint64``;
- ``SFTPServerHandler._packet_handlers``, a dict mapping ``SSH_FXP_CLOSE`` (4) and
  ``SSH_FXP_WRITE`` (6) to them;
- ``SFTPServerHandler._process_packet`` dispatching through ``self._packet_handlers``;
- ``SFTPServerHandler._cleanup(self, exc)``, a coroutine function that calls ``self._server.exit``;
- ``asyncssh.packet.SSHPacket(packet)``, built from the bytes of a request, with
  ``get_remaining_payload()``;
- ``asyncssh.connection.SSHConnection._send_disconnect(self, code, reason, lang)`` and
  ``_force_close(self, exc)``.

The context variables are set in the context of the coroutine serving the request (or ending the
session), so the ``close()`` or ``exit()`` it calls sees them, and a session ending in another task
(or, as in asyncssh today, after the request in the same task) does not.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

import asyncssh.connection
import asyncssh.packet
import asyncssh.sftp

from core.compat import IncompatibleDependency, method_problem

# SSH File Transfer Protocol (draft-ietf-secsh-filexfer-02, section 3): the close and write requests.
SSH_FXP_CLOSE = 4
SSH_FXP_WRITE = 6
_UINT32_BYTES = 4
_UINT64_BYTES = 8

_PacketHandler = Callable[[Any, Any], Awaitable[None]]
_Cleanup = Callable[[Any, Exception | None], Awaitable[None]]


@dataclass(frozen=True)
class SessionEnd:
    """Why an SFTP session is ending: ``error`` is None when the client ended its input."""

    error: BaseException | None


_client_close: ContextVar[bool] = ContextVar("sftpd_client_close", default=False)
_session_end: ContextVar[SessionEnd | None] = ContextVar("sftpd_session_end", default=None)


class AsyncsshIncompatible(IncompatibleDependency):
    """The installed asyncssh does not have the internals this module relies on."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("asyncssh", problems)


def client_requested_close() -> bool:
    """Whether the ``SFTPServer.close()`` being served answers the client's ``SSH_FXP_CLOSE``
    (true), or closes a handle the session left open when it ended (false)."""
    return _client_close.get()


def session_end() -> SessionEnd | None:
    """Within ``SFTPServer.exit()`` (and the closes of a session's end): how the session ended;
    None elsewhere."""
    return _session_end.get()


def disconnect(conn: asyncssh.SSHServerConnection, code: int, reason: str) -> None:
    """End ``conn``, the client told ``reason`` before its channels close (see above)."""
    connection: Any = conn
    connection._send_disconnect(code, reason, asyncssh.DEFAULT_LANG)
    connection._force_close(None)


def write_request_length(request: bytes) -> int:
    """How many bytes of an ``SSH_FXP_WRITE`` request (after its id: ``string handle, uint64
    offset, string data``) its fields take; ``len(request)`` if they do not fit in it (asyncssh
    then refuses it as incomplete)."""
    handle_end = _UINT32_BYTES + int.from_bytes(request[:_UINT32_BYTES], "big")
    length_end = handle_end + _UINT64_BYTES + _UINT32_BYTES
    if length_end > len(request):
        return len(request)
    data_end = length_end + int.from_bytes(request[length_end - _UINT32_BYTES:length_end], "big")
    return min(data_end, len(request))


def problems(handler: type[Any] | None = None, packet: type[Any] | None = None,
             connection: type[Any] | None = None) -> list[str]:
    """What ``handler`` (asyncssh's ``SFTPServerHandler`` by default), ``packet`` (its
    ``SSHPacket``) and ``connection`` (its ``SSHConnection``) lack of what this module relies on;
    empty when everything is in place."""
    if handler is None:
        handler = getattr(asyncssh.sftp, "SFTPServerHandler", None)
        if not isinstance(handler, type):
            return ["asyncssh.sftp.SFTPServerHandler is missing"]
    if packet is None:
        packet = getattr(asyncssh.packet, "SSHPacket", None)
        if not isinstance(packet, type):
            return ["asyncssh.packet.SSHPacket is missing"]
    found: list[str] = []
    served = {
        SSH_FXP_CLOSE: ("_process_close", ["_server", "close"], "it serves a client's SSH_FXP_CLOSE"),
        SSH_FXP_WRITE: ("_process_write", ["get_string", "get_uint64"], "it serves SSH_FXP_WRITE"),
    }
    moved: dict[int, str | None] = {}
    for request, (name, calls, role) in served.items():
        moved[request] = method_problem(handler, name, ["self", "packet"], coroutine=True,
                                        calls=calls)
        if moved[request] is not None:
            found.append(f"{moved[request]} ({role})")
    dispatch = method_problem(handler, "_process_packet", None, coroutine=True,
                              calls=["_packet_handlers"])
    if dispatch is not None:
        found.append(dispatch + " (it dispatches each request through _packet_handlers)")
    table = getattr(handler, "_packet_handlers", None)
    if not isinstance(table, dict):
        found.append(f"{handler.__name__}._packet_handlers (its request dispatch table) is missing")
    else:
        for request, (name, _, _) in served.items():
            if moved[request] is None and _unwrapped(table.get(request)) is not _unwrapped(
                getattr(handler, name)
            ):
                found.append(f"{handler.__name__}._packet_handlers no longer maps "
                             f"{_REQUEST_NAMES[request]} ({request}) to {name}")
    cleanup = method_problem(handler, "_cleanup", ["self", "exc"], coroutine=True,
                             calls=["_server", "exit"])
    if cleanup is not None:
        found.append(cleanup + " (it ends a session)")
    made = method_problem(packet, "__init__", ["self", "packet"], coroutine=False)
    if made is not None:
        found.append(made + " (a request is decoded from its bytes)")
    remaining = method_problem(packet, "get_remaining_payload", ["self"], coroutine=False)
    if remaining is not None:
        found.append(remaining + " (it gives a write request's bytes)")
    if connection is None:
        connection = getattr(asyncssh.connection, "SSHConnection", None)
        if not isinstance(connection, type):
            return [*found, "asyncssh.connection.SSHConnection is missing"]
    for name, parameters, role in (("_send_disconnect", ["self", "code", "reason", "lang"], "it tells why"),
                                   ("_force_close", ["self", "exc"], "it ends a connection")):
        moved_method = method_problem(connection, name, parameters, coroutine=False)
        if moved_method is not None:
            found.append(f"{moved_method} ({role}: sftpd.asyncssh_compat.disconnect)")
    return found


_REQUEST_NAMES = {SSH_FXP_CLOSE: "SSH_FXP_CLOSE", SSH_FXP_WRITE: "SSH_FXP_WRITE"}


def _unwrapped(function: object) -> object:
    """A handler without this module's wrapper (the module may be imported again: reload)."""
    return getattr(function, "__wrapped__", function)


def _install() -> None:
    """Wrap the table entries that serve ``SSH_FXP_CLOSE`` and ``SSH_FXP_WRITE``, and the
    session's end (asyncssh's class-level table and method, shared by every SFTP server session
    in the process)."""
    handler = asyncssh.sftp.SFTPServerHandler
    table: dict[int | bytes, Any] = handler._packet_handlers
    serve_close = cast(_PacketHandler, _unwrapped(handler._process_close))
    serve_write = cast(_PacketHandler, _unwrapped(handler._process_write))
    cleanup = cast(_Cleanup, _unwrapped(handler._cleanup))
    packet_type: Callable[[bytes], Any] = asyncssh.packet.SSHPacket

    @functools.wraps(serve_close)
    async def serve_client_close(self: Any, packet: Any) -> None:
        token = _client_close.set(True)
        try:
            await serve_close(self, packet)
        finally:
            _client_close.reset(token)

    @functools.wraps(serve_write)
    async def serve_write_as_openssh(self: Any, packet: Any) -> None:
        request: bytes = packet.get_remaining_payload()
        length = write_request_length(request)
        if length < len(request):
            packet = packet_type(request[:length])
        await serve_write(self, packet)

    @functools.wraps(cleanup)
    async def cleanup_telling_why(self: Any, exc: Exception | None) -> None:
        token = _session_end.set(SessionEnd(exc))
        try:
            await cleanup(self, exc)
        finally:
            _session_end.reset(token)

    table[SSH_FXP_CLOSE] = serve_client_close
    table[SSH_FXP_WRITE] = serve_write_as_openssh
    setattr(handler, "_cleanup", cleanup_telling_why)  # noqa: B010 (a method: mypy refuses =)


def _check_and_install() -> None:
    found = problems()
    if found:
        raise AsyncsshIncompatible(found)
    _install()


_check_and_install()
