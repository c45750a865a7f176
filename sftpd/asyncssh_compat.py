"""The one module that relies on asyncssh's internals; it checks them when imported.

What it fixes: asyncssh calls ``SFTPServer.close(file_obj)`` both for a client's
``SSH_FXP_CLOSE`` and, when a session ends, for every handle still open, whether the client quit
cleanly or its connection broke off in the middle of an upload, and it tells the server nothing
about which. A file counts as uploaded only after the client's own close request, so this module
wraps the entry of asyncssh's request dispatch table that serves ``SSH_FXP_CLOSE``: while it runs,
:func:`client_requested_close` is true. The session-end path (``SFTPServerHandler._cleanup``) is
not wrapped, so a close made there reads false and the upload is discarded.

Upstream fix that would remove this module: asyncssh telling ``SFTPServer.close()`` why it is
called, e.g. a separate ``SFTPServer.abort(file_obj)`` hook (defaulting to ``close``) that
``_cleanup`` calls for the handles a session left open.

What it relies on, checked at import (:func:`problems`); if any of it moved, importing this module
raises :class:`AsyncsshIncompatible` and the daemon refuses to start with that message, so no
upload is ever acknowledged and then discarded:

- ``asyncssh.sftp.SFTPServerHandler._process_close(self, packet)``, a coroutine function that
  calls ``self._server.close``;
- ``SFTPServerHandler._packet_handlers``, a dict mapping ``SSH_FXP_CLOSE`` (4) to it;
- ``SFTPServerHandler._process_packet`` dispatching through ``self._packet_handlers``.

The context variable is set in the context of the coroutine serving the close request, so the
``close()`` it calls sees it, and a session ending in another task (or, as in asyncssh today,
after the request in the same task) does not.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import asyncssh.sftp

from core.compat import IncompatibleDependency, method_problem

# SSH File Transfer Protocol (draft-ietf-secsh-filexfer-02, section 3): the close request.
SSH_FXP_CLOSE = 4

_PacketHandler = Callable[[Any, Any], Awaitable[None]]

_client_close: ContextVar[bool] = ContextVar("sftpd_client_close", default=False)


class AsyncsshIncompatible(IncompatibleDependency):
    """The installed asyncssh does not have the internals this module relies on."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("asyncssh", problems)


def client_requested_close() -> bool:
    """Whether the ``SFTPServer.close()`` being served answers the client's ``SSH_FXP_CLOSE``
    (true), or closes a handle the session left open when it ended (false)."""
    return _client_close.get()


def problems(handler: type[Any] | None = None) -> list[str]:
    """What ``handler`` (asyncssh's ``SFTPServerHandler`` by default) lacks of what this
    module relies on; empty when everything is in place."""
    if handler is None:
        handler = getattr(asyncssh.sftp, "SFTPServerHandler", None)
        if not isinstance(handler, type):
            return ["asyncssh.sftp.SFTPServerHandler is missing"]
    found: list[str] = []
    close = method_problem(handler, "_process_close", ["self", "packet"], coroutine=True,
                           calls=["_server", "close"])
    if close is not None:
        found.append(close + " (it serves a client's SSH_FXP_CLOSE)")
    dispatch = method_problem(handler, "_process_packet", None, coroutine=True,
                              calls=["_packet_handlers"])
    if dispatch is not None:
        found.append(dispatch + " (it dispatches each request through _packet_handlers)")
    table = getattr(handler, "_packet_handlers", None)
    if not isinstance(table, dict):
        found.append(f"{handler.__name__}._packet_handlers (its request dispatch table) is missing")
    elif close is None and _unwrapped(table.get(SSH_FXP_CLOSE)) is not _unwrapped(
        handler._process_close
    ):
        found.append(f"{handler.__name__}._packet_handlers no longer maps SSH_FXP_CLOSE "
                     f"({SSH_FXP_CLOSE}) to _process_close")
    return found


def _unwrapped(function: object) -> object:
    """A handler without this module's wrapper (the module may be imported again: reload)."""
    return getattr(function, "__wrapped__", function)


def _install() -> None:
    """Wrap the table entry that serves ``SSH_FXP_CLOSE`` (asyncssh's class-level table, shared
    by every SFTP server session in the process)."""
    handler = asyncssh.sftp.SFTPServerHandler
    table: dict[int | bytes, Any] = handler._packet_handlers
    serve_close: _PacketHandler = handler._process_close

    @functools.wraps(serve_close)
    async def serve_client_close(self: Any, packet: Any) -> None:
        token = _client_close.set(True)
        try:
            await serve_close(self, packet)
        finally:
            _client_close.reset(token)

    table[SSH_FXP_CLOSE] = serve_client_close


def _check_and_install() -> None:
    found = problems()
    if found:
        raise AsyncsshIncompatible(found)
    _install()


_check_and_install()
