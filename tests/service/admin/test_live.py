"""The daemon's own counts: password attempts at the defender, refused uploads from the log."""

from __future__ import annotations

import logging

from core.config import DefenderSettings
from core.db import Database
from core.logs import get_logger
from service.admin.live import UPLOAD_LOGGER, CountingDefender, UploadEvents


def test_attempts_are_counted_by_result(state_db: Database) -> None:
    defender = CountingDefender(state_db, DefenderSettings(account_max_failures=2, pair_max_failures=2))
    assert defender.lockout_for("acme", "10.0.0.1") is None
    defender.record_failure("acme", "10.0.0.1")
    defender.record_failure("acme", "10.0.0.1")  # locks the pair
    assert defender.lockout_for("acme", "10.0.0.1") is not None
    defender.record_success("acme", "10.0.0.2")
    assert defender.logins == {"failed": 2, "locked": 1, "ok": 1}


def test_refused_and_aborted_uploads_are_counted_from_their_log_records() -> None:
    events = UploadEvents()
    events.attach()
    try:
        log = get_logger(UPLOAD_LOGGER)
        log.warning("upload.refused", tenant="acme", path="in/x.exe", reason="upload refused: .exe")
        log.warning("upload.aborted", tenant="acme", path="in/x.csv", received=3, reason="session ended")
        log.warning("sftp.something_else")
        logging.getLogger("sftpd.other").warning("upload.refused")  # another logger: not ours
    finally:
        events.detach()
    log.warning("upload.refused", tenant="acme", path="in/y.exe", reason="after detach")
    assert events.counts == {"refused": 1, "aborted": 1}
