"""What the parsing bulkhead costs: one file prepared in process and in a limited child, side by side.

``python -m bench.sandbox_cost [--size BYTES] [--repeats N]`` writes a CSV and an XLSX signal file
of the given size, then times ``ingest.prepare_file`` on each, in this process and through
``ingest.sandbox.run_limited`` (fork, limits, the result pickled back), alternating, best of N.
The difference is the price of the bulkhead per file; the child's figures include shipping every
mapped request back to the parent.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.signal_files import CUSTOM_COLUMNS, csv_file, xlsx_file
from core.config import Settings
from ingest import Limits, Prepared, PrepareJob, prepare_file, run_limited
from ingest.rows import DEFAULT_FEED, default_feeds


def job_for(path: Path, settings: Settings) -> PrepareJob:
    return PrepareJob(
        snapshot=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        feed=default_feeds()[DEFAULT_FEED], dictionary=tuple(CUSTOM_COLUMNS),
        timezone="America/Los_Angeles", base_url=settings.embedded_api_base,
        max_upload_bytes=settings.server.max_upload_bytes, allowed_extensions=settings.server.allowed_extensions,
        max_bad_row_share=settings.post.max_bad_row_share, limits=settings.parse,
    )


def timed(run: Callable[[PrepareJob], Prepared], job: PrepareJob) -> tuple[float, Prepared]:
    started = time.perf_counter()
    result = run(job)
    return time.perf_counter() - started, result


def in_child(job: PrepareJob) -> Prepared:
    return run_limited(prepare_file, job, Limits.from_settings(job.limits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    settings = Settings()
    limits = Limits.from_settings(settings.parse)
    with tempfile.TemporaryDirectory() as folder:
        files = [Path(folder) / "signals.csv", Path(folder) / "signals.xlsx"]
        csv_file(files[0], args.size)
        xlsx_file(files[1], args.size)
        print(f"{'file':<14}{'rows':>8}{'in process':>12}{'in a child':>12}{'cost':>9}")
        for path in files:
            job = job_for(path, settings)
            run_limited(prepare_file, job, limits)  # the fork server starts once, not per file
            inside, child = float("inf"), float("inf")
            rows = 0
            for _ in range(args.repeats):
                seconds, prepared = timed(prepare_file, job)
                inside = min(inside, seconds)
                seconds, prepared = timed(in_child, job)
                child = min(child, seconds)
                rows = prepared.rows_total
            print(f"{path.name:<14}{rows:>8}{inside:>11.3f}s{child:>11.3f}s{child - inside:>+8.3f}s")


if __name__ == "__main__":
    main()
