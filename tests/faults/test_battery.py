"""The fault battery's short form: one ``kill -9`` in each phase, nothing lost or doubled.

The long form is ``python -m tests.faults.battery --trials 100``.
"""

from __future__ import annotations

import email
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.faults.battery import PHASES, TENANT, Tally, count, run_trial
from tests.support.at_rest import stored_bytes

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("phase", PHASES)
def test_a_kill_in_each_phase_loses_and_doubles_nothing(tmp_path: Path, phase: str) -> None:
    trial = run_trial(tmp_path, phase, seed=PHASES.index(phase) + 7)
    assert trial.tally == Tally(), f"killed after {trial.killed_after}: {trial.tally.line()}"


def test_the_count_sees_a_lost_row_a_second_report_and_a_missing_mail(tmp_path: Path) -> None:
    """The battery's zeros mean something: damage done by hand after a clean trial is counted."""
    trial = run_trial(tmp_path, "reporting", seed=3)
    assert trial.tally == Tally()
    data = tmp_path / "var"
    ledger = sqlite3.connect(data / "ledger.db")
    with ledger:
        ledger.execute("DELETE FROM signals WHERE partner_unique_id = 'order-7'")
    ledger.close()
    report = next((data / "tenants" / TENANT / "out").glob("signals-*-report.csv"))
    shutil.copy(report, report.with_name("copy-" + report.name))
    mails = list((data / "mail").glob("*.eml"))
    assert [email.message_from_bytes(stored_bytes(mail, tmp_path / "keys"))["To"] for mail in mails] == [
        "demo@example.com"]
    mails[0].unlink()
    assert trial.work is not None
    assert count(trial.work) == Tally(lost_rows=1, duplicated_reports=1, missing_mails=1)
