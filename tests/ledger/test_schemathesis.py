"""The API against its own served OpenAPI schema (schemathesis, in-process over ASGI).

Every operation gets generated requests, valid and invalid, with a real tenant's token: no
answer may be a 5xx, every status and body must be one the schema documents, and a method the
path does not serve must get 405 with ``Allow``. Examples are few per operation so the run
stays within seconds; the generator still reaches ids, dates, numbers and nesting at their edges.

The schema is loaded when the module is imported (schemathesis' fixture loader does not work
with this pytest), through an ASGI hand-off that each test points at its own app, with its own
settings, ledger and tenant.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from starlette.types import ASGIApp, Receive, Scope, Send

from core.config import Settings
from core.tenants import Tenant, TenantStore
from ledger.app import create_app
from ledger.store import LedgerStore

# A longer hunt: SCHEMATHESIS_EXAMPLES=500 pytest tests/ledger/test_schemathesis.py
EXAMPLES_PER_OPERATION = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))


class _HandOff:
    """An ASGI app that passes every request to ``target``."""

    def __init__(self, target: ASGIApp) -> None:
        self.target = target

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.target(scope, receive, send)


# Serves only /openapi.json until a test installs a real app: the stores are never touched.
_DOCUMENT_ONLY = create_app(Settings(), cast(TenantStore, None), cast(LedgerStore, object()))
_APP = _HandOff(_DOCUMENT_ONLY)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture
def app(settings: Settings, tenants: TenantStore) -> Iterator[None]:
    store = LedgerStore.open(settings.ledger_location)
    _APP.target = create_app(settings, tenants, store)
    yield
    _APP.target = _DOCUMENT_ONLY
    store.close()


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: schemathesis.Case[Any], app: None, acme: Tenant
) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {acme.api_token}"})


