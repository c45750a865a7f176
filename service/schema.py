"""Every component's migrations in one list, applied together by ``sftpctl migrate``.

Each part of the product migrates its own tables when it is opened (``Database.migrate``), which
suits one SQLite node. Nodes sharing a PostgreSQL database must not: a node starting with a newer
program would change the schema under the older ones still running. There a start refuses an older
schema (``core.db.SchemaTooOld``, docs/postgresql.md) and the operator migrates once, as a step
of its own, with this module: every component of a store in one transaction, so either all of
them move to this program's versions or none does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from core.config import Settings
from core.db import Database, Location, Migration, PostgresLocation
from core.errors import SftpInboxError


class MigrationFailed(SftpInboxError):
    """A migration step failed: its transaction was rolled back, the schema is as it was."""


@dataclass(frozen=True)
class Component:
    """A part's migrations, in the store its tables live in (``state`` or ``ledger``)."""

    store: str
    name: str
    migrations: Sequence[Migration]


@dataclass(frozen=True)
class Migrated:
    """What ``sftpctl migrate`` did to one component: its version before and after."""

    store: str
    component: str
    before: int
    after: int

    @property
    def changed(self) -> bool:
        return self.after != self.before


def components() -> list[Component]:
    """Every component, in the order they must apply (ingest's tables refer to the core's)."""
    import core.tenants
    import ingest.claims
    import ingest.retention
    import ingest.store
    import ledger.migrations
    import sftpd.defender
    import sftpd.sessions

    return [
        Component("state", "core", core.tenants.MIGRATIONS),
        Component("state", sftpd.defender.COMPONENT, sftpd.defender.MIGRATIONS),
        Component("state", sftpd.sessions.COMPONENT, sftpd.sessions.MIGRATIONS),
        Component("state", ingest.store.COMPONENT, ingest.store.MIGRATIONS),
        Component("state", ingest.claims.COMPONENT, ingest.claims.MIGRATIONS),
        Component("state", ingest.retention.COMPONENT, ingest.retention.MIGRATIONS),
        Component("ledger", "ledger", ledger.migrations.MIGRATIONS),
    ]


def migrate_all(settings: Settings) -> list[Migrated]:
    """Apply every pending migration of every component, each store in one transaction.

    Raises :class:`core.db.SchemaTooNew` for a schema a newer program made (nothing changed) and
    :class:`MigrationFailed` for a step that failed (nothing changed either).
    """
    done: list[Migrated] = []
    for store, location in (("state", settings.state_location), ("ledger", settings.ledger_location)):
        db = Database(_allowed(location))
        try:
            done.extend(_migrate_store(db, store, [c for c in components() if c.store == store]))
        finally:
            db.close()
    return done


def _migrate_store(db: Database, store: str, parts: list[Component]) -> list[Migrated]:
    done: list[Migrated] = []
    current: Component | None = None
    try:
        with db.transaction():
            for current in parts:
                row = db.query_one("SELECT version FROM schema_versions WHERE component = ?", (current.name,))
                before = int(row["version"]) if row else 0
                after = db.migrate(current.name, current.migrations)
                done.append(Migrated(store, current.name, before, after))
    except SftpInboxError:
        raise
    except Exception as exc:
        name = current.name if current else "?"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MigrationFailed(f"{db.path}: migrating {name!r} to version {len(current.migrations) if current else 0}"
                              f" failed: {first}; nothing was applied, the schema is as it was") from exc
    return done


def _allowed(location: Location) -> Location:
    """The location with migrating allowed: this is the operator's explicit step."""
    return dataclasses.replace(location, migrate=True) if isinstance(location, PostgresLocation) else location
