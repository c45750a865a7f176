from __future__ import annotations

import os
import stat

import pytest

from core.config import DEFAULT_ZONE, RetentionSettings, ScheduleSettings, Settings
from core.db import Database
from core.passwords import PasswordError, PasswordHasher
from core.tenants import (
    IN_DIR,
    MIGRATIONS,
    OUT_DIR,
    Tenant,
    TenantError,
    TenantNotFound,
    TenantStore,
    open_state,
)
from tests.conftest import TEST_PASSWORD


def test_add_creates_chroot_folders_and_token(tenants: TenantStore) -> None:
    tenant = tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    folders = tenants.folders("acme")
    assert folders.inbox == folders.root / IN_DIR and folders.reports_dir == folders.root / OUT_DIR
    assert folders.inbox.is_dir() and folders.reports_dir.is_dir()
    assert len(tenant.api_token) == 64 and tenant.may_be_processed and tenant.enabled


def test_state_db_is_private(settings: Settings) -> None:
    """The SQLite file holds password hashes and tokens (on PostgreSQL, the server's rights do)."""
    open_state(settings.state_db).close()
    mode = stat.S_IMODE(os.stat(settings.state_db).st_mode)
    assert mode == 0o600


def test_password_is_hashed_with_argon2id(tenants: TenantStore) -> None:
    tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    stored = tenants.password_hash("acme")
    assert stored is not None and stored.startswith("$argon2id$") and TEST_PASSWORD not in stored
    assert tenants.hasher.verify(TEST_PASSWORD, stored)
    assert not tenants.hasher.verify("wrong-password-here", stored)


@pytest.mark.parametrize("name", ["", "Acme", "../x", "a" * 33, "-acme", "ac me"])
def test_bad_names_are_refused(tenants: TenantStore, name: str) -> None:
    with pytest.raises(TenantError, match="invalid tenant name"):
        tenants.add(name, "ops@acme.example", TEST_PASSWORD)


def test_duplicate_and_bad_input(tenants: TenantStore) -> None:
    tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    with pytest.raises(TenantError, match="already exists"):
        tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    with pytest.raises(TenantError, match="e-mail"):
        tenants.add("beta", "not-an-address", TEST_PASSWORD)
    with pytest.raises(PasswordError, match="too short"):
        tenants.add("beta", "ops@beta.example", "short")
    with pytest.raises(TenantError, match="no tenant"):
        tenants.set_enabled("ghost", False)


def test_remove_login_keeps_tenant_but_makes_it_invalid(tenants: TenantStore) -> None:
    tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    (tenants.folders("acme").inbox / "kept.csv").write_text("a\n")
    tenants.remove_login("acme")
    tenant = tenants.get("acme")
    assert not tenant.may_be_processed and tenants.password_hash("acme") is None
    assert (tenants.folders("acme").inbox / "kept.csv").exists()
    tenants.set_password("acme", TEST_PASSWORD + "2")
    assert tenants.get("acme").may_be_processed


def test_disabled_tenant_has_no_usable_hash(tenants: TenantStore) -> None:
    tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    tenants.set_enabled("acme", False)
    assert tenants.password_hash("acme") is None


def test_purge_deletes_files_and_rows(tenants: TenantStore) -> None:
    tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    tenants.purge("acme")
    assert tenants.find("acme") is None and not tenants.folders("acme").root.exists()


def test_rotate_token_and_find_by_token(tenants: TenantStore) -> None:
    old = tenants.add("acme", "ops@acme.example", TEST_PASSWORD).api_token
    new = tenants.rotate_token("acme")
    assert new != old
    assert tenants.find_by_token(old) is None
    assert tenants.find_by_token(new).name == "acme"


def test_data_dictionary_is_case_insensitive(tenants: TenantStore) -> None:
    tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    tenants.add_fields("acme", ["Account_Type", "account_type", "score"])
    assert tenants.dictionary("acme") == ["Account_Type", "score"]


def tenant(*, enabled: bool, has_login: bool) -> Tenant:
    return Tenant(name="acme", email="ops@acme.example", enabled=enabled, has_login=has_login,
                  api_token="t" * 64, timezone=DEFAULT_ZONE, created_at="", updated_at="")


@pytest.mark.parametrize(
    ("enabled", "has_login", "allowed", "why"),
    [
        (True, True, True, None),
        (False, True, False, "is disabled"),
        (True, False, False, "has no login"),
        (False, False, False, "has no login"),
    ],
)
def test_a_tenant_may_act_only_while_enabled_with_a_login(
    enabled: bool, has_login: bool, allowed: bool, why: str | None
) -> None:
    subject = tenant(enabled=enabled, has_login=has_login)
    assert (subject.may_log_in, subject.may_post, subject.may_be_processed) == (allowed,) * 3
    assert subject.why_idle == why


def test_the_store_answers_as_the_properties_do(tenants: TenantStore) -> None:
    tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    steps = [
        (lambda: None, True),
        (lambda: tenants.set_enabled("acme", False), False),
        (lambda: tenants.remove_login("acme"), False),
        (lambda: tenants.set_enabled("acme", True), False),
        (lambda: tenants.set_password("acme", TEST_PASSWORD), True),
    ]
    for step, allowed in steps:
        step()
        now = tenants.get("acme")
        assert (now.may_log_in, now.may_post, now.may_be_processed) == (allowed,) * 3
        assert (tenants.password_hash("acme") is not None) is allowed
        assert tenants.find_by_token(now.api_token) == now


def test_a_new_tenant_and_the_schedule_share_the_default_zone(tenants: TenantStore) -> None:
    assert tenants.add("acme", "ops@acme.example", TEST_PASSWORD).timezone == DEFAULT_ZONE
    assert ScheduleSettings().timezone == DEFAULT_ZONE == "America/Los_Angeles"


def test_a_tenant_has_the_installations_retention_until_it_has_its_own(
    state_db: Database, settings: Settings, hasher: PasswordHasher
) -> None:
    installation = RetentionSettings(upload_days=10, report_days=20, rejected_days=5)
    store = TenantStore(state_db, settings.tenants_dir, hasher, installation)
    store.add("acme", "ops@acme.example", TEST_PASSWORD)
    assert (store.get("acme").retention, store.get("acme").retention_own) == (installation, ())
    tenant = store.set_retention("acme", {"report_days": 400, "rejected_days": 0})
    assert tenant.retention == RetentionSettings(upload_days=10, report_days=400, rejected_days=0)
    assert tenant.retention_own == ("report_days", "rejected_days")
    # Another process with other installation defaults sees the tenant's own rules win.
    other = TenantStore(state_db, settings.tenants_dir, hasher, RetentionSettings(upload_days=1))
    assert other.get("acme").retention == RetentionSettings(upload_days=1, report_days=400, rejected_days=0)
    # Rules not named stay; None goes back to the installation's.
    cleared = store.set_retention("acme", {"report_days": None})
    assert cleared.retention == RetentionSettings(upload_days=10, report_days=20, rejected_days=0)
    assert cleared.retention_own == ("rejected_days",)
    assert [t.retention for t in store.all()] == [cleared.retention]


@pytest.mark.parametrize("days, message", [
    ({"upload_days": -1}, "upload_days: expected whole days"),
    ({"report_days": 36501}, "report_days: expected whole days"),
    ({"keep_days": 3}, "unknown retention rule 'keep_days'"),
])
def test_bad_retention_is_refused_and_changes_nothing(
    tenants: TenantStore, days: dict[str, int], message: str
) -> None:
    tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    with pytest.raises(TenantError, match=message):
        tenants.set_retention("acme", {"upload_days": 3, **days})
    assert tenants.get("acme").retention_own == ()


def test_retention_of_an_unknown_tenant_is_not_found(tenants: TenantStore) -> None:
    with pytest.raises(TenantNotFound):
        tenants.set_retention("nobody", {"upload_days": 3})


def test_a_database_from_before_retention_gains_the_columns_and_keeps_its_tenants(
    settings: Settings, hasher: PasswordHasher
) -> None:
    settings = settings.replace(database__migrate="at-start")  # PostgreSQL's default is "explicit"
    old = Database(settings.state_location)
    old.migrate("core", MIGRATIONS[:1])
    old.execute("INSERT INTO tenants (name, email, api_token, created_at, updated_at)"
                " VALUES ('acme', 'ops@acme.example', 't', 'x', 'x')")
    old.close()
    db = open_state(settings.state_location)
    try:
        tenant = TenantStore(db, settings.tenants_dir, hasher).get("acme")
        assert tenant.retention == RetentionSettings() and tenant.retention_own == ()
    finally:
        db.close()
