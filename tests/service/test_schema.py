"""service.schema and ``sftpctl migrate``: one explicit migration for a cluster, and nodes that
refuse a schema that is not their own (older, newer, or left by a failed migration).

Each test runs on SQLite and on a real PostgreSQL server; the daemon is started as a user starts
it (a process, a config file) and must refuse in one line.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import core.tenants
import ingest.store
from core.config import Settings, load_settings
from core.db import Database, SchemaTooNew, SchemaTooOld
from service.context import Context
from service.schema import MigrationFailed, components, migrate_all
from service.sftpctl import main as sftpctl
from tests.conftest import free_port
from tests.support.daemon import project_env, start_daemon

Configure = Callable[..., Path]


@pytest.fixture(params=["sqlite", "postgresql"])
def configure(request: pytest.FixtureRequest, tmp_path: Path) -> Configure:
    """Writes the node's config file (``migrate``: ``[database] migrate``) on the engine under test."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""

    def write(migrate: str = "") -> Path:
        config = tmp_path / "sftpd.toml"
        config.write_text(f'data_dir = "{tmp_path / "var"}"\n[api]\nenabled = false\n[admin]\nlisten_port = 0\n'
                          f'[database]\nurl = "{url}"\nmigrate = "{migrate}"\n')
        return config

    return write


def on_postgresql(config: Path) -> bool:
    return bool(load_settings(config).database.url)


def state(config: Path) -> Database:
    """The state store as a migration tool opens it: migrating allowed."""
    return Database(load_settings(config).replace(database__migrate="at-start").state_location)


def versions(config: Path) -> dict[str, int]:
    db = state(config)
    try:
        return {row["component"]: row["version"] for row in db.query("SELECT component, version FROM schema_versions")}
    finally:
        db.close()


def ctl(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = sftpctl(["--config", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def daemon_refusal(config: Path, cwd: Path) -> tuple[int, str]:
    """Start the daemon, which must exit at once; its exit code and stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "service.daemon", "serve", "--config", str(config), "--no-demo",
         "--listen", f"127.0.0.1:{free_port()}"],
        cwd=cwd, capture_output=True, text=True, env=project_env(), timeout=60, check=False)
    return done.returncode, done.stderr


def said(stderr: str) -> list[str]:
    """What the daemon said on stderr but its JSON log lines (a first start logs its new key)."""
    return [line for line in stderr.splitlines() if not line.startswith("{")]


def older_schema(config: Path, conflict: bool = False) -> None:
    """A schema left by the program before this one: core and ingest one version behind. With
    ``conflict``, ingest's last step will fail after its first statement (a column exists)."""
    db = state(config)
    try:
        db.migrate("core", core.tenants.MIGRATIONS[:-1])
        db.migrate("ingest", ingest.store.MIGRATIONS[:-1])
        if conflict:
            db.execute("ALTER TABLE ingest_staged ADD COLUMN final_failed INTEGER")
    finally:
        db.close()


def test_migrate_sets_up_every_component_once_then_has_nothing_to_do(
    configure: Configure, capsys: pytest.CaptureFixture[str],
) -> None:
    config = configure()
    code, out, _ = ctl(config, capsys, "migrate")
    assert code == 0
    expected = [f"{part.store}: {part.name} 0 -> {len(part.migrations)}" for part in components()]
    assert out.splitlines() == [*expected, f"migrated {len(expected)} components"]
    code, out, _ = ctl(config, capsys, "migrate")
    assert code == 0 and out.splitlines()[-1] == "nothing to migrate: every schema is current"
    assert versions(config) == {part.name: len(part.migrations) for part in components() if part.store == "state"}


def test_a_node_refuses_an_older_postgresql_schema_until_the_operator_migrates(
    configure: Configure, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    config = configure()
    older_schema(config)
    settings = load_settings(config)
    if not on_postgresql(config):  # one SQLite node migrates its own files as it starts
        assert Context(settings).tenants.all() == []
        assert versions(config)["core"] == len(core.tenants.MIGRATIONS)
        return
    with pytest.raises(SchemaTooOld, match="sftpctl migrate"):
        Context(settings).tenants.all()
    code, err = daemon_refusal(config, tmp_path)
    assert code == 2
    [line] = said(err)  # one line, naming the component, its version and what to do
    assert line.startswith("sftpd: cannot start: ") and "schema of 'core' is version" in line
    assert "older than this program" in line and "run `sftpctl migrate` first" in line
    assert versions(config)["core"] == len(core.tenants.MIGRATIONS) - 1  # the refusal changed nothing
    code, _, err = ctl(config, capsys, "tenant", "list")  # nor does any other command migrate
    assert code == 1 and "run `sftpctl migrate` first" in err
    code, out, _ = ctl(config, capsys, "migrate")
    assert code == 0
    assert f"state: core {len(core.tenants.MIGRATIONS) - 1} -> {len(core.tenants.MIGRATIONS)}" in out.splitlines()
    assert f"state: ingest {len(ingest.store.MIGRATIONS) - 1} -> {len(ingest.store.MIGRATIONS)}" in out.splitlines()
    node = start_daemon(tmp_path, None, None, "--config", str(config), "--no-demo")
    assert node.stop() == 0


def test_an_operator_may_let_a_postgresql_node_migrate_as_it_starts(configure: Configure) -> None:
    config = configure(migrate="at-start")
    older_schema(config)
    context = Context(load_settings(config))
    try:
        assert context.tenants.all() == []
    finally:
        context.close()
    assert versions(config)["core"] == len(core.tenants.MIGRATIONS)


def test_a_migration_failing_midway_leaves_every_version_as_it_was(
    configure: Configure, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    config = configure()
    older_schema(config, conflict=True)
    before = versions(config)
    code, out, err = ctl(config, capsys, "migrate")
    assert code == 1 and out == ""
    assert "migrating 'ingest' to version" in err and "nothing was applied, the schema is as it was" in err
    assert versions(config) == before  # core's step, applied before ingest's failed, is undone too
    db = state(config)
    try:
        with pytest.raises(Exception, match="final_posted"):  # ingest's first statement is undone
            db.query("SELECT final_posted FROM ingest_staged")
    finally:
        db.close()
    with pytest.raises(MigrationFailed):
        migrate_all(load_settings(config))
    if on_postgresql(config):
        code, err = daemon_refusal(config, tmp_path)
        assert code == 2 and "older than this program" in err and "sftpctl migrate" in err


def test_a_node_refuses_a_schema_a_newer_program_made(configure: Configure, tmp_path: Path) -> None:
    config = configure()
    db = state(config)
    try:
        db.migrate("core", [*core.tenants.MIGRATIONS, "CREATE TABLE from_the_future (x INTEGER)"])
    finally:
        db.close()
    with pytest.raises(SchemaTooNew):
        migrate_all(load_settings(config))
    code, err = daemon_refusal(config, tmp_path)
    assert code == 2
    [line] = said(err)
    assert "newer than this program" in line and "upgrade the program" in line


def test_migrating_is_allowed_by_default_on_sqlite_only() -> None:
    assert Settings().database.migrates_at_start
    assert not Settings().replace(database__url="postgresql:///x").database.migrates_at_start
