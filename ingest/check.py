"""A dry run of one file through a feed: what ``sftpctl check`` shows operators.

Operators agree a template with a customer from a sample file. This runs the processor's own file
checks, reader, validation and mapping on it, and reports every row error and the first requests
it would send, so both sides see exactly what a real run would do. Nothing is posted or stored.
"""

from __future__ import annotations

import itertools
import json
import textwrap
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from core.config import ParseSettings
from ingest.delivery.outbox import RejectedRow
from ingest.prepare import PrepareJob, prepare_file
from ingest.rows.feeds import Feed
from ingest.rows.kinds import DestinationRequest
from ingest.sandbox import Limits, WorkerFailed, run_limited

__all__ = ["CheckResult", "check_sample", "format_check"]


@dataclass
class CheckResult:
    """The outcome of a dry run; ``requests`` pairs file row numbers with their requests."""

    path: Path
    feed: str
    template: str
    timezone: str
    file_error: str | None = None
    rows: int = 0
    row_errors: list[RejectedRow] = field(default_factory=list)
    requests: list[tuple[int, DestinationRequest]] = field(default_factory=list)

    @property
    def bad(self) -> int:
        return len(self.row_errors)

    @property
    def good(self) -> int:
        return self.rows - self.bad

    @property
    def ok(self) -> bool:
        """Whether a real run would post every row."""
        return self.file_error is None and not self.row_errors


def check_sample(
    path: Path,
    feed: Feed,
    dictionary: Collection[str],
    tz: ZoneInfo,
    max_bad_row_share: float,
    max_bytes: int,
    allowed_extensions: Iterable[str],
    limits: ParseSettings,
    sample_requests: int = 5,
) -> CheckResult:
    """Check, read, validate and map ``path`` as a run would, keeping the first requests.

    It is the run's own :func:`ingest.prepare.prepare_file`, in a limited child process like a run's:
    a sample is as untrusted as an upload, and the operator's shell is no place for a reader to
    abort.
    """
    result = CheckResult(path=path, feed=feed.name, template=feed.template.name, timezone=tz.key)
    job = PrepareJob(
        snapshot=path, sha256=None, feed=feed, dictionary=tuple(dictionary), timezone=tz.key, base_url="",
        max_upload_bytes=max_bytes, allowed_extensions=tuple(allowed_extensions),
        max_bad_row_share=max_bad_row_share, limits=limits,
    )
    try:
        prepared = run_limited(prepare_file, job, Limits.from_settings(limits))
    except WorkerFailed as exc:
        result.file_error = exc.reason
        return result
    result.file_error = prepared.error or None
    result.rows = prepared.rows_total
    result.row_errors = sorted(prepared.rejected, key=lambda row: row.row_number)
    result.requests = [
        (row.row_number, DestinationRequest(row.kind, row.method, row.url, row.text, row.key))
        for row in itertools.islice(prepared.requests, max(sample_requests, 0))
    ]
    return result


def format_check(result: CheckResult, max_errors: int = 20) -> str:
    """The result as text for a terminal: verdict, row errors, then the sample requests."""
    lines = [
        f"file:     {result.path.name}",
        f"feed:     {result.feed} (template {result.template}, time zone {result.timezone})",
    ]
    if result.file_error and not result.rows:
        lines.append(f"result:   REJECTED: {result.file_error}")
        return "\n".join(lines)
    if result.file_error:
        verdict = f"REJECTED: {result.file_error}"
    elif result.row_errors:
        verdict = (
            f"{result.bad} of {result.rows} rows would be rejected; the others would be posted"
        )
    else:
        verdict = f"OK: all {result.rows} rows would be posted"
    lines.append(f"result:   {verdict}")
    lines.append(f"rows:     {result.rows} ({result.good} good, {result.bad} bad)")
    if result.row_errors:
        lines.append("row errors:")
        lines.extend(f"  row {row.row_number}: {row.error}" for row in result.row_errors[:max_errors])
        if result.bad > max_errors:
            lines.append(f"  ... and {result.bad - max_errors} more")
    if result.requests:
        lines.append("first mapped requests (not posted):")
        for number, request in result.requests:
            lines.append(
                f"  row {number}: {request.method} {request.path} (key {request.key[:12]})"
            )
            body = json.dumps(request.body, indent=2, ensure_ascii=False)
            lines.append(textwrap.indent(body, "    "))
    return "\n".join(lines)
