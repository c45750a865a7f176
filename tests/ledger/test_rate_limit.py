"""The per-token limit: never more than N requests in any window, then 429 with Retry-After."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from core.config import Settings
from core.tenants import Tenant, TenantStore
from ledger.ratelimit import SlidingWindowLimiter, retry_after_header
from ledger.server import ApiServer
from tests.ledger.helpers import TenantClient

LIMIT = 3
WINDOW_SECONDS = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def limited_http(settings: Settings, tenants: TenantStore) -> AsyncIterator[httpx.AsyncClient]:
    limited = settings.replace(api__rate_limit_requests=LIMIT, api__rate_limit_window_seconds=WINDOW_SECONDS)
    server = ApiServer(limited, tenants)
    await server.start()
    async with httpx.AsyncClient(base_url=server.url) as http:
        yield http
    await server.close()


async def test_the_request_over_the_limit_is_refused_with_retry_after(
    limited_http: httpx.AsyncClient, acme: Tenant
) -> None:
    client = TenantClient(limited_http, acme.api_token)
    await client.call(external_id="c", start_time="1460404800")

    # Creating the call used one request of the allowance.
    answers = [await client.signal({"call_start_time": "1460404800"}, {"name": "Sale"}) for _ in range(LIMIT)]

    assert [response.status_code for response in answers] == [201, 200, 429]
    refused = answers[-1]
    assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW_SECONDS
    assert refused.json() == {
        "errors": {
            "class": "RateLimitExceeded",
            "invalid_data": f"Rate limit of {LIMIT} requests per 60 seconds exceeded;"
            f" retry after {refused.headers['Retry-After']} seconds",
        }
    }
    assert (await client.transactions_response()).status_code == 429


async def test_each_token_has_its_own_allowance(
    limited_http: httpx.AsyncClient, acme: Tenant, globex: Tenant
) -> None:
    first = TenantClient(limited_http, acme.api_token)
    for _ in range(LIMIT):
        assert (await first.transactions_response()).status_code == 200
    assert (await first.transactions_response()).status_code == 429

    assert (await TenantClient(limited_http, globex.api_token).transactions_response()).status_code == 200


async def test_requests_with_a_bad_token_do_not_use_the_allowance(
    limited_http: httpx.AsyncClient, acme: Tenant
) -> None:
    for _ in range(LIMIT + 2):
        assert (await TenantClient(limited_http, "not-a-token").transactions_response()).status_code == 401

    assert (await TenantClient(limited_http, acme.api_token).transactions_response()).status_code == 200


def test_the_window_slides() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(LIMIT, WINDOW_SECONDS, clock)
    admitted_at = []
    for _ in range(4 * LIMIT * 10):
        if limiter.acquire("token") == 0:
            admitted_at.append(clock.now)
        clock.now += WINDOW_SECONDS / 10

    assert all(
        sum(1 for moment in admitted_at if start <= moment < start + WINDOW_SECONDS) <= LIMIT
        for start in admitted_at
    )
    assert len(admitted_at) >= 3 * LIMIT


def test_the_wait_is_until_the_oldest_admission_leaves_the_window() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(LIMIT, WINDOW_SECONDS, clock)
    for _ in range(LIMIT):
        assert limiter.acquire("token") == 0
        clock.now += 10

    wait = limiter.acquire("token")

    assert wait == pytest.approx(WINDOW_SECONDS - 10 * LIMIT)
    assert retry_after_header(wait) == 30
    clock.now += wait
    assert limiter.acquire("token") == 0
