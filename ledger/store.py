"""The call ledger (SQLite's ``ledger.db``, or schema ``ledger`` on PostgreSQL): calls, signals,
lookup rows and one monotonic transactions table.

Every change is a new row in ``transactions``. Its sequence number is taken from a counter inside
the same writer's transaction (``BEGIN IMMEDIATE``, or PostgreSQL's writer lock) that writes the
change, so rows become visible in sequence order and a client paging with
``start_after_transaction_id`` sees each exactly once.
A correction is a new row holding the whole corrected record, with ``corrects_seq`` naming the
row it replaces; ``complete_call_id`` links all rows of one call.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any

from core.db import Database, Location, PostgresLocation
from ledger.asapp import AsappRecords
from ledger.errors import ApiError, RecordInvalid, RecordNotFound, UnauthorizedAdvertiser
from ledger.ids import format_transaction_id, parse_transaction_id
from ledger.matching import closest_call
from ledger.migrations import MIGRATIONS
from ledger.records import (
    Call,
    CallContent,
    CallResult,
    CallSearch,
    LookupResult,
    LookupRow,
    Outcome,
    Signal,
    SignalContent,
    SignalResult,
    SignalWrite,
    TransactionQuery,
    TransactionRow,
    TransactionType,
    stored_json,
)

_SIGNAL_COLUMNS = (
    "name, description, occurred_at, sale_amount, value,"
    " custom_parameter_1, custom_parameter_2, custom_parameter_3"
)
#: Rows a filtered Transactions API page reads in id order, per row asked for, before it turns to
#: the filter's index: enough that a common filter fills its page on the way, few enough that a
#: rare one costs little before the index takes over.
SCAN_ROWS_PER_ROW = 10
#: Keys per query when reading stored signals: three parameters each, well within SQLite's limit.
_KEYS_PER_QUERY = 300
#: The fields of a call's content, in a transaction's record (:func:`_recorded_call`).
_CALL_FIELDS = tuple(field.name for field in fields(CallContent))
_INSERT_TRANSACTION = (
    "INSERT INTO transactions (seq, tenant, call_id, transaction_type, corrects_seq,"
    " recorded_at, call_start, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_FILTER_ERRORS = {
    "advertiser_id_from_network": "You do not have access to this advertiser",
    "advertiser_campaign_id_from_network": "You do not have access to this advertiser campaign",
    "network_id": "You do not have access to this network",
}


@dataclass
class _BatchMemory:
    """What one batch has read and taken, good until its transaction ends.

    The batch holds the ledger's write lock (``BEGIN IMMEDIATE``) throughout, so nothing but the
    batch itself changes the ledger meanwhile: the sequence counter is read once and written back
    once, and a call or a signal name found once is the same at the next row.
    """

    #: The last sequence number taken (None: none yet), written back before the commit.
    sequence: int | None = None
    #: Calls found by id: (tenant, "transaction_id" or "call_record_id", value) -> call id.
    found: dict[tuple[str, str, str], int] = field(default_factory=dict)
    calls: dict[int, Call] = field(default_factory=dict)
    #: Canonical signal names: (tenant, name_key) -> name.
    names: dict[tuple[str, str], str] = field(default_factory=dict)
    #: The stored JSON of a call's content or custom data, or of a record's call part, by the
    #: object's identity: each row's transaction holds its call's, unchanged from row to row.
    #: The object is kept with it, so its ``id`` cannot be reused by another while the batch
    #: lasts.
    texts: dict[int, tuple[object, str]] = field(default_factory=dict)

    def forget_calls(self) -> None:
        self.found.clear()
        self.calls.clear()


class LedgerStore:
    """All reads and writes of the ledger; every public method is one transaction."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        db.migrate("ledger", MIGRATIONS)
        #: The ASAPP records (extension), in the same database.
        self.asapp = AsappRecords(db, clock)
        self._memory: _BatchMemory | None = None

    @classmethod
    def open(cls, location: Location) -> LedgerStore:
        """The ledger at ``location`` (``Settings.ledger_location``: a SQLite file, or a
        PostgreSQL schema), its migrations applied."""
        return cls(Database(location))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def batch(self) -> Iterator[sqlite3.Connection]:
        """One transaction around many writes; each public method called in it joins it.

        Within it the store remembers what it read and the sequence numbers it took
        (:class:`_BatchMemory`), so a thousand signals on one call find the call once. What
        each write stores and answers is the same as outside a batch.
        """
        with self.db.transaction() as conn:
            self._memory = _BatchMemory()
            try:
                yield conn
                if self._memory.sequence is not None:
                    conn.execute("UPDATE ledger_sequence SET value = ? WHERE id = 1", (self._memory.sequence,))
            finally:
                self._memory = None

    @contextmanager
    def savepoint(self, conn: sqlite3.Connection) -> Iterator[Callable[[], None]]:
        """A savepoint inside :meth:`batch`; the function it gives undoes everything since,
        the batch's memory included."""
        memory = self._memory
        sequence = memory.sequence if memory is not None else None
        conn.execute("SAVEPOINT request")

        def undo() -> None:
            conn.execute("ROLLBACK TO request")
            if memory is not None:
                memory.sequence = sequence
                memory.forget_calls()
                memory.names.clear()

        try:
            yield undo
        finally:
            conn.execute("RELEASE request")

    # Calls

    def save_call(self, tenant: str, complete_call_id: str, changes: Mapping[str, Any]) -> CallResult:
        """Create the call or apply ``changes`` to it; fields not in ``changes`` keep their values.

        A new call without a ``transaction_id`` gets the id of the transaction that created it.
        Raises the request's ``ApiError``.
        """
        result = self.save_calls(tenant, [(complete_call_id, changes)])[0]
        if isinstance(result, ApiError):
            raise result
        return result

    def save_calls(
        self, tenant: str, writes: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[CallResult | ApiError]:
        """Each (complete call id, changes) as :meth:`save_call` makes it, in order: the same
        calls, transactions and answers, a refused write's error in its place.

        The calls named, the holders of the ids asked for and the lookup rows new calls inherit
        from are read first, one query each per chunk; the writes are then applied in order in
        memory. A new call is inserted alone (its row id is its own), the rest is written with
        one ``executemany`` per table.
        """
        if self._memory is None:
            with self.batch():
                return self.save_calls(tenant, writes)
        memory = self._memory
        with self.db.transaction() as conn:
            memory.forget_calls()  # these calls' ids may change: later searches find them afresh
            calls = {call.complete_call_id: call for call in self._calls_by(
                conn, tenant, "complete_call_id", {record_id for record_id, _ in writes})}
            # The calls holding each transaction id asked for, (row id, call), as the writes go
            # on: the first holds the id (two may, if a new call's own id was taken before).
            holders: dict[str, list[tuple[int, str]]] = {}
            asked = {str(changes["transaction_id"]) for _, changes in writes
                     if changes.get("transaction_id") is not None}
            for holder in self._calls_by(conn, tenant, "transaction_id", asked):
                holders.setdefault(holder.transaction_id, []).append((holder.id, holder.complete_call_id))
            inherited = self._lookup_data(conn, tenant, {
                str(changes["calling_phone_number"]) for record_id, changes in writes
                if record_id not in calls and changes.get("calling_phone_number") is not None})
            changed: dict[int, Call] = {}
            entries: list[tuple[Any, ...]] = []
            results: list[CallResult | ApiError] = []
            for complete_call_id, changes in writes:
                wanted_id = changes.get("transaction_id")
                holding = holders.get(wanted_id) if wanted_id is not None else None
                if holding and holding[0][1] != complete_call_id:
                    results.append(RecordInvalid(f"transaction_id {wanted_id} already belongs to another call"))
                    continue
                existing = calls.get(complete_call_id)
                if existing is None:
                    call = self._create_call(conn, tenant, complete_call_id, changes, inherited)
                    entries.append(self._entry(tenant, call.transaction, TransactionType.CALL, call, None))
                    results.append(CallResult(call, Outcome.CREATED))
                else:
                    content = replace(existing.content, **changes)
                    if content == existing.content:
                        results.append(CallResult(existing, Outcome.UNCHANGED))
                        continue
                    sequence = self._next_sequence(conn)
                    call = replace(existing, content=content, transaction=sequence, corrects=existing.transaction)
                    entries.append(
                        self._entry(tenant, sequence, TransactionType.CALL, call, existing.transaction))
                    changed[call.id] = call
                    results.append(CallResult(call, Outcome.UPDATED))
                    holders[existing.transaction_id] = [
                        held for held in holders.get(existing.transaction_id, []) if held[0] != call.id]
                calls[complete_call_id] = call
                bisect.insort(holders.setdefault(call.transaction_id, []), (call.id, complete_call_id))
            conn.executemany(
                "UPDATE calls SET transaction_id = ?, external_id = ?, start_time = ?,"
                " duration_in_seconds = ?, calling_phone_number = ?, advertiser_id_from_network = ?,"
                " advertiser_campaign_id_from_network = ?, network_id = ?, attributes = ?,"
                " call_transaction = ?, call_corrects = ? WHERE id = ?",
                [(*_content_values(call.content), call.transaction, call.corrects, call.id)
                 for call in changed.values()],
            )
            conn.executemany(_INSERT_TRANSACTION, entries)
            return results

    def _create_call(
        self, conn: sqlite3.Connection, tenant: str, complete_call_id: str, changes: Mapping[str, Any],
        inherited: Mapping[str, list[tuple[str, dict[str, str]]]],
    ) -> Call:
        sequence = self._next_sequence(conn)
        fields = dict(changes)
        fields.setdefault("transaction_id", format_transaction_id(sequence))
        content = CallContent(**fields)
        custom_data = _inherited(inherited, content)
        cursor = conn.execute(
            "INSERT INTO calls (transaction_id, external_id, start_time, duration_in_seconds,"
            " calling_phone_number, advertiser_id_from_network, advertiser_campaign_id_from_network,"
            " network_id, attributes, tenant, complete_call_id, custom_data, call_transaction)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (*_content_values(content), tenant, complete_call_id, stored_json(custom_data), sequence),
        )
        return Call(
            id=int(cursor.fetchone()[0]),
            complete_call_id=complete_call_id,
            content=content,
            custom_data=custom_data,
            transaction=sequence,
            corrects=None,
            event_transaction=None,
        )

    def _calls_by(self, conn: sqlite3.Connection, tenant: str, column: str, values: Iterable[str]) -> list[Call]:
        """``tenant``'s calls whose ``column`` is one of ``values``, in row id order."""
        wanted = list(values)
        found: list[Call] = []
        for start in range(0, len(wanted), _KEYS_PER_QUERY):
            chunk = wanted[start:start + _KEYS_PER_QUERY]
            found += [_call(row) for row in conn.execute(
                f"SELECT * FROM calls WHERE tenant = ? AND {column} IN ({', '.join('?' * len(chunk))})"
                " ORDER BY id", [tenant, *chunk])]
        return found

    # Signals

    def save_signal(
        self,
        tenant: str,
        search: CallSearch,
        tolerance: float,
        changes: Mapping[str, Any],
        custom_data: Mapping[str, str],
    ) -> SignalResult:
        """Find the call, apply custom data to it, then create or correct the signal.

        ``changes`` must hold ``name`` and may hold any other ``SignalContent`` field; the
        signal's identity is (call, name case-insensitively, ``partner_unique_id``). A name keeps
        the casing the tenant first reported it with. Raises the request's ``ApiError``.
        """
        result = self.save_signals(tenant, tolerance, [SignalWrite(search, changes, custom_data)])[0]
        if isinstance(result, ApiError):
            raise result
        return result

    def save_signals(
        self, tenant: str, tolerance: float, writes: Sequence[SignalWrite]
    ) -> list[SignalResult | ApiError]:
        """Each write as :meth:`save_signal` makes it, in order: the same transactions,
        corrections and answers, a refused write's error in its place (it writes nothing).

        It works in three passes, so each table is written once per call, not once per row:
        find every call (nothing a signal changes moves a call: ids, start times and the
        filters stay); read the signals already stored under the writes' keys in one query;
        then apply the writes in order in memory and write the transactions, signals and
        calls' custom data with one ``executemany`` each.
        """
        if self._memory is None:
            with self.batch():
                return self.save_signals(tenant, tolerance, writes)
        memory = self._memory
        with self.db.transaction() as conn:
            found: list[Call | ApiError] = []
            for write in writes:
                try:
                    found.append(self._find_call(conn, tenant, write.search, tolerance))
                except ApiError as refused:
                    found.append(refused)
            keys = {
                (call.id, write.changes["name"].casefold(), write.changes.get("partner_unique_id", ""))
                for write, call in zip(writes, found) if isinstance(call, Call)
            }
            stored = self._signals(conn, keys)
            signals = dict(stored)
            changed: set[tuple[int, str, str]] = set()
            events: dict[int, Call] = {}
            entries: list[tuple[Any, ...]] = []
            results: list[SignalResult | ApiError] = []
            for write, found_call in zip(writes, found):
                if isinstance(found_call, ApiError):
                    results.append(found_call)
                    continue
                call = memory.calls.get(found_call.id, found_call)  # with this batch's custom data
                merged = {**call.custom_data, **write.custom_data}
                if merged != call.custom_data:
                    sequence = self._next_sequence(conn)
                    previous = call.event_transaction
                    call = Call(call.id, call.complete_call_id, call.content, merged, call.transaction,
                                call.corrects, sequence)
                    entries.append(self._entry(tenant, sequence, TransactionType.POST_CALL_EVENT, call, previous))
                    events[call.id] = memory.calls[call.id] = call
                changes = write.changes
                name_key = changes["name"].casefold()
                name = self._canonical_name(conn, tenant, name_key, changes["name"])
                key = (call.id, name_key, changes.get("partner_unique_id", ""))
                existing = signals.get(key)
                if existing is None:
                    content = SignalContent(**{"occurred_at": self._clock(), **changes, "name": name})
                    signal = Signal(content, self._next_sequence(conn), None)
                    outcome = Outcome.CREATED
                else:
                    content = replace(existing.content, **{**changes, "name": name})
                    if content == existing.content:
                        results.append(SignalResult(call, existing, Outcome.UNCHANGED))
                        continue
                    signal = Signal(content, self._next_sequence(conn), existing.transaction)
                    outcome = Outcome.UPDATED
                entries.append(
                    self._entry(tenant, signal.transaction, TransactionType.SIGNAL, call, signal.corrects, signal))
                signals[key] = signal
                changed.add(key)
                results.append(SignalResult(call, signal, outcome))
            conn.executemany(_INSERT_TRANSACTION, entries)
            conn.executemany(
                f"INSERT INTO signals (call_id, name_key, partner_unique_id, {_SIGNAL_COLUMNS},"
                " transaction_seq, corrects_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*key, *_signal_values(signals[key].content), signals[key].transaction, signals[key].corrects)
                 for key in changed if key not in stored],
            )
            conn.executemany(
                "UPDATE signals SET name = ?, description = ?, occurred_at = ?, sale_amount = ?,"
                " value = ?, custom_parameter_1 = ?, custom_parameter_2 = ?, custom_parameter_3 = ?,"
                " transaction_seq = ?, corrects_seq = ?"
                " WHERE call_id = ? AND name_key = ? AND partner_unique_id = ?",
                [(*_signal_values(signals[key].content), signals[key].transaction, signals[key].corrects, *key)
                 for key in changed if key in stored],
            )
            conn.executemany(
                "UPDATE calls SET custom_data = ?, event_transaction = ? WHERE id = ?",
                [(self._stored(call.custom_data), call.event_transaction, call.id) for call in events.values()],
            )
            return results

    def _signals(
        self, conn: sqlite3.Connection, keys: Iterable[tuple[int, str, str]]
    ) -> dict[tuple[int, str, str], Signal]:
        """The stored signals of these (call id, name key, partner unique id) keys."""
        wanted = list(keys)
        found: dict[tuple[int, str, str], Signal] = {}
        for start in range(0, len(wanted), _KEYS_PER_QUERY):
            chunk = wanted[start:start + _KEYS_PER_QUERY]
            rows = conn.execute(
                "WITH wanted (call_id, name_key, partner_unique_id) AS (VALUES "
                + ", ".join("(?, ?, ?)" for _ in chunk)
                + f") SELECT signals.call_id, signals.name_key, signals.partner_unique_id, {_SIGNAL_COLUMNS},"
                " transaction_seq, corrects_seq FROM wanted JOIN signals ON signals.call_id = wanted.call_id"
                " AND signals.name_key = wanted.name_key AND signals.partner_unique_id = wanted.partner_unique_id",
                [value for key in chunk for value in key],
            )
            for row in rows:
                found[(row["call_id"], row["name_key"], row["partner_unique_id"])] = _signal(
                    row, row["partner_unique_id"])
        return found

    def _canonical_name(self, conn: sqlite3.Connection, tenant: str, name_key: str, name: str) -> str:
        names = self._memory.names if self._memory is not None else {}
        known = names.get((tenant, name_key))
        if known is not None:
            return known
        row = conn.execute(
            "SELECT name FROM signal_names WHERE tenant = ? AND name_key = ?", (tenant, name_key)
        ).fetchone()
        if row is not None:
            name = str(row["name"])
        else:
            conn.execute(
                "INSERT INTO signal_names (tenant, name_key, name) VALUES (?, ?, ?)", (tenant, name_key, name)
            )
        names[(tenant, name_key)] = name
        return name

    # Finding calls

    def _find_call(self, conn: sqlite3.Connection, tenant: str, search: CallSearch, tolerance: float) -> Call:
        """The call ``search`` names; raises ``RecordNotFound`` or ``UnauthorizedAdvertiser``.

        A call of another tenant is "not found", never "forbidden", so its existence does not leak.
        """
        call: Call | None
        if search.transaction_id is not None:
            call = self._remembered(tenant, "transaction_id", search.transaction_id,
                                    lambda: self._call_by_transaction_id(conn, tenant, search.transaction_id or ""))
        elif search.call_record_id is not None:
            call = self._remembered(tenant, "call_record_id", search.call_record_id,
                                    lambda: self._call_by_record_id(conn, tenant, search.call_record_id or ""))
        elif search.start_time is not None:
            call = self._closest_call(conn, tenant, search, tolerance)
        else:
            raise RecordInvalid("transaction_id or start_time_t must be present")
        if call is None:
            raise RecordNotFound()
        return call

    def _remembered(self, tenant: str, by: str, value: str, find: Callable[[], Call | None]) -> Call | None:
        """The call ``find`` finds, found once per batch (a miss is looked for again)."""
        memory = self._memory
        if memory is None:
            return find()
        key = (tenant, by, value)
        known = memory.found.get(key)
        if known is not None:
            return memory.calls[known]
        call = find()
        if call is not None:
            memory.found[key] = call.id
            memory.calls[call.id] = call
        return call

    def _call_by_transaction_id(
        self, conn: sqlite3.Connection, tenant: str, transaction_id: str
    ) -> Call | None:
        """By the call's own id first, then by the id of any of its ``call`` transactions."""
        row = conn.execute(
            "SELECT * FROM calls WHERE tenant = ? AND transaction_id = ? ORDER BY id LIMIT 1",
            (tenant, transaction_id),
        ).fetchone()
        if row is None and (sequence := parse_transaction_id(transaction_id)) is not None:
            row = conn.execute(
                "SELECT calls.* FROM transactions JOIN calls ON calls.id = transactions.call_id"
                " WHERE transactions.seq = ? AND transactions.tenant = ?"
                " AND transactions.transaction_type = ?",
                (sequence, tenant, TransactionType.CALL.value),
            ).fetchone()
        return _call(row) if row else None

    def _call_by_record_id(self, conn: sqlite3.Connection, tenant: str, complete_call_id: str) -> Call | None:
        row = conn.execute(
            "SELECT * FROM calls WHERE tenant = ? AND complete_call_id = ?", (tenant, complete_call_id)
        ).fetchone()
        return _call(row) if row else None

    def _closest_call(
        self, conn: sqlite3.Connection, tenant: str, search: CallSearch, tolerance: float
    ) -> Call | None:
        assert search.start_time is not None
        clauses = ["tenant = ?", "start_time BETWEEN ? AND ?"]
        params: list[Any] = [tenant, search.start_time - tolerance, search.start_time + tolerance]
        for column, message in _FILTER_ERRORS.items():
            value = getattr(search, column)
            if value is None:
                continue
            if not conn.execute(
                f"SELECT 1 FROM calls WHERE tenant = ? AND {column} = ? LIMIT 1", (tenant, value)
            ).fetchone():
                raise UnauthorizedAdvertiser(message)
            clauses.append(f"{column} = ?")
            params.append(value)
        if search.calling_phone_number is not None:
            clauses.append("calling_phone_number = ?")
            params.append(search.calling_phone_number)
        where = " AND ".join(clauses)
        # Two index walks outward from the start time, read only as far as the rule needs.
        later = conn.execute(f"SELECT * FROM calls WHERE {where} AND start_time >= ? ORDER BY start_time, id",
                             [*params, search.start_time])
        earlier = conn.execute(f"SELECT * FROM calls WHERE {where} AND start_time < ?"
                               " ORDER BY start_time DESC, id DESC", [*params, search.start_time])
        return closest_call(_nearest_first(later, earlier, search.start_time), search.start_time,
                            search.duration_in_seconds, tolerance)

    # Custom data and lookup tables

    def _merge_custom_data(
        self, conn: sqlite3.Connection, tenant: str, call: Call, data: Mapping[str, str]
    ) -> Call:
        """Set ``data`` on the call; a change is one ``post_call_event`` holding all custom data."""
        merged = {**call.custom_data, **data}
        if merged == call.custom_data:
            return call
        sequence = self._next_sequence(conn)
        updated = replace(call, custom_data=merged, event_transaction=sequence)
        conn.execute(
            "UPDATE calls SET custom_data = ?, event_transaction = ? WHERE id = ?",
            (self._stored(merged), sequence, call.id),
        )
        self._record(conn, tenant, sequence, TransactionType.POST_CALL_EVENT, updated, call.event_transaction)
        if self._memory is not None and call.id in self._memory.calls:
            self._memory.calls[call.id] = updated
        return updated

    def put_lookup_row(self, tenant: str, row: LookupRow) -> LookupResult:
        """Upsert the row, then apply its data to every call it matches.

        The documented key: ``primary_key`` is the calling phone number (E.164) and a non-empty
        ``secondary_key`` must equal the call's ``advertiser_campaign_id_from_network``.
        """
        with self.db.transaction() as conn:
            key = (tenant, row.table, row.primary_key, row.secondary_key)
            old = conn.execute(
                "SELECT data FROM lookup_rows WHERE tenant = ? AND table_name = ?"
                " AND primary_key = ? AND secondary_key = ?",
                key,
            ).fetchone()
            if old is not None and json.loads(old["data"]) == row.data:
                return LookupResult(row, Outcome.UNCHANGED, [])
            conn.execute(
                "INSERT INTO lookup_rows (tenant, table_name, primary_key, secondary_key, data, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, table_name, primary_key, secondary_key)"
                " DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                (*key, stored_json(row.data), self._clock()),
            )
            clauses = "tenant = ? AND calling_phone_number = ?"
            params: list[Any] = [tenant, row.primary_key]
            if row.secondary_key:
                clauses += " AND advertiser_campaign_id_from_network = ?"
                params.append(row.secondary_key)
            updated: list[tuple[Call, int]] = []
            for call_row in conn.execute(
                f"SELECT * FROM calls WHERE {clauses} ORDER BY id", params
            ).fetchall():
                call = _call(call_row)
                changed = self._merge_custom_data(conn, tenant, call, row.data)
                if changed is not call:
                    assert changed.event_transaction is not None
                    updated.append((changed, changed.event_transaction))
            outcome = Outcome.CREATED if old is None else Outcome.UPDATED
            return LookupResult(row, outcome, updated)

    def _lookup_data(
        self, conn: sqlite3.Connection, tenant: str, phones: Iterable[str]
    ) -> dict[str, list[tuple[str, dict[str, str]]]]:
        """The lookup rows of these phone numbers (their primary key), each a (secondary key,
        data) pair, oldest first (:func:`_inherited` lets the newest win)."""
        wanted = list(phones)
        data: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for start in range(0, len(wanted), _KEYS_PER_QUERY):
            chunk = wanted[start:start + _KEYS_PER_QUERY]
            for row in conn.execute(
                "SELECT primary_key, secondary_key, data FROM lookup_rows WHERE tenant = ?"
                f" AND primary_key IN ({', '.join('?' * len(chunk))}) ORDER BY updated_at, rowid",
                [tenant, *chunk],
            ):
                data.setdefault(row["primary_key"], []).append((row["secondary_key"], json.loads(row["data"])))
        return data

    # Transactions

    def transactions(self, tenant: str, query: TransactionQuery) -> list[TransactionRow]:
        """A page of ``tenant``'s transactions after ``query.after``, in id order.

        Filtered pages look at the next rows in id order first (at most
        :data:`SCAN_ROWS_PER_ROW` per row asked for); if that does not fill the page, the rest
        come through the filter's own index, so a page of a sparse filter never reads the whole
        history to the end.
        """
        filters: list[str] = []
        params: list[Any] = []
        if query.types:
            filters.append(f"transaction_type IN ({', '.join('?' for _ in query.types)})")
            params.extend(kind.value for kind in query.types)
        if query.start_from is not None:
            filters.append("call_start >= ?")
            params.append(query.start_from)
        if query.start_before is not None:
            filters.append("call_start < ?")
            params.append(query.start_before)
        columns = "seq, transaction_type, corrects_seq, recorded_at, record"
        if not filters:
            rows = self.db.query(f"SELECT {columns} FROM transactions WHERE tenant = ? AND seq > ?"
                                 " ORDER BY seq LIMIT ?", (tenant, query.after, query.limit))
            return [_transaction_row(row) for row in rows]
        where = " AND ".join(filters)
        budget = query.limit * SCAN_ROWS_PER_ROW
        # Two reads, no transaction needed: rows become visible in id order, so rows past what
        # the first read saw are all there for the second.
        scanned, last = self.db.query(
            "SELECT count(*), max(seq) FROM (SELECT seq FROM transactions WHERE tenant = ? AND seq > ?"
            " ORDER BY seq LIMIT ?) AS ahead", (tenant, query.after, budget))[0]
        rows = self.db.query(
            f"SELECT {columns} FROM transactions WHERE tenant = ? AND seq > ? AND seq <= ? AND {where}"
            " ORDER BY seq LIMIT ?", (tenant, query.after, last or query.after, *params, query.limit))
        if len(rows) < query.limit and scanned == budget:
            window = query.start_from is not None or query.start_before is not None
            index = "transactions_by_call_start" if window else "transactions_by_type"
            # SQLite's planner would walk the id order to the end; PostgreSQL's weighs the
            # filter's index itself (its statistics), and has no INDEXED BY.
            hint = "" if isinstance(self.db.path, PostgresLocation) else f" INDEXED BY {index}"
            rows += self.db.query(
                f"SELECT {columns} FROM transactions WHERE seq IN (SELECT seq FROM transactions"
                f"{hint} WHERE tenant = ? AND seq > ? AND {where} ORDER BY seq LIMIT ?)"
                " ORDER BY seq", (tenant, last, *params, query.limit - len(rows)))
        return [_transaction_row(row) for row in rows]

    def purge_tenant(self, tenant: str) -> int:
        """Delete every call, signal, lookup row, ASAPP record and transaction of ``tenant``
        (``sftpctl tenant purge``), so a new tenant of the same name starts empty; returns the
        transactions removed.
        Their sequence numbers are never reused."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM signals WHERE call_id IN (SELECT id FROM calls WHERE tenant = ?)", (tenant,))
            removed = conn.execute("DELETE FROM transactions WHERE tenant = ?", (tenant,)).rowcount
            for table in ("calls", "signal_names", "lookup_rows", "delivered_requests"):
                conn.execute(f"DELETE FROM {table} WHERE tenant = ?", (tenant,))
            self.asapp.purge(conn, tenant)
        return removed

    # Writing transactions

    def _next_sequence(self, conn: sqlite3.Connection) -> int:
        memory = self._memory
        if memory is None:
            row = conn.execute(
                "UPDATE ledger_sequence SET value = value + 1 WHERE id = 1 RETURNING value"
            ).fetchone()
            return int(row[0])
        if memory.sequence is None:
            memory.sequence = int(conn.execute("SELECT value FROM ledger_sequence WHERE id = 1").fetchone()[0])
        memory.sequence += 1
        return memory.sequence

    def _record(
        self,
        conn: sqlite3.Connection,
        tenant: str,
        sequence: int,
        kind: TransactionType,
        call: Call,
        corrects: int | None,
    ) -> None:
        conn.execute(_INSERT_TRANSACTION, self._entry(tenant, sequence, kind, call, corrects))

    def _entry(
        self,
        tenant: str,
        sequence: int,
        kind: TransactionType,
        call: Call,
        corrects: int | None,
        signal: Signal | None = None,
    ) -> tuple[Any, ...]:
        """A ``transactions`` row (:data:`_INSERT_TRANSACTION`'s parameters)."""
        # The record {"complete_call_id", "call", "custom_data", "signal"}: the call's part is
        # made once per state of the call, then each signal's JSON is joined to it.
        record = self._call_part(call) + (stored_json(vars(signal.content)) if signal else "null") + "}"
        return (sequence, tenant, call.id, kind.value, corrects, self._clock(), call.start_time, record)

    def _call_part(self, call: Call) -> str:
        """A record's JSON up to its signal, made once per batch for each state of the call."""
        memory = self._memory
        known = memory.texts.get(id(call)) if memory is not None else None
        if known is not None and known[0] is call:
            return known[1]
        text = (f'{{"complete_call_id":{stored_json(call.complete_call_id)},"call":{self._stored(call.content)},'
                f'"custom_data":{self._stored(call.custom_data)},"signal":')
        if memory is not None:
            memory.texts[id(call)] = (call, text)
        return text

    def _stored(self, value: CallContent | dict[str, str]) -> str:
        """``stored_json`` of a call's content (its fields) or custom data, made once per batch."""
        memory = self._memory
        known = memory.texts.get(id(value)) if memory is not None else None
        if known is not None and known[0] is value:
            return known[1]
        text = stored_json(_recorded_call(value) if isinstance(value, CallContent) else value)
        if memory is not None:
            memory.texts[id(value)] = (value, text)
        return text


def _recorded_call(content: CallContent) -> dict[str, Any]:
    """A call's content as a transaction's record holds it: its fields that are set, the others
    (None, no attributes) put back as it is read (:func:`_transaction_row`). Every signal's two
    records hold their call's content: for a call with only its ids and start time set, the
    unset fields were 166 bytes of each record, 30 % of what a signal wrote to them."""
    return {name: value for name, value in vars(content).items() if value is not None and value != {}}


def _transaction_row(row: sqlite3.Row) -> TransactionRow:
    record = json.loads(row["record"])
    if "call" in record:
        record["call"] = {**dict.fromkeys(_CALL_FIELDS), "attributes": {}, **record["call"]}
    return TransactionRow(
        sequence=row["seq"],
        transaction_type=TransactionType(row["transaction_type"]),
        corrects=row["corrects_seq"],
        recorded_at=row["recorded_at"],
        record=record,
    )


def _inherited(rows: Mapping[str, list[tuple[str, dict[str, str]]]], content: CallContent) -> dict[str, str]:
    """Custom data a new call inherits from the lookup rows (:meth:`LedgerStore._lookup_data`)
    of its phone number: those without a secondary key and those of its campaign, the newest
    row winning."""
    if content.calling_phone_number is None:
        return {}
    campaign = content.advertiser_campaign_id_from_network or ""
    data: dict[str, str] = {}
    for secondary, values in rows.get(content.calling_phone_number, ()):
        if secondary in ("", campaign):
            data.update(values)
    return data


def _nearest_first(later: sqlite3.Cursor, earlier: sqlite3.Cursor, start_time: float) -> Iterator[Call]:
    """The calls of two cursors walking away from ``start_time`` (one forwards, one backwards),
    merged nearest first; rows are read as they are asked for."""
    after, before = later.fetchone(), earlier.fetchone()
    while after is not None or before is not None:
        nearer_after = after is not None and (
            before is None or after["start_time"] - start_time <= start_time - before["start_time"])
        if nearer_after:
            yield _call(after)
            after = later.fetchone()
        else:
            yield _call(before)
            before = earlier.fetchone()


def _content_values(content: CallContent) -> tuple[Any, ...]:
    return (
        content.transaction_id,
        content.external_id,
        content.start_time,
        content.duration_in_seconds,
        content.calling_phone_number,
        content.advertiser_id_from_network,
        content.advertiser_campaign_id_from_network,
        content.network_id,
        stored_json(content.attributes),
    )


def _signal_values(content: SignalContent) -> tuple[Any, ...]:
    return (
        content.name,
        content.description,
        content.occurred_at,
        content.sale_amount,
        int(content.value),
        content.custom_parameter_1,
        content.custom_parameter_2,
        content.custom_parameter_3,
    )


def _call(row: sqlite3.Row) -> Call:
    return Call(
        id=row["id"],
        complete_call_id=row["complete_call_id"],
        content=CallContent(
            transaction_id=row["transaction_id"],
            start_time=row["start_time"],
            external_id=row["external_id"],
            duration_in_seconds=row["duration_in_seconds"],
            calling_phone_number=row["calling_phone_number"],
            advertiser_id_from_network=row["advertiser_id_from_network"],
            advertiser_campaign_id_from_network=row["advertiser_campaign_id_from_network"],
            network_id=row["network_id"],
            attributes=json.loads(row["attributes"]),
        ),
        custom_data=json.loads(row["custom_data"]),
        transaction=row["call_transaction"],
        corrects=row["call_corrects"],
        event_transaction=row["event_transaction"],
    )


def _signal(row: sqlite3.Row, partner_unique_id: str) -> Signal:
    content = SignalContent(
        name=row["name"],
        occurred_at=row["occurred_at"],
        partner_unique_id=partner_unique_id,
        description=row["description"],
        sale_amount=row["sale_amount"],
        value=bool(row["value"]),
        custom_parameter_1=row["custom_parameter_1"],
        custom_parameter_2=row["custom_parameter_2"],
        custom_parameter_3=row["custom_parameter_3"],
    )
    return Signal(content, row["transaction_seq"], row["corrects_seq"])
