"""Tenants: their login, contact, API token, time zone, data dictionary and folders.

This is the data provider the front door authenticates against and the operator CLI edits. A
tenant whose login was removed (``password_hash`` is NULL) keeps its files, settings and history,
but is *invalid*: it cannot log in and its files wait, unprocessed, until a new login is set.

Whether a tenant may act is decided here and nowhere else: :attr:`Tenant.may_log_in` (the front
door), :attr:`Tenant.may_post` (the embedded API) and :attr:`Tenant.may_be_processed` (the
processor). The names of a tenant's two folders, :data:`IN_DIR` and :data:`OUT_DIR`, live here
too, for the front door, the pipeline and the CLI alike. So do the retention rules in force for a
tenant (:attr:`Tenant.retention`): the installation's ``[retention]``, each overridden by the
tenant's own value when it has one (``sftpctl tenant retention``).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.clock import now_iso
from core.config import DEFAULT_ZONE, RETENTION_MAX_DAYS, RETENTION_RULES, RetentionSettings
from core.db import Database, Location
from core.errors import Conflict, NotFound, UsageError
from core.passwords import PasswordHasher, generate_token

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FIELD_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_ -]{0,254}$")

# The folders of a tenant's root, by their names on disk and in client paths: uploads go to
# ``in/`` (sub-folders allowed), reports come back in ``out/`` (read-only to the tenant).
IN_DIR = "in"
OUT_DIR = "out"
TENANT_DIRS = (IN_DIR, OUT_DIR)

# Applied migrations never change; the column default below is unused (``add`` always names the
# zone, DEFAULT_ZONE unless told otherwise).
MIGRATIONS = [
    """
    CREATE TABLE tenants (
        name TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        password_hash TEXT,
        enabled INTEGER NOT NULL DEFAULT 1,
        api_token TEXT NOT NULL UNIQUE,
        timezone TEXT NOT NULL DEFAULT 'America/Los_Angeles',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE data_dictionary (
        tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
        field TEXT NOT NULL COLLATE NOCASE,
        PRIMARY KEY (tenant, field)
    );
    CREATE TABLE uploads (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        received_at TEXT NOT NULL,
        source TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'received',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX uploads_by_tenant ON uploads (tenant, id);
    """,
    # A tenant's own retention rules, in days; NULL: the installation's ``[retention]`` value.
    """
    ALTER TABLE tenants ADD COLUMN upload_days INTEGER;
    ALTER TABLE tenants ADD COLUMN report_days INTEGER;
    ALTER TABLE tenants ADD COLUMN rejected_days INTEGER;
    """,
    # Uploads by state: what is waiting or under way is found without reading the whole history.
    """
    CREATE INDEX uploads_by_state ON uploads (state, id);
    """,
    # Found without reading a tenant's history (issue 15): the last upload of a path (what the
    # scan compares a file with), a tenant's uploads in one state (waiting, under way) and the
    # waiting upload of a path that a new one supersedes.
    """
    CREATE INDEX uploads_by_path ON uploads (tenant, path, id);
    CREATE INDEX uploads_by_tenant_state ON uploads (tenant, state, path);
    """,
]


class TenantError(ValueError, UsageError):
    """An operator request that cannot be carried out; the message is shown as is."""


class TenantNotFound(TenantError, NotFound):
    """No tenant of that name."""


class TenantExists(TenantError, Conflict):
    """A tenant of that name exists already."""


@dataclass(frozen=True)
class Tenant:
    name: str
    email: str
    enabled: bool
    has_login: bool
    api_token: str
    timezone: str
    created_at: str
    updated_at: str
    #: The retention rules in force for the tenant: its own where it has them, else the installation's.
    retention: RetentionSettings = dataclasses.field(default_factory=RetentionSettings)
    #: The rules (names of :data:`core.config.RETENTION_RULES`) the tenant has a value of its own for.
    retention_own: tuple[str, ...] = ()

    @property
    def may_log_in(self) -> bool:
        """A password login needs a login (``sftpctl tenant remove`` takes it away) and an
        enabled account (``sftpctl tenant disable`` suspends it without forgetting the hash)."""
        return self.enabled and self.has_login

    @property
    def may_post(self) -> bool:
        """The API token (posting, and reading the ledger) is a second key to the same account,
        so it opens no more than the login does: a removed login or a disabled account refuses
        the token too, else a customer the operator shut out could keep writing to the ledger.
        A new password or ``enable`` restores it (the token itself is unchanged)."""
        return self.enabled and self.has_login

    @property
    def may_be_processed(self) -> bool:
        """Files are processed only for a valid, enabled tenant: without a login the tenant's
        configuration is invalid (there is no one to answer for the files), so they wait,
        unprocessed and never lost, until a login exists and the account is enabled."""
        return self.enabled and self.has_login

    @property
    def why_idle(self) -> str | None:
        """Why the tenant may not act, for operators' messages; None when it may."""
        if not self.has_login:
            return "has no login"
        if not self.enabled:
            return "is disabled"
        return None


@dataclass(frozen=True)
class TenantFolders:
    """The chroot of a tenant: :data:`IN_DIR` for uploads, :data:`OUT_DIR` for reports."""

    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / IN_DIR

    @property
    def reports_dir(self) -> Path:
        """``out/``: the reports, which the tenant may read and nothing else."""
        return self.root / OUT_DIR

    def create(self) -> None:
        for folder in (self.root, self.inbox, self.reports_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o750)


def open_state(location: Location) -> Database:
    """The state database (a SQLite file or a PostgreSQL schema) with the core schema applied."""
    db = Database(location)
    db.migrate("core", MIGRATIONS)
    return db


class TenantStore:
    def __init__(
        self, db: Database, tenants_dir: Path, hasher: PasswordHasher,
        retention: RetentionSettings | None = None,
    ) -> None:
        """``retention``: the installation's rules (``[retention]``), which a tenant's own override."""
        self.db = db
        self.tenants_dir = tenants_dir
        self.hasher = hasher
        self.retention = retention or RetentionSettings()

    def folders(self, name: str) -> TenantFolders:
        return TenantFolders(self.tenants_dir / name)

    def add(self, name: str, email: str, password: str, timezone: str = DEFAULT_ZONE) -> Tenant:
        _check_name(name)
        _check_email(email)
        _check_timezone(timezone)
        password_hash = self.hasher.hash(password)
        now = now_iso()
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)).fetchone():
                raise TenantExists(f"tenant {name!r} already exists")
            conn.execute(
                "INSERT INTO tenants (name, email, password_hash, api_token, timezone, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, email, password_hash, generate_token(), timezone, now, now),
            )
        self.folders(name).create()
        return self.get(name)

    def get(self, name: str) -> Tenant:
        tenant = self.find(name)
        if tenant is None:
            raise TenantNotFound(f"no tenant named {name!r}")
        return tenant

    def find(self, name: str) -> Tenant | None:
        row = self.db.query_one("SELECT * FROM tenants WHERE name = ?", (name,))
        return self._profile(row) if row else None

    def find_by_token(self, token: str) -> Tenant | None:
        row = self.db.query_one("SELECT * FROM tenants WHERE api_token = ?", (token,))
        return self._profile(row) if row else None

    def all(self) -> list[Tenant]:
        return [self._profile(row) for row in self.db.query("SELECT * FROM tenants ORDER BY name")]

    def password_hash(self, name: str) -> str | None:
        """The stored hash of a tenant that may log in now (:attr:`Tenant.may_log_in`); None if
        it cannot, so the front door verifies against nothing and refuses."""
        row = self.db.query_one("SELECT * FROM tenants WHERE name = ?", (name,))
        if row is None or not self._profile(row).may_log_in:
            return None
        hashed: str = row["password_hash"]
        return hashed

    def set_password(self, name: str, password: str) -> None:
        password_hash = self.hasher.hash(password)
        self._update(name, "password_hash = ?", password_hash)

    def rehash_if_needed(self, name: str, password: str, stored: str) -> None:
        """After a good login, upgrade a hash made with weaker settings."""
        if self.hasher.needs_rehash(stored):
            self._update(name, "password_hash = ?", self.hasher.hash(password))

    def set_enabled(self, name: str, enabled: bool) -> None:
        self._update(name, "enabled = ?", int(enabled))

    def set_email(self, name: str, email: str) -> None:
        _check_email(email)
        self._update(name, "email = ?", email)

    def remove_login(self, name: str) -> None:
        self._update(name, "password_hash = ?", None)

    def set_retention(self, name: str, days: Mapping[str, int | None]) -> Tenant:
        """Give the tenant its own value of each rule named in ``days`` (a name of
        :data:`core.config.RETENTION_RULES`), or None to go back to the installation's; returns
        the tenant with the rules now in force. Rules not named are left as they are."""
        for rule, value in days.items():
            if rule not in RETENTION_RULES:
                raise TenantError(f"unknown retention rule {rule!r} (rules: {', '.join(RETENTION_RULES)})")
            if value is not None and not 0 <= value <= RETENTION_MAX_DAYS:
                raise TenantError(f"{rule}: expected whole days, 0 to {RETENTION_MAX_DAYS}, got {value}")
        if days:
            assignment = ", ".join(f"{rule} = ?" for rule in days)
            self._update(name, assignment, *days.values())
        return self.get(name)

    def rotate_token(self, name: str) -> str:
        token = generate_token()
        self._update(name, "api_token = ?", token)
        return token

    def purge(self, name: str) -> None:
        """Delete the tenant, its history and its files. Irreversible."""
        self.get(name)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM tenants WHERE name = ?", (name,))
        shutil.rmtree(self.folders(name).root, ignore_errors=True)

    def dictionary(self, name: str) -> list[str]:
        rows = self.db.query(
            "SELECT field FROM data_dictionary WHERE tenant = ? ORDER BY field", (name,)
        )
        return [row["field"] for row in rows]

    def add_fields(self, name: str, fields: list[str]) -> None:
        self.get(name)
        for field in fields:
            if not FIELD_PATTERN.match(field):
                raise TenantError(f"invalid data dictionary field name {field!r}")
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO data_dictionary (tenant, field) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(name, field) for field in fields],
            )

    def remove_fields(self, name: str, fields: list[str]) -> None:
        with self.db.transaction() as conn:
            conn.executemany(
                "DELETE FROM data_dictionary WHERE tenant = ? AND field = ?",
                [(name, field) for field in fields],
            )

    def _update(self, name: str, assignment: str, *values: object) -> None:
        with self.db.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE tenants SET {assignment}, updated_at = ? WHERE name = ?",
                (*values, now_iso(), name),
            )
            if cursor.rowcount == 0:
                raise TenantNotFound(f"no tenant named {name!r}")

    def _profile(self, row: sqlite3.Row) -> Tenant:
        """The tenant of ``row`` with the retention rules in force for it."""
        own = {rule: row[rule] for rule in RETENTION_RULES if row[rule] is not None}
        return dataclasses.replace(_tenant(row), retention=dataclasses.replace(self.retention, **own),
                                   retention_own=tuple(own))


def _tenant(row: sqlite3.Row) -> Tenant:
    return Tenant(
        name=row["name"],
        email=row["email"],
        enabled=bool(row["enabled"]),
        has_login=row["password_hash"] is not None,
        api_token=row["api_token"],
        timezone=row["timezone"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise TenantError(
            f"invalid tenant name {name!r}: 1-32 characters, lower-case letters, digits, '-' or '_',"
            " starting with a letter or digit"
        )


def _check_email(email: str) -> None:
    if not EMAIL_PATTERN.match(email):
        raise TenantError(f"invalid e-mail address {email!r}")


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TenantError(f"unknown time zone {name!r}") from None
