"""The ASAPP records (an extension): transcript messages and purchased product lines.

[asapp-sftp-integration.txt] ships two feeds besides call metadata: transcripts (one message per
row) and purchase transactions (one purchased product per row). They are not calls and make no
transactions of the Transactions API; they are kept per tenant, as posted, in two tables of
``ledger.db`` (``ledger.migrations``), and read back in the order they were first stored.

Identity, so that a file posted again changes nothing (200):

- a message has no id of its own in ASAPP's schema, so it is its conversation, sender, time and
  text (``message_key``, their digest); its role and attributes may be corrected (200);
- a purchase line is its ``transaction_id`` and product: ``product_id``, or ``product_name`` when
  there is no ``product_id``; a repost replaces the line whole, as a lookup row is replaced.

Every public method is one SQLite transaction, which joins the caller's (a batch of the
in-process writer).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from core.db import Database
from ledger.records import ListingQuery, Outcome, stored_json

Record = dict[str, Any]

_MESSAGE_COLUMNS = "id, conversation_id, sender_id, sender_role, text, sent_at, attributes"


class AsappRecords:
    """Reads and writes of the ASAPP records, over the ledger's database."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    def save_message(self, tenant: str, message: Record) -> tuple[Record, Outcome]:
        """Store ``message`` (``MessageParams.record()``), or correct its role and attributes."""
        identity = [message[name] for name in ("conversation_externalId", "sender_externalId",
                                               "timestamp", "text")]
        key = hashlib.sha256(stored_json(identity).encode()).hexdigest()
        with self.db.transaction() as conn:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM asapp_messages WHERE tenant = ? AND message_key = ?",
                (tenant, key),
            ).fetchone()
            if row is None:
                cursor = conn.execute(
                    "INSERT INTO asapp_messages (tenant, message_key, conversation_id, sender_id,"
                    " sender_role, text, sent_at, attributes, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " RETURNING id",
                    (tenant, key, *identity[:2], message["sender_role"], message["text"],
                     message["timestamp"], stored_json(message["attributes"]), self._clock()),
                )
                return {"id": int(cursor.fetchone()[0]), **message}, Outcome.CREATED
            stored = _message(row)
            if stored == {"id": stored["id"], **message}:
                return stored, Outcome.UNCHANGED
            conn.execute(
                "UPDATE asapp_messages SET sender_role = ?, attributes = ?, updated_at = ? WHERE id = ?",
                (message["sender_role"], stored_json(message["attributes"]), self._clock(), stored["id"]),
            )
            return {"id": stored["id"], **message}, Outcome.UPDATED

    def save_purchase(self, tenant: str, purchase: Record) -> tuple[Record, Outcome]:
        """Store the line ``purchase`` (``PurchaseParams.record()``), or replace it whole."""
        product_id = purchase["product_id"] or ""
        name_key = "" if product_id else purchase["product_name"] or ""
        key = (tenant, purchase["transaction_id"], product_id, name_key)
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT id, record FROM asapp_purchases WHERE tenant = ? AND transaction_id = ?"
                " AND product_id = ? AND product_name_key = ?",
                key,
            ).fetchone()
            if row is None:
                cursor = conn.execute(
                    "INSERT INTO asapp_purchases (tenant, transaction_id, product_id, product_name_key,"
                    " record, updated_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    (*key, stored_json(purchase), self._clock()),
                )
                return {"id": int(cursor.fetchone()[0]), **purchase}, Outcome.CREATED
            answer = {"id": int(row["id"]), **purchase}
            if json.loads(row["record"]) == purchase:
                return answer, Outcome.UNCHANGED
            conn.execute(
                "UPDATE asapp_purchases SET record = ?, updated_at = ? WHERE id = ?",
                (stored_json(purchase), self._clock(), row["id"]),
            )
            return answer, Outcome.UPDATED

    def messages(self, tenant: str, query: ListingQuery) -> list[Record]:
        """A page of the tenant's messages, of one conversation if ``query.match`` names it."""
        rows = self._page(f"SELECT {_MESSAGE_COLUMNS} FROM asapp_messages", "conversation_id", tenant, query)
        return [_message(row) for row in rows]

    def purchases(self, tenant: str, query: ListingQuery) -> list[Record]:
        """A page of the tenant's purchase lines, of one transaction if ``query.match`` names it."""
        rows = self._page("SELECT id, record FROM asapp_purchases", "transaction_id", tenant, query)
        return [{"id": int(row["id"]), **json.loads(row["record"])} for row in rows]

    def _page(self, select: str, match_column: str, tenant: str, query: ListingQuery) -> list[sqlite3.Row]:
        clauses, params = "tenant = ? AND id > ?", [tenant, query.after]
        if query.match is not None:
            clauses += f" AND {match_column} = ?"
            params.append(query.match)
        return self.db.query(f"{select} WHERE {clauses} ORDER BY id LIMIT ?", [*params, query.limit])

    @staticmethod
    def purge(conn: sqlite3.Connection, tenant: str) -> None:
        """Delete the tenant's records, inside ``LedgerStore.purge_tenant``'s transaction."""
        for table in ("asapp_messages", "asapp_purchases"):
            conn.execute(f"DELETE FROM {table} WHERE tenant = ?", (tenant,))


def _message(row: sqlite3.Row) -> Record:
    return {
        "id": int(row["id"]),
        "conversation_externalId": row["conversation_id"],
        "sender_externalId": row["sender_id"],
        "sender_role": row["sender_role"],
        "text": row["text"],
        "timestamp": row["sent_at"],
        "attributes": json.loads(row["attributes"]),
    }
