"""Failure mail through a real SMTP server (aiosmtpd) on loopback, and the .eml fallback."""

from __future__ import annotations

import email
import email.policy
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller

from core.config import MailSettings
from core.crypto import AtRest
from ingest.notify import Mailer, TenantRun, failure_message
from ingest.reports import FileSummary
from tests.conftest import free_port

RUN_TIME = datetime(2026, 11, 1, 14, 0, 2, tzinfo=UTC)
LA = ZoneInfo("America/Los_Angeles")


class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(e.content, policy=email.policy.default) for e in self.envelopes]  # type: ignore[misc]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def keys(tmp_path: Path) -> AtRest:
    return AtRest.load(tmp_path / "keys", tmp_path / "var", create=True)


def notice(tmp_path: Path, **changes: Any) -> TenantRun:
    report = tmp_path / "sales-20261101T060002-report.csv"
    report.write_text("file,in/sales.csv\n", encoding="utf-8")
    files = [FileSummary(upload_id=1, tenant="acme", path="in/sales.csv", feed="signals",
                         received_at="2026-11-01T13:00:00.000Z", state="partly failed", rows_total=4,
                         posted=2, failed=1, rejected=1, pending=0, report=str(report))]
    values: dict[str, Any] = {"tenant": "acme", "email": "ops@acme.example", "run_id": 12, "run_time": RUN_TIME,
                                  "zone": LA, "files": files}
    values.update(changes)
    return TenantRun(**values)


def test_message_has_summary_and_report_attached(tmp_path: Path) -> None:
    message = failure_message("inbox@sftp.example", notice(tmp_path), at_rest=keys(tmp_path))
    assert message["To"] == "ops@acme.example"
    assert message["Subject"] == "[sftp-inbox] acme: problems in the run of 2026-11-01 06:00:02-08:00"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "in/sales.csv (feed signals): partly failed" in text
    assert "4 total, 2 posted, 1 failed, 1 rejected" in text
    attachments = list(message.iter_attachments())
    assert [part.get_filename() for part in attachments] == ["sales-20261101T060002-report.csv"]
    assert attachments[0].get_content_type() == "text/csv"


def test_a_run_with_only_successes_needs_no_mail(tmp_path: Path) -> None:
    run = notice(tmp_path)
    clean = notice(tmp_path, files=[FileSummary(**{**run.files[0].__dict__, "failed": 0, "rejected": 0,
                                                   "state": "posted"})])
    assert run.failed and not clean.failed
    assert notice(tmp_path, files=[], problems=["The API refused this account's token"]).failed


async def test_mail_goes_through_smtp(tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    mailer = Mailer(MailSettings(sender="inbox@sftp.example", smtp_host="127.0.0.1", smtp_port=port),
                    tmp_path / "mail", keys(tmp_path))
    message = failure_message("inbox@sftp.example", notice(tmp_path), at_rest=keys(tmp_path))
    where = await mailer.send(message, "run12-acme")
    assert where == "smtp"
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "inbox@sftp.example"
    assert envelope.rcpt_tos == ["ops@acme.example"]
    [received] = inbox.messages()
    assert [part.get_filename() for part in received.iter_attachments()] == ["sales-20261101T060002-report.csv"]
    assert not (tmp_path / "mail").exists()


async def test_without_smtp_host_mail_is_an_eml_file(tmp_path: Path) -> None:
    mailer = Mailer(MailSettings(), tmp_path / "mail", keys(tmp_path))
    message = failure_message("inbox@sftp.example", notice(tmp_path), at_rest=keys(tmp_path))
    where = await mailer.send(message, "run12-acme")
    path = Path(where)
    assert path == tmp_path / "mail" / "run12-acme.eml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ops@acme.example" not in path.read_bytes()  # sealed at rest: it holds the reports
    saved = email.message_from_bytes(keys(tmp_path).read_bytes(path), policy=email.policy.default)
    assert saved["To"] == "ops@acme.example"
    assert [item.name for item in path.parent.iterdir()] == [path.name]


async def test_unreachable_smtp_falls_back_to_eml(tmp_path: Path) -> None:
    mailer = Mailer(MailSettings(smtp_host="127.0.0.1", smtp_port=free_port()), tmp_path / "mail",
                    keys(tmp_path))
    message = failure_message("inbox@sftp.example", notice(tmp_path), at_rest=keys(tmp_path))
    where = await mailer.send(message, "run12-acme")
    assert Path(where).is_file()


def test_a_sealed_report_is_attached_as_its_plaintext(tmp_path: Path) -> None:
    run = notice(tmp_path)
    report = Path(run.files[0].report or "")
    at_rest = keys(tmp_path)
    at_rest.write_bytes(report, b"file,in/sales.csv\nrow,2\n")
    assert b"in/sales.csv" not in report.read_bytes()
    [attachment] = failure_message("inbox@sftp.example", run, at_rest=at_rest).iter_attachments()
    assert attachment.get_content() == "file,in/sales.csv\nrow,2\n"
