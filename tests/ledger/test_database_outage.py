"""The embedded API while its PostgreSQL server is unreachable: 503 with Retry-After at once, not
a 500 or a hang, and answers again by itself once the server is back.

The state and the ledger live on a server of this module's own, which the test stops as a crash
would (``pg_ctl stop -m immediate``) and starts again on the same data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from core.config import Settings
from core.db.outage import PROBE_SECONDS
from tests.ledger.helpers import TenantClient
from tests.support.postgres import PostgresServer

WAIT_SECONDS = 30.0


@pytest.fixture
def settings(settings: Settings, stoppable_postgres: PostgresServer) -> Iterator[Settings]:
    url = stoppable_postgres.create_database()
    yield settings.replace(database__url=url)
    if not stoppable_postgres.running:  # a test that failed while it was stopped
        stoppable_postgres.resume()
    stoppable_postgres.drop_database(url)


async def test_an_outage_answers_503_with_retry_after_then_the_api_comes_back(
    client: TenantClient, stoppable_postgres: PostgresServer,
) -> None:
    assert await client.transactions() == []
    stoppable_postgres.pause()
    try:
        took = []
        for _ in range(3):
            began = time.monotonic()
            response = await client.transactions_response()
            took.append(time.monotonic() - began)
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "5"
            assert response.json()["errors"]["class"] == "ServiceUnavailable"
        print(f"API requests while the database was down took {[f'{t:.3f}' for t in took]} s")
    finally:
        stoppable_postgres.resume()
    deadline = time.monotonic() + WAIT_SECONDS
    await asyncio.sleep(PROBE_SECONDS)
    while (response := await client.transactions_response()).status_code != 200:
        assert response.status_code == 503 and time.monotonic() < deadline, response.text
        await asyncio.sleep(0.5)
    assert response.json() == []
