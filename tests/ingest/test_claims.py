"""Claims across processes: held by the living, taken over from the dead, lost after a lease."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from core.db import Database, Location
from ingest.claims import ClaimHeld, Claims, tenant_claim
from tests.support import postgres

HOLD = """
import sys
from pathlib import Path
from core.db import Database, PostgresLocation
from ingest.claims import Claims
location = PostgresLocation(sys.argv[1], sys.argv[2]) if sys.argv[2] else Path(sys.argv[1])
Claims(Database(location)).take(sys.argv[3], run_id=7)
print("held", flush=True)
sys.stdin.read()
"""


def hold_in_another_process(db: Location, name: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, *postgres.location_argv(db), name],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture
def claims(state_db: Database) -> Claims:
    return Claims(state_db)


def test_a_live_holder_keeps_its_claim_and_is_named(state_db: Database, claims: Claims) -> None:
    holder = hold_in_another_process(state_db.path, tenant_claim("acme"))
    try:
        with pytest.raises(ClaimHeld, match=rf"tenant 'acme' is being processed by run 7 \(pid {holder.pid}\)"):
            claims.take(tenant_claim("acme"))
        assert claims.holder(tenant_claim("acme")) is not None
        with claims.held(tenant_claim("beta")):  # another tenant is free
            pass
    finally:
        holder.communicate("")


def test_a_killed_holders_claim_is_taken_over_at_once(state_db: Database, claims: Claims) -> None:
    holder = hold_in_another_process(state_db.path, tenant_claim("acme"))
    holder.kill()
    holder.wait()
    assert claims.holder(tenant_claim("acme")) is None
    claim = claims.take(tenant_claim("acme"), run_id=8)
    assert claims.holder(tenant_claim("acme")).run_id == 8  # type: ignore[union-attr]
    claims.release(claim)


def test_a_claim_not_renewed_lapses_and_its_old_holder_learns_it(state_db: Database) -> None:
    short = Claims(state_db, lease_seconds=0.05)
    first = short.take(tenant_claim("acme"))
    with pytest.raises(ClaimHeld):  # this process is alive: only the lease can end the claim
        short.take(tenant_claim("acme"))
    time.sleep(0.1)
    second = short.take(tenant_claim("acme"))
    assert not short.renew(first)
    short.release(first)  # releasing a lost claim leaves the new holder's alone
    assert short.renew(second)


async def test_holding_renews_the_lease_and_releases_at_the_end(state_db: Database) -> None:
    short = Claims(state_db, lease_seconds=0.2)
    async with short.holding(tenant_claim("acme"), run_id=3):
        await asyncio.sleep(0.5)  # more than two leases
        with pytest.raises(ClaimHeld, match=r"by run 3 \(pid"):
            short.take(tenant_claim("acme"))
    with short.held(tenant_claim("acme")):
        pass


async def test_wait_for_takes_the_claim_once_its_holder_lets_go(state_db: Database, claims: Claims) -> None:
    first = claims.take("scan")
    waiting = asyncio.create_task(claims.wait_for("scan", poll=0.01))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    claims.release(first)
    claims.release(await asyncio.wait_for(waiting, 5))
