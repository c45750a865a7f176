"""``sftpctl tenant purge``: every trace of a tenant, in every store, then the tenant itself.

A tenant's data lies in the state database (login, uploads, the pipeline's rows), the ledger
database (calls, signals, lookup rows, transactions), its folder, its staged snapshots and the
mails written for it. All of it goes, so a new tenant of the same name starts empty and never
sees the old one's calls. The tenant's claim is held meanwhile: no run posts for the tenant
halfway through. The tenant row goes last, so a purge that stops early can simply be run again.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from core.logs import get_logger
from ingest import STAGING_DIR, Claims, tenant_claim
from ingest import migrate as migrate_pipeline
from ingest import purge_tenant as purge_pipeline
from ledger.store import LedgerStore
from service.context import Context

log = get_logger("service.purge")


def purge_tenant(context: Context, name: str) -> None:
    """Delete tenant ``name`` and everything of it; raises ``ClaimHeld`` while a run works on it."""
    settings = context.settings
    context.tenants.get(name)
    with Claims(context.db).held(tenant_claim(name)):
        migrate_pipeline(context.db)
        purge_pipeline(context.db, name)
        shutil.rmtree(settings.data_dir / STAGING_DIR / name, ignore_errors=True)
        removed = 0
        ledger_location = settings.ledger_location
        if not isinstance(ledger_location, Path) or ledger_location.exists():  # no ledger file: nothing to purge
            ledger = LedgerStore.open(ledger_location)
            try:
                removed = ledger.purge_tenant(name)
            finally:
                ledger.close()
        mails = _mails_of(context, name)
        for mail in mails:
            mail.unlink(missing_ok=True)
        context.defender.forget_account(name)
        context.tenants.purge(name)
    log.info("tenant.purged", tenant=name, transactions=removed, mails=len(mails))


def _mails_of(context: Context, name: str) -> list[Path]:
    """The .eml files written for the tenant: ``<UTC time>-run<id>-<tenant>.eml``."""
    folder = context.settings.mail_spool
    if not folder.is_dir():
        return []
    pattern = re.compile(r"\d{8}T\d{6}Z-run\d+-" + re.escape(name) + r"\.eml")
    return [path for path in folder.iterdir() if pattern.fullmatch(path.name)]
