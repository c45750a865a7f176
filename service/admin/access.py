"""Who may use the admin listener: anyone on loopback, or whoever holds ``[admin] token``.

Bound to another address without a token, the listener would show every tenant's state to the
network; the daemon refuses to start that way (:func:`exposure_problem`).
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from core.config import AdminSettings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_problem(admin: AdminSettings) -> str | None:
    """Why these settings may not be served, or None."""
    if admin.listen_port and not admin.token and not is_loopback(admin.listen_host):
        return (f"admin.listen_host = {admin.listen_host!r} is not loopback, so [admin] token must be set"
                " (every request then sends Authorization: Bearer TOKEN)")
    return None


class BearerToken:
    """ASGI middleware: 401 unless ``Authorization: Bearer <token>`` matches (when a token is set)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = Headers(scope=scope).get("authorization", "").encode()
            if not hmac.compare_digest(given, self._expected):
                response = PlainTextResponse("a bearer token is required\n", status_code=401,
                                             headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)
