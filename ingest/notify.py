"""Failure mail: one message per tenant per run, with the summary and the reports attached.

The processor queues a notice with the finish of each file the contact must hear of and marks it
sent after the message went out (``ingest.store.NoticeStore``), so a crash never loses a mail;
the one mail in flight at a crash may arrive twice, with the same Message-ID.

Sent over SMTP (:mod:`smtplib` in a worker thread, so the event loop keeps serving) when
``mail.smtp_host`` is set; otherwise, or when the SMTP server cannot take it, the message is
written as an ``.eml`` file to the mail outbox folder, so no failure notice is ever dropped. The
``.eml`` holds the reports, so it is sealed at rest like them (``sftpctl keys decrypt`` prints it).
Messages carry no tokens or passwords; the SMTP password is never logged.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo

from core.config import MailSettings
from core.crypto import AtRest
from core.logs import get_logger
from ingest.reports import FileSummary, local_time

log = get_logger("ingest.notify")

EML_MODE = 0o600
MAIL_FOLDER_MODE = 0o700
SUBJECT_PREFIX = "[sftp-inbox]"


@dataclass(frozen=True)
class TenantRun:
    """What one run did for one tenant: the files it finished and anything that held rows back."""

    tenant: str
    email: str
    run_id: int
    run_time: datetime
    zone: ZoneInfo
    files: Sequence[FileSummary]
    problems: Sequence[str] = field(default_factory=tuple)

    @property
    def failed(self) -> bool:
        """Anything the contact should hear about: a rejected file or row, a failed row, a problem."""
        return bool(self.problems) or any(item.needs_notice for item in self.files)


def failure_message(sender: str, run: TenantRun, key: str | None = None, *, at_rest: AtRest) -> EmailMessage:
    """The message for ``run``; reports listed in its files are attached, read through
    ``at_rest`` (they are sealed in ``out/``).

    ``key`` names the message for good: a message sent again after a crash carries the same
    Message-ID, so a mail system (or a person) can tell the copy for what it is.
    """
    when = local_time(run.run_time, run.zone)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = run.email
    message["Subject"] = f"{SUBJECT_PREFIX} {run.tenant}: problems in the run of {when}"
    message["Date"] = format_datetime(run.run_time)
    domain = sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = f"<{key}@{domain}>" if key else make_msgid(domain=domain)
    message.set_content(_body(run, when))
    for item in run.files:
        if item.report:
            report = Path(item.report)
            message.add_attachment(
                at_rest.read_bytes(report), maintype="text", subtype="csv", filename=report.name
            )
    return message


def _body(run: TenantRun, when: str) -> str:
    lines = ["Hello,", "", f"The processing run of {when} (run {run.run_id}) needs your attention.", ""]
    for item in run.files:
        lines.append(f"{item.path} (feed {item.feed}): {item.state}")
        if item.error:
            lines.append(f"    reason: {item.error}")
        lines.append(
            f"    rows: {item.rows_total} total, {item.posted} posted, {item.failed} failed,"
            f" {item.rejected} rejected" + (f", {item.pending} waiting" if item.pending else "")
        )
    if run.problems:
        lines += ["", *run.problems]
    reports = [Path(item.report).name for item in run.files if item.report]
    if reports:
        lines += ["", "The reports are attached and are also in your out/ folder:",
                  *(f"    {name}" for name in reports)]
    lines += ["", "This message was sent automatically; files with failed or rejected rows can be",
              "corrected and uploaded again."]
    return "\n".join(lines) + "\n"


class Mailer:
    def __init__(self, settings: MailSettings, outbox_dir: Path, at_rest: AtRest) -> None:
        """``at_rest``: what seals the ``.eml`` files written."""
        self.settings = settings
        self.outbox_dir = outbox_dir
        self.at_rest = at_rest

    async def send(self, message: EmailMessage, name: str) -> str:
        """Deliver ``message``; returns ``"smtp"`` or the path of the ``.eml`` file written.

        ``name`` (no extension) names the ``.eml`` file if one is written.
        """
        if self.settings.smtp_host:
            try:
                await asyncio.to_thread(self._smtp, message)
                log.info("mail.sent", to=message["To"], subject=message["Subject"])
                return "smtp"
            except (OSError, smtplib.SMTPException) as exc:
                log.error("mail.smtp_failed", host=self.settings.smtp_host, error=str(exc))
        path = await asyncio.to_thread(self._write_eml, message, name)
        log.info("mail.saved", to=message["To"], path=str(path))
        return str(path)

    def _smtp(self, message: EmailMessage) -> None:
        mail = self.settings
        with smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=mail.smtp_timeout_seconds) as smtp:
            if self.settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.settings.smtp_username:
                smtp.login(self.settings.smtp_username, self.settings.smtp_password)
            smtp.send_message(message)

    def _write_eml(self, message: EmailMessage, name: str) -> Path:
        self.outbox_dir.mkdir(parents=True, exist_ok=True, mode=MAIL_FOLDER_MODE)
        target = self.outbox_dir / f"{name}.eml"
        self.at_rest.write_bytes(target, message.as_bytes(), durable=True, mode=EML_MODE)
        return target
