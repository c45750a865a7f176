"""A dry run of one file through a feed: what ``sftpctl check`` shows operators.

Operators agree a template with a customer from a sample file. This runs the processor's own file
checks, reader, validation and mapping on it, and reports every row error and the first requests
it would send, so both sides see exactly what a real run would do. Nothing is posted or stored.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from core.config import ParseSettings
from ingest.errors import FileRejected
from ingest.feeds import Feed
from ingest.mapping import DestinationRequest, map_rows
from ingest.precheck import check_workbook
from ingest.readers import read_table
from ingest.sandbox import Limits, WorkerFailed, run_limited
from ingest.validate import RowResult, check_file, validate

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
    row_errors: list[RowResult] = field(default_factory=list)
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

    Like a run, it reads the file in a limited child process: a sample is as untrusted as an
    upload, and the operator's shell is no place for a reader to abort.
    """
    job = _CheckJob(path, feed, tuple(dictionary), tz.key, max_bad_row_share, max_bytes,
                    tuple(allowed_extensions), limits, sample_requests)
    try:
        return run_limited(_check, job, Limits.from_settings(limits))
    except WorkerFailed as exc:
        return CheckResult(path=path, feed=feed.name, template=feed.template.name, timezone=tz.key,
                           file_error=exc.reason)


@dataclass(frozen=True)
class _CheckJob:
    path: Path
    feed: Feed
    dictionary: tuple[str, ...]
    timezone: str
    max_bad_row_share: float
    max_bytes: int
    allowed_extensions: tuple[str, ...]
    limits: ParseSettings
    sample_requests: int


def _check(job: _CheckJob) -> CheckResult:
    """The dry run itself, in the child."""
    path, feed, dictionary, tz = job.path, job.feed, job.dictionary, ZoneInfo(job.timezone)
    max_bad_row_share, sample_requests, limits = job.max_bad_row_share, job.sample_requests, job.limits
    result = CheckResult(path=path, feed=feed.name, template=feed.template.name, timezone=tz.key)
    result.file_error = check_file(path, job.max_bytes, job.allowed_extensions)
    if result.file_error:
        return result
    try:
        check_workbook(path, limits)
        table = read_table(path)
    except FileRejected as exc:
        result.file_error = exc.reason
        return result
    validation = validate(table, feed, dictionary, tz, max_bad_row_share)
    result.file_error = validation.file_error
    result.rows = len(validation.rows)
    result.row_errors = validation.bad
    mapped = map_rows(feed, validation, tz)
    result.requests = mapped.requests[: max(sample_requests, 0)]
    # The rows a sample looks at end with the one that completes it.
    if len(result.requests) < sample_requests:
        end = math.inf
    else:
        end = result.requests[-1][0] if result.requests else -math.inf
    rows = {row.number: row for row in validation.good}
    result.row_errors.extend(
        RowResult(number, rows[number].values, error)
        for number, error in mapped.failures
        if number < end
    )
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
        lines.extend(f"  row {row.number}: {row.error}" for row in result.row_errors[:max_errors])
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
