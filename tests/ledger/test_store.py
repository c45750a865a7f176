"""LedgerStore.batch and save_signals: what a batch remembers, and signals saved together,
never make it store or answer anything else.

Each test writes the same requests once inside one batch and once request by request (each
its own transaction, as the HTTP handlers write), and compares every stored transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.db import Location
from ledger import store as store_module
from ledger.errors import ApiError, RecordNotFound
from ledger.matching import distance
from ledger.records import (
    CallResult,
    CallSearch,
    LookupRow,
    SignalResult,
    SignalWrite,
    TransactionQuery,
    TransactionType,
)
from ledger.store import LedgerStore, _call

#: ``ledger_places`` (tests/ledger/conftest.py): a fresh place for a ledger, by name.
Places = Callable[[str], Location]

TOLERANCE = 600.0
START = 1_780_000_000.0


def _now() -> float:
    return START + 3600


@pytest.fixture
def stores(ledger_places: Places) -> Iterator[tuple[LedgerStore, LedgerStore]]:
    one = LedgerStore.open(ledger_places("batched"))
    two = LedgerStore.open(ledger_places("single"))
    one._clock = two._clock = _now  # stored times equal on both sides
    yield one, two
    one.close()
    two.close()


def _transactions(store: LedgerStore) -> list[tuple[Any, ...]]:
    return [(row["seq"], row["transaction_type"], row["corrects_seq"], json.loads(row["record"]))
            for row in store.db.query("SELECT * FROM transactions ORDER BY seq")]


def _sequence(store: LedgerStore) -> int:
    row = store.db.query_one("SELECT value FROM ledger_sequence WHERE id = 1")
    assert row is not None
    return int(row["value"])


def _signal(store: LedgerStore, call: str, partner: str, data: dict[str, str]) -> None:
    store.save_signal("acme", CallSearch(transaction_id=call), TOLERANCE,
                      {"name": "Sale", "partner_unique_id": partner}, data)


def _not_found(write: Callable[[], object]) -> None:
    with pytest.raises(RecordNotFound):
        write()


def _writes(store: LedgerStore) -> list[Callable[[], object]]:
    """Calls, signals whose custom data changes the call each time, a call corrected in the
    middle (its id changes), lookup rows reaching a remembered call, and signals after both."""
    return [
        lambda: store.save_call("acme", "c-1", {"transaction_id": "T-1", "start_time": START,
                                                "calling_phone_number": "+18885550001"}),
        lambda: store.save_call("acme", "c-2", {"transaction_id": "T-2", "start_time": START + 60}),
        lambda: _signal(store, "T-1", "o-1", {"plan": "gold"}),
        lambda: _signal(store, "T-1", "o-2", {"region": "west"}),
        lambda: _signal(store, "T-2", "o-3", {"plan": "silver"}),
        lambda: _signal(store, "T-1", "o-1", {"plan": "platinum"}),  # a correction, on new data
        lambda: store.save_call("acme", "c-2", {"transaction_id": "T-2b", "start_time": START + 60}),
        lambda: _signal(store, "T-2b", "o-4", {"plan": "bronze"}),
        lambda: _not_found(lambda: _signal(store, "T-2", "o-6", {})),  # its old id names nothing now
        lambda: store.put_lookup_row("acme", LookupRow("accounts", "+18885550001", "", {"tier": "vip"})),
        lambda: _signal(store, "T-1", "o-5", {"region": "east"}),
    ]


def test_a_batch_stores_what_single_requests_store(stores: tuple[LedgerStore, LedgerStore]) -> None:
    batched, single = stores
    with batched.batch():
        for write in _writes(batched):
            write()
    for write in _writes(single):
        write()
    assert _transactions(batched) == _transactions(single)
    assert _sequence(batched) == _sequence(single) == len(_transactions(single))
    last = _transactions(batched)[-1][3]
    assert last["custom_data"] == {"plan": "platinum", "region": "east", "tier": "vip"}


def test_the_sequence_goes_on_across_batches_and_single_writes(stores: tuple[LedgerStore, LedgerStore]) -> None:
    store, _ = stores
    store.save_call("acme", "c-1", {"transaction_id": "T-1", "start_time": START})
    with store.batch():
        _signal(store, "T-1", "o-1", {})
        _signal(store, "T-1", "o-2", {})
    store.save_call("acme", "c-2", {"transaction_id": "T-2", "start_time": START})
    assert [row[0] for row in _transactions(store)] == [1, 2, 3, 4]
    assert _sequence(store) == 4


def test_an_undone_request_gives_back_its_sequence_numbers_and_what_it_changed(
    stores: tuple[LedgerStore, LedgerStore],
) -> None:
    batched, single = stores
    for store in stores:
        store.save_call("acme", "c-1", {"transaction_id": "T-1", "start_time": START})
    with batched.batch() as conn:
        with batched.savepoint(conn) as undo:
            _signal(batched, "T-1", "o-1", {"plan": "gold"})  # takes two numbers, then is undone
            undo()
        _signal(batched, "T-1", "o-2", {"region": "west"})
    _signal(single, "T-1", "o-2", {"region": "west"})
    assert _transactions(batched) == _transactions(single)
    assert _transactions(batched)[-1][3]["custom_data"] == {"region": "west"}  # not gold's merge
    assert _sequence(batched) == _sequence(single) == 3


def test_lookup_rows_of_one_moment_apply_in_the_order_they_were_first_stored(
    stores: tuple[LedgerStore, LedgerStore],
) -> None:
    """Rows stored at the same time (the clock is fixed) apply oldest first, the newest winning;
    a row replaced later keeps its place (SQLite's rowid; its own column on PostgreSQL)."""
    store, _ = stores
    # Tables named against the order of storing, so no index on the name gives that order.
    for table, tier in (("zeta", "gold"), ("mu", "silver"), ("alpha", "bronze")):
        store.put_lookup_row("acme", LookupRow(table, "+18885550001", "", {"tier": tier}))
    store.put_lookup_row("acme", LookupRow("mu", "+18885550001", "", {"tier": "platinum"}))
    store.put_lookup_row("acme", LookupRow("zeta", "+18885550001", "", {"tier": "iron"}))
    call = store.save_call("acme", "c-1", {"start_time": START, "calling_phone_number": "+18885550001"}).call
    assert call.custom_data == {"tier": "bronze"}
    store.db.execute("DELETE FROM lookup_rows WHERE table_name = 'alpha'")
    later = store.save_call("acme", "c-2", {"start_time": START, "calling_phone_number": "+18885550001"}).call
    assert later.custom_data == {"tier": "platinum"}


def test_a_batch_that_raises_leaves_nothing(stores: tuple[LedgerStore, LedgerStore]) -> None:
    store, _ = stores
    store.save_call("acme", "c-1", {"transaction_id": "T-1", "start_time": START})
    with pytest.raises(RuntimeError), store.batch():
        _signal(store, "T-1", "o-1", {"plan": "gold"})
        raise RuntimeError("a fault of ours")
    assert [row[0] for row in _transactions(store)] == [1]
    assert _sequence(store) == 1
    _signal(store, "T-1", "o-1", {})
    assert [row[0] for row in _transactions(store)] == [1, 2]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    calls=st.lists(st.tuples(st.integers(-900, 900), st.one_of(st.none(), st.integers(0, 40))), max_size=25),
    offset=st.integers(-700, 700),
    duration=st.one_of(st.none(), st.integers(0, 40)),
)
def test_a_start_time_search_picks_what_the_rule_picks_over_every_call(
    ledger_places: Places, calls: list[tuple[int, int | None]], offset: int,
    duration: int | None,
) -> None:
    """The search reads calls nearest first and stops early; the pick is the rule's over all."""
    store = LedgerStore.open(ledger_places("match"))
    try:
        for number, (start, seconds) in enumerate(calls):
            store.save_call("acme", f"c-{number}", {"transaction_id": f"T-{number}", "start_time": START + start,
                                                    "duration_in_seconds": seconds})
        search = CallSearch(start_time=START + offset, duration_in_seconds=duration)
        everyone = [_call(row) for row in store.db.query("SELECT * FROM calls")]
        expected = min(
            ((distance(call, START + offset, duration), call.start_time, call.id) for call in everyone
             if distance(call, START + offset, duration) <= TOLERANCE),
            default=None,
        )
        try:
            found: int | None = store.save_signal("acme", search, TOLERANCE, {"name": "Sale"}, {}).call.id
        except RecordNotFound:
            found = None
        assert found == (expected[2] if expected else None)
    finally:
        store.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.tuples(st.sampled_from(list(TransactionType)), st.integers(0, 9)), max_size=60),
    after=st.integers(0, 60),
    limit=st.integers(1, 8),
    types=st.sets(st.sampled_from(list(TransactionType))),
    window=st.one_of(st.none(), st.tuples(st.integers(0, 9), st.integers(0, 10))),
    budget=st.integers(1, 3),
)
def test_a_filtered_transactions_page_is_the_plain_query_s_page(
    ledger_places: Places, monkeypatch: pytest.MonkeyPatch,
    rows: list[tuple[TransactionType, int]], after: int, limit: int, types: set[TransactionType],
    window: tuple[int, int] | None, budget: int,
) -> None:
    """Whether a page is read in id order or partly through a filter's index, it holds the rows
    the plain filtered query in id order gives."""
    monkeypatch.setattr(store_module, "SCAN_ROWS_PER_ROW", budget)
    store = LedgerStore.open(ledger_places("pages"))
    try:
        call = store.save_call("acme", "c-1", {"transaction_id": "T-1", "start_time": START}).call
        store.db.execute("DELETE FROM transactions")
        for seq, (kind, day) in enumerate(rows, start=1):
            for tenant in ("acme", "other"):  # another tenant's rows in between
                store.db.execute(
                    "INSERT INTO transactions (seq, tenant, call_id, transaction_type, corrects_seq, recorded_at,"
                    " call_start, record) VALUES (?, ?, ?, ?, NULL, 0, ?, '{}')",
                    (seq * 2 - (tenant == "acme"), tenant, call.id, kind.value, START + day * 86400))
        query = TransactionQuery(after=after, limit=limit, types=tuple(sorted(types)),
                                 start_from=START + window[0] * 86400 if window else None,
                                 start_before=START + window[1] * 86400 if window else None)
        expected = [
            seq * 2 - 1 for seq, (kind, day) in enumerate(rows, start=1)
            if seq * 2 - 1 > after and (not types or kind in types)
            and (window is None or window[0] <= day < window[1])
        ][:limit]
        assert [row.sequence for row in store.transactions("acme", query)] == expected
    finally:
        store.close()


def test_a_record_holds_the_call_s_set_fields_and_is_read_back_whole(
    stores: tuple[LedgerStore, LedgerStore],
) -> None:
    """A record leaves out the call's unset fields (most of a record's bytes for a sparse call);
    the transactions read back hold every field, unset ones as None and no attributes."""
    store, _ = stores
    store.save_call("acme", "c-1", {"transaction_id": "T-1", "start_time": START, "network_id": "n-7"})
    _signal(store, "T-1", "p-1", {})
    set_fields = {"transaction_id": "T-1", "start_time": START, "network_id": "n-7"}
    assert [record["call"] for *_, record in _transactions(store)] == [set_fields, set_fields]
    whole = {"transaction_id": "T-1", "start_time": START, "external_id": None, "duration_in_seconds": None,
             "calling_phone_number": None, "advertiser_id_from_network": None,
             "advertiser_campaign_id_from_network": None, "network_id": "n-7", "attributes": {}}
    assert [row.record["call"] for row in store.transactions("acme", TransactionQuery())] == [whole, whole]


def _table(store: LedgerStore, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in store.db.query(sql)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(st.tuples(
    st.sampled_from(["T-1", "T-2", "T-3", "none"]),  # "none": no such call, refused
    st.sampled_from(["Sale", "sale", "Lead"]),  # a name's casing is its first report's
    st.sampled_from(["", "o-1", "o-2"]),
    st.sampled_from(["", "a", "b"]),  # a description: equal again is "unchanged"
    st.dictionaries(st.sampled_from(["plan", "region"]), st.sampled_from(["gold", "west"]), max_size=2),
), max_size=30), split=st.integers(0, 30))
def test_signals_saved_together_are_what_one_by_one_saves_make(
    ledger_places: Places, writes: list[tuple[str, str, str, str, dict[str, str]]], split: int,
) -> None:
    """:meth:`LedgerStore.save_signals` (in two calls of one batch) against :meth:`save_signal`
    per row, each its own transaction: the same results, transactions, signals and calls."""
    together, alone = LedgerStore.open(ledger_places("together")), LedgerStore.open(ledger_places("alone"))
    try:
        together._clock = alone._clock = _now
        for store in (together, alone):
            for number in (1, 2, 3):
                store.save_call("acme", f"c-{number}", {"transaction_id": f"T-{number}", "start_time": START})
        signal_writes = [
            SignalWrite(CallSearch(transaction_id=call), {"name": name, "partner_unique_id": partner,
                                                          "description": description}, data)
            for call, name, partner, description, data in writes
        ]
        with together.batch():
            results = (together.save_signals("acme", TOLERANCE, signal_writes[:split])
                       + together.save_signals("acme", TOLERANCE, signal_writes[split:]))
        expected: list[Any] = []
        for write in signal_writes:
            try:
                expected.append(alone.save_signal("acme", write.search, TOLERANCE, write.changes, write.custom_data))
            except RecordNotFound as refused:
                expected.append(refused)
        assert [_gist(result) for result in results] == [_gist(result) for result in expected]
        assert _transactions(together) == _transactions(alone)
        assert _sequence(together) == _sequence(alone)
        for sql in ("SELECT * FROM signals ORDER BY call_id, name_key, partner_unique_id",
                    "SELECT * FROM calls ORDER BY id", "SELECT * FROM signal_names ORDER BY name_key"):
            assert _table(together, sql) == _table(alone, sql)
    finally:
        together.close()
        alone.close()


def _gist(result: SignalResult | CallResult | ApiError) -> tuple[Any, ...]:
    if isinstance(result, ApiError):
        return (type(result), result.message)
    if isinstance(result, CallResult):
        return (result.outcome, result.call)
    return (result.outcome, result.signal, result.call)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(st.tuples(
    st.sampled_from(["c-1", "c-2", "c-3"]),
    st.sampled_from([None, "T-1", "T-2", "00000000-00000009"]),  # None: the creating transaction's id
    st.sampled_from([None, "+18885550001", "+18885550002"]),  # lookup rows hold data for these
    st.sampled_from([None, "", "camp-1"]),
    st.integers(0, 2),
), max_size=25), split=st.integers(0, 25))
def test_calls_saved_together_are_what_one_by_one_saves_make(
    ledger_places: Places,
    writes: list[tuple[str, str | None, str | None, str | None, int]], split: int,
) -> None:
    """:meth:`LedgerStore.save_calls` (in two calls of one batch) against :meth:`save_call` per
    row: the same results, refusals of a taken id, inherited custom data, transactions and calls."""
    together, alone = LedgerStore.open(ledger_places("together")), LedgerStore.open(ledger_places("alone"))
    try:
        together._clock = alone._clock = _now
        for store in (together, alone):
            store.put_lookup_row("acme", LookupRow("accounts", "+18885550001", "", {"tier": "gold"}))
            store.put_lookup_row("acme", LookupRow("regions", "+18885550001", "camp-1", {"region": "west"}))
            store.put_lookup_row("acme", LookupRow("accounts", "+18885550002", "camp-1", {"tier": "silver"}))
        call_writes: list[tuple[str, dict[str, Any]]] = []
        for record_id, transaction_id, phone, campaign, minutes in writes:
            changes: dict[str, Any] = {"start_time": START + minutes * 60}
            for name, value in (("transaction_id", transaction_id), ("calling_phone_number", phone),
                                ("advertiser_campaign_id_from_network", campaign)):
                if value is not None:
                    changes[name] = value
            call_writes.append((record_id, changes))
        with together.batch():
            results = (together.save_calls("acme", call_writes[:split])
                       + together.save_calls("acme", call_writes[split:]))
        expected: list[Any] = []
        for record_id, changes in call_writes:
            try:
                expected.append(alone.save_call("acme", record_id, changes))
            except ApiError as refused:
                expected.append(refused)
        assert [_gist(result) for result in results] == [_gist(result) for result in expected]
        assert _transactions(together) == _transactions(alone)
        assert _table(together, "SELECT * FROM calls ORDER BY id") == _table(alone, "SELECT * FROM calls ORDER BY id")
    finally:
        together.close()
        alone.close()
