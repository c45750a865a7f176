"""The ledger's schema, registered as component ``ledger`` in its own database file.

``migrations[i]`` takes the schema from version ``i`` to ``i + 1``; append, never edit.
``ledger_sequence`` is the single counter every transaction id comes from. ``delivered_requests``
remembers the answer to each queued request the in-process writer applied, in the transaction
that applied it, so a batch replayed after a crash is answered, not applied, again.
``asapp_messages`` and ``asapp_purchases`` hold the ASAPP extension's records (``ledger.asapp``):
a transcript message, whose five fields are its identity (``message_key``, their digest), and a
purchased product line, named by its transaction and product.

The steps are SQLite's SQL, translated for PostgreSQL (``core.db.dialect``); a step with no
faithful translation is written per engine (:class:`~core.db.PerEngine`).
"""

from core.db import Migration, PerEngine

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE ledger_sequence (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    );
    INSERT INTO ledger_sequence (id, value) VALUES (1, 0);
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        complete_call_id TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        external_id TEXT,
        start_time REAL NOT NULL,
        duration_in_seconds INTEGER,
        calling_phone_number TEXT,
        advertiser_id_from_network TEXT,
        advertiser_campaign_id_from_network TEXT,
        network_id TEXT,
        attributes TEXT NOT NULL,
        custom_data TEXT NOT NULL,
        call_transaction INTEGER NOT NULL,
        call_corrects INTEGER,
        event_transaction INTEGER,
        UNIQUE (tenant, complete_call_id)
    );
    CREATE INDEX calls_by_transaction_id ON calls (tenant, transaction_id);
    CREATE INDEX calls_by_start_time ON calls (tenant, start_time);
    CREATE INDEX calls_by_phone ON calls (tenant, calling_phone_number, start_time);
    CREATE INDEX calls_by_advertiser ON calls (tenant, advertiser_id_from_network);
    CREATE INDEX calls_by_campaign ON calls (tenant, advertiser_campaign_id_from_network);
    CREATE INDEX calls_by_network ON calls (tenant, network_id);
    CREATE TABLE signal_names (
        tenant TEXT NOT NULL,
        name_key TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (tenant, name_key)
    ) WITHOUT ROWID;
    CREATE TABLE signals (
        call_id INTEGER NOT NULL REFERENCES calls(id),
        name_key TEXT NOT NULL,
        partner_unique_id TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        occurred_at REAL NOT NULL,
        sale_amount TEXT,
        value INTEGER NOT NULL,
        custom_parameter_1 TEXT NOT NULL,
        custom_parameter_2 TEXT NOT NULL,
        custom_parameter_3 TEXT NOT NULL,
        transaction_seq INTEGER NOT NULL,
        corrects_seq INTEGER,
        PRIMARY KEY (call_id, name_key, partner_unique_id)
    ) WITHOUT ROWID;
    CREATE TABLE transactions (
        seq INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        call_id INTEGER NOT NULL REFERENCES calls(id),
        transaction_type TEXT NOT NULL,
        corrects_seq INTEGER,
        recorded_at REAL NOT NULL,
        call_start REAL NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX transactions_by_tenant ON transactions (tenant, seq);
    CREATE TABLE lookup_rows (
        tenant TEXT NOT NULL,
        table_name TEXT NOT NULL,
        primary_key TEXT NOT NULL,
        secondary_key TEXT NOT NULL,
        data TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (tenant, table_name, primary_key, secondary_key)
    );
    CREATE INDEX lookup_rows_by_key ON lookup_rows (tenant, primary_key);
    """,
    """
    CREATE TABLE delivered_requests (
        outbox_id INTEGER NOT NULL,
        request_key TEXT NOT NULL,
        tenant TEXT NOT NULL,
        status INTEGER NOT NULL,
        answer TEXT NOT NULL,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (outbox_id, request_key)
    ) WITHOUT ROWID;
    CREATE INDEX delivered_requests_by_time ON delivered_requests (recorded_at);
    """,
    """
    CREATE TABLE asapp_messages (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        message_key TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        sender_id TEXT NOT NULL,
        sender_role TEXT NOT NULL,
        text TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        attributes TEXT NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (tenant, message_key)
    );
    CREATE INDEX asapp_messages_by_tenant ON asapp_messages (tenant, id);
    CREATE INDEX asapp_messages_by_conversation ON asapp_messages (tenant, conversation_id, id);
    CREATE TABLE asapp_purchases (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        product_id TEXT NOT NULL,
        product_name_key TEXT NOT NULL,
        record TEXT NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (tenant, transaction_id, product_id, product_name_key)
    );
    CREATE INDEX asapp_purchases_by_tenant ON asapp_purchases (tenant, id);
    """,
    # The Transactions API's filters: rows of a type, and rows by their call's start (each entry
    # holds the row's seq too: SQLite keeps the rowid in every index).
    """
    CREATE INDEX transactions_by_type ON transactions (tenant, transaction_type, seq);
    CREATE INDEX transactions_by_call_start ON transactions (tenant, call_start, transaction_type);
    """,
    # Lookup rows are read oldest first, ties in the order rows were first stored (the newest
    # wins, ``LedgerStore._lookup_data``): SQLite's rowid, which an upsert keeps. PostgreSQL has
    # none, so there it is a column of that name, numbered the same way.
    PerEngine(
        sqlite="",
        postgresql="ALTER TABLE lookup_rows ADD COLUMN rowid BIGINT GENERATED ALWAYS AS IDENTITY;",
    ),
]
