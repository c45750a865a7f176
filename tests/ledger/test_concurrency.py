"""Many requests at once leave a consistent ledger: unique, gap-free, each row listed once."""

from __future__ import annotations

import asyncio

from tests.ledger.helpers import TenantClient

CONCURRENT = 50
START = "1460404800"


async def test_concurrent_new_signals_get_distinct_ordered_rows(client: TenantClient) -> None:
    await client.call(external_id="c", start_time=START)

    responses = await asyncio.gather(
        *(
            client.signal({"call_start_time": START}, {"name": "Sale", "partner_unique_id": str(n)})
            for n in range(CONCURRENT)
        )
    )

    assert [response.status_code for response in responses] == [201] * CONCURRENT
    ids = {response.json()["signal"]["transaction_id"] for response in responses}
    rows = await client.transactions(transaction_type="signal")
    assert len(ids) == CONCURRENT
    assert [row["transaction_id"] for row in rows] == sorted(ids)


async def test_concurrent_identical_posts_create_one_signal(client: TenantClient) -> None:
    await client.call(external_id="c", start_time=START)
    signal = {"name": "Sale", "occurred_at_time": START, "sale_amount": "10.00"}

    responses = await asyncio.gather(
        *(client.signal({"call_start_time": START}, signal) for _ in range(CONCURRENT))
    )

    assert sorted(response.status_code for response in responses) == [200] * (CONCURRENT - 1) + [201]
    assert len({response.json()["signal"]["transaction_id"] for response in responses}) == 1
    assert len(await client.transactions(transaction_type="signal")) == 1


async def test_concurrent_corrections_form_one_chain(client: TenantClient) -> None:
    await client.call(external_id="c", start_time=START)

    responses = await asyncio.gather(
        *(
            client.signal({"call_start_time": START}, {"name": "Sale", "description": f"version {n}"})
            for n in range(CONCURRENT)
        )
    )

    rows = await client.transactions(transaction_type="signal")
    assert len(rows) == CONCURRENT
    assert [row["corrects_transaction_id"] for row in rows] == [None] + [
        row["transaction_id"] for row in rows[:-1]
    ]
    assert sorted(response.status_code for response in responses) == [200] * (CONCURRENT - 1) + [201]


async def test_a_poller_running_alongside_writers_sees_each_row_once(client: TenantClient) -> None:
    await client.call(external_id="c", start_time=START)
    seen: list[str] = []
    writing = True

    async def poll() -> None:
        cursor = ""
        while True:
            finished = not writing
            page = await client.transactions(start_after_transaction_id=cursor, limit=7)
            seen.extend(row["transaction_id"] for row in page)
            cursor = page[-1]["transaction_id"] if page else cursor
            if finished and len(page) < 7:
                return

    poller = asyncio.create_task(poll())
    await asyncio.gather(
        *(
            client.signal({"call_start_time": START}, {"name": "Sale", "partner_unique_id": str(n)})
            for n in range(CONCURRENT)
        )
    )
    writing = False
    await poller

    everything = [row["transaction_id"] for row in await client.transactions()]
    assert seen == everything
    assert len(everything) == CONCURRENT + 1
