"""core.db's migrations when the schema is not the program's: older, newer, or a step that fails.

On SQLite and on a real PostgreSQL server (tests/support/postgres.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from core.db import Database, PostgresLocation, SchemaTooNew, SchemaTooOld
from tests.core.conftest import Locate

V1 = ["CREATE TABLE items (name TEXT)"]
# Version 2's step fails at its second statement, after its first one ran.
V2_FAILING = [*V1, "CREATE TABLE extras (x INTEGER);\nCREATE TABLE items (again TEXT)"]
V2 = [*V1, "CREATE TABLE extras (x INTEGER);\nALTER TABLE items ADD COLUMN size INTEGER"]


def version(db: Database, component: str = "test") -> int:
    row = db.query_one("SELECT version FROM schema_versions WHERE component = ?", (component,))
    return 0 if row is None else int(row["version"])


def tables(db: Database) -> set[str]:
    """The names that answer a SELECT (a table the failed step made would)."""
    found = set()
    for name in ("items", "extras"):
        try:
            db.query(f"SELECT * FROM {name}")
        except Exception:  # noqa: BLE001 - absent
            continue
        found.add(name)
    return found


def test_a_step_that_fails_midway_leaves_the_old_version_and_nothing_of_it(locate: Locate) -> None:
    db = Database(locate("state"))
    try:
        assert db.migrate("test", V1) == 1
        with pytest.raises(Exception, match="items"):
            db.migrate("test", V2_FAILING)
        assert version(db) == 1
        assert tables(db) == {"items"}  # the step's first table was not kept
        assert db.migrate("test", V2) == 2  # the fixed program's step applies whole
        assert version(db) == 2 and tables(db) == {"items", "extras"}
    finally:
        db.close()


def test_a_postgresql_node_not_allowed_to_migrate_refuses_an_older_schema_and_changes_nothing(
    postgres_url: str,
) -> None:
    location = PostgresLocation(postgres_url, "state")
    old = Database(location)
    old.migrate("test", V1)
    old.close()
    node = Database(dataclasses.replace(location, migrate=False))
    try:
        assert not node.may_migrate
        with pytest.raises(SchemaTooOld) as refused:
            node.migrate("test", V2)
        message = str(refused.value)
        assert "schema of 'test' is version 1, older than this program (2)" in message
        assert "run `sftpctl migrate` first" in message and "\n" not in message
        assert version(node) == 1 and tables(node) == {"items"}
        assert node.migrate("test", V1) == 1  # its own version: runs
        assert node.migrate("other", ["CREATE TABLE others (x INTEGER)"]) == 1  # a new component: set up
    finally:
        node.close()


def test_the_older_node_refuses_the_schema_the_newer_one_migrated(locate: Locate) -> None:
    newer, older = Database(locate("state")), Database(locate("state"))
    try:
        newer.migrate("test", V2)
        with pytest.raises(SchemaTooNew, match="version 2, newer than this program \\(1\\)"):
            older.migrate("test", V1)
    finally:
        newer.close()
        older.close()


def test_sqlite_may_always_migrate(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    try:
        db.migrate("test", V1)
        assert db.may_migrate and db.migrate("test", V2) == 2
    finally:
        db.close()
