"""Who is asking: the API token, from the body, the query string or an ``Authorization`` header.

Tokens are accepted as ``oauth_token`` (JSON body or query, as the Signal API documents),
``Authorization: Bearer <token>`` and Rails' ``Authorization: Token token=<token>``. A token
names exactly one tenant and sees only that tenant's calls. Tokens are looked up on every
request, so ``sftpctl token rotate`` takes effect at once, even from another process, and so
does ``sftpctl tenant disable`` or ``tenant remove``: a tenant that may not post
(:attr:`core.tenants.Tenant.may_post`) gets 403 ``UnauthorizedOperation``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from core.tenants import Tenant, TenantStore
from ledger.errors import RateLimited, Unauthorized, UnauthorizedOperation
from ledger.ratelimit import SlidingWindowLimiter, retry_after_header

_RAILS_TOKEN = re.compile(r'^token=(?:"([^"]*)"|([^,\s]+))', re.IGNORECASE)


def request_token(request: Request, body: Any = None) -> str | None:
    """The token the request carries, header first; None when there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "token" and (match := _RAILS_TOKEN.match(credentials)):
        return match.group(1) or match.group(2)
    if token := request.query_params.get("oauth_token"):
        return token
    if isinstance(body, Mapping) and isinstance(body.get("oauth_token"), str) and body["oauth_token"]:
        return str(body["oauth_token"])
    return None


class Gatekeeper:
    """Turns a token into its tenant, enforcing the per-token rate limit."""

    def __init__(self, tenants: TenantStore, limiter: SlidingWindowLimiter | None) -> None:
        self._tenants = tenants
        self._limiter = limiter

    def admit(self, token: str | None) -> Tenant:
        if not token:
            raise Unauthorized("Missing oauth token")
        # No token holds a NUL (nor can PostgreSQL compare one): not looked up.
        tenant = None if "\x00" in token else self._tenants.find_by_token(token)
        if tenant is None:
            raise Unauthorized("Invalid oauth token")
        if not tenant.may_post:  # disabled, or its login removed: see core.tenants
            raise UnauthorizedOperation()
        if self._limiter is not None and (wait := self._limiter.acquire(token)):
            seconds = retry_after_header(wait)
            raise RateLimited(
                f"Rate limit of {self._limiter.limit} requests per {self._limiter.window:g} seconds"
                f" exceeded; retry after {seconds} seconds",
                seconds,
            )
        return tenant
