"""LedgerRequests.apply_queued answers a batch of queued requests as apply answers each alone.

Signals are saved together there (consecutive signals of one tenant in one store call), calls
and lookup rows alone; the same requests applied one by one, each in its own transaction as the
HTTP handlers apply them, must get the same status and body, and leave the same ledger.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from core.config import Settings
from core.db import Location
from core.tenants import Tenant, TenantStore
from ledger.auth import Gatekeeper
from ledger.requests import Answer, LedgerRequests, Queued
from ledger.store import LedgerStore

START = "2026-11-20T18:00:00Z"


def _signal(call: str, partner: str, description: str = "", **custom: str) -> str:
    return json.dumps({"search": {"transaction_id": call},
                       "signal": {"name": "Sale", "partner_unique_id": partner, "description": description,
                                  "occurred_at_time": START},
                       "custom_data": [{"name": name, "value": value} for name, value in custom.items()]})


def _call(external_id: str, transaction_id: str) -> str:
    return json.dumps({"call": {"external_id": external_id, "transaction_id": transaction_id, "start_time": START}})


def _requests(acme: Tenant, globex: Tenant) -> list[tuple[str, str, str, str]]:
    """(token, method, path, body): signals of two tenants in turns, a call whose id changes
    between signals, refusals of every kind among them."""
    signals = "/transactions/signals"
    return [
        (acme.api_token, "POST", "/calls.json", _call("a-1", "T-1")),
        (globex.api_token, "POST", "/calls.json", _call("g-1", "G-1")),
        (acme.api_token, "POST", signals, _signal("T-1", "o-1", Campaign="spring")),
        (acme.api_token, "POST", signals, _signal("T-1", "o-2", Agent="Ana")),
        (globex.api_token, "POST", signals, _signal("G-1", "o-1", Campaign="fall")),
        (acme.api_token, "POST", signals, _signal("T-1", "o-1", "corrected", Campaign="summer")),
        (acme.api_token, "POST", signals, _signal("T-1", "o-1", "corrected", Campaign="summer")),  # unchanged
        (acme.api_token, "POST", signals, _signal("T-1", "o-3", Nope="x")),  # not in the dictionary
        (acme.api_token, "POST", signals, _signal("T-404", "o-4")),  # no such call
        ("not-a-token", "POST", signals, _signal("T-1", "o-5")),  # 401, never remembered
        (acme.api_token, "POST", signals, "{not json"),
        (acme.api_token, "POST", "/calls.json", _call("a-1", "T-1b")),  # the call's id changes
        (acme.api_token, "POST", signals, _signal("T-1", "o-6")),  # its old id: 404 now
        (acme.api_token, "POST", signals, _signal("T-1b", "o-6", Agent="Ben")),
        (acme.api_token, "POST", "/nowhere", "{}"),
        (globex.api_token, "POST", signals, _signal("G-1", "o-2")),
    ]


def _shown(answer: Answer) -> tuple[int, dict[str, Any]]:
    return answer.status, answer.body


def _ledger(store: LedgerStore) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in store.db.query(
        "SELECT seq, tenant, transaction_type, corrects_seq, record FROM transactions ORDER BY seq")]


def test_queued_requests_get_the_answers_each_gets_alone(
    ledger_places: Callable[[str], Location], settings: Settings, tenants: TenantStore, acme: Tenant, globex: Tenant,
) -> None:
    together, alone = LedgerStore.open(ledger_places("together")), LedgerStore.open(ledger_places("alone"))
    try:
        together._clock = alone._clock = lambda: 1_790_000_000.0
        gate = Gatekeeper(tenants, None)
        requests = _requests(acme, globex)
        expected = [_shown(LedgerRequests(settings.api, tenants, alone).apply(gate, *request))
                    for request in requests]
        batched = LedgerRequests(settings.api, tenants, together)
        queued = [Queued(acme.name if token == acme.api_token else globex.name, token, number, f"k{number}",
                         method, path, body) for number, (token, method, path, body) in enumerate(requests)]
        with batched.batch([(request.request_id, request.key) for request in queued]) as conn:
            answers = batched.apply_queued(conn, gate, queued)
        assert [_shown(answer) for answer in answers] == expected
        assert [status for status, _ in expected].count(201) >= 6  # the batch did write
        assert _ledger(together) == _ledger(alone)
        # Replayed (a crash before the outbox was marked): the first answers, nothing written.
        with batched.batch([(request.request_id, request.key) for request in queued]) as conn:
            again = batched.apply_queued(conn, gate, queued)
        assert [_shown(answer)[0] for answer in again] == [status for status, _ in expected]
        assert _ledger(together) == _ledger(alone)
    finally:
        together.close()
        alone.close()
