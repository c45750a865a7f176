"""A real ledger server on a free loopback port, and tenants with their own HTTP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import psycopg
import pytest

from core.config import Settings
from core.db import Location, PostgresLocation
from core.tenants import Tenant, TenantStore
from ledger.server import ApiServer
from tests.conftest import TEST_PASSWORD
from tests.ledger.helpers import TenantClient
from tests.support import postgres

DICTIONARY = ["Campaign", "Zip Code", "Agent"]


CHEAP_ARGON2_MEMORY_KIB = 1024


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings with cheap password hashing (logins are not under test here) and no
    rate limit, so tests that post a lot are not throttled; rate-limit tests set their own."""
    return settings.replace(
        passwords__argon2_memory_kib=CHEAP_ARGON2_MEMORY_KIB,
        passwords__argon2_time_cost=1,
        api__rate_limit_requests=0,
    )


@pytest.fixture
def ledger_places(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Callable[[str], Location]:
    """Fresh places for ledgers of the test's own (``LedgerStore.open``), on the engine the
    session runs on: a new file, or a new schema of the test's PostgreSQL database."""
    if not postgres.wanted():
        return lambda name: tmp_path_factory.mktemp(name) / "ledger.db"
    url: str = request.getfixturevalue("postgres_url")
    made: set[str] = set()

    def place(name: str) -> Location:
        # A schema asked for again (the next example of a hypothesis test) is emptied rather
        # than made and migrated anew: the same fresh ledger, at a fraction of the cost.
        if name in made:
            _empty(url, name)
        made.add(name)
        return PostgresLocation(url, name)

    return place


def _empty(url: str, schema: str) -> None:
    """A ledger schema as a fresh one is: no rows, keys and the sequence counted from the start."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'schema_versions'"
            " AND tablename <> 'ledger_sequence'", (schema,))]
        conn.execute(f"TRUNCATE {', '.join(f'{schema}.{table}' for table in tables)} RESTART IDENTITY")
        conn.execute(f"UPDATE {schema}.ledger_sequence SET value = 0")


@pytest.fixture
async def api(settings: Settings, tenants: TenantStore) -> AsyncIterator[ApiServer]:
    server = ApiServer(settings, tenants)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def http(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url) as client:
        yield client


def add_tenant(tenants: TenantStore, name: str) -> Tenant:
    tenant = tenants.add(name, f"ops@{name}.example", TEST_PASSWORD)
    tenants.add_fields(name, DICTIONARY)
    return tenant


@pytest.fixture
def acme(tenants: TenantStore) -> Tenant:
    return add_tenant(tenants, "acme")


@pytest.fixture
def globex(tenants: TenantStore) -> Tenant:
    return add_tenant(tenants, "globex")


@pytest.fixture
def client(http: httpx.AsyncClient, acme: Tenant) -> TenantClient:
    return TenantClient(http, acme.api_token)


@pytest.fixture
def other_client(http: httpx.AsyncClient, globex: Tenant) -> TenantClient:
    return TenantClient(http, globex.api_token)
