"""Read, validate and map speed of signal files, stage by stage, against a plain read.

A standalone script (``python -m bench.processor_speed``), no server needed: it writes the files
of :mod:`bench.signal_files` (a CSV, two XLSX, one as Excel saves it and one as openpyxl does, and
an XLS) and times :mod:`bench.processor_stages` on each, best of N, next to the peer's plain read.
Case 6 of ``bench.compare`` measures the same; this prints the stages.

The machine may be shared: each figure is the best of its runs, the load average is printed, and
``cpu`` (the process's CPU seconds for a whole run) is less disturbed by other work than the wall
clock. The XLSX written like Excel needs ``xlsxwriter``; without it that row is skipped.

``--against REV`` times the reader of another revision (its ``ingest/rows/readers.py``, everything
else this checkout's) in the same process, a run of each in turn, so a change to the reader is
measured side by side under the same load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import types
from collections.abc import Callable
from pathlib import Path

from bench.plan import FULL, MB
from bench.processor_stages import FORMATS, SignalFormat, StageTimes, best_of, peer_read, processor

# A peer library slower than this says nothing a note cannot.
PEER_TIMEOUT_SECONDS = 30.0
# A peer read slower than this share of the timeout is not repeated.
SLOW_PEER_SHARE = 1 / 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=FULL.runs, help="runs per figure (best is shown)")
    parser.add_argument("--dir", type=Path, help="keep the files here and reuse them if present")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset")
    parser.add_argument("--size", type=int, default=FULL.signal_file_bytes,
                        help="bytes per new file (default %(default)s)")
    parser.add_argument("--no-peers", action="store_true", help="time only the processor")
    parser.add_argument("--against", metavar="REV",
                        help="also time the reader of git revision REV, alternating run by run")
    args = parser.parse_args()
    unknown = set(args.formats.split(",")) - set(FORMATS)
    if unknown:
        parser.error(f"unknown formats {', '.join(sorted(unknown))}; known: {', '.join(FORMATS)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    run = processor()
    other = _processor_with_reader_of(args.against) if args.against else None
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"load average before: {_load()} on {os.cpu_count()} CPUs; best of {args.repeats}")
        print(f"{'file':<20}{'rows':>7}{'read':>8}{'valid.':>8}{'map':>8}{'total':>8}{'cpu':>8}"
              f"{'rows/s':>9}   peer")
        for name in args.formats.split(","):
            spec = FORMATS[name]
            path = folder / spec.file_name
            if not path.exists():
                try:
                    spec.write(path, args.size)
                except ImportError as exc:
                    print(f"{name:<20}skipped: {exc.name} is not installed", flush=True)
                    continue
            label = f"{name} {path.stat().st_size / MB:.1f} MB"
            if other is not None:
                times, before = _alternating(run, other, path, args.repeats)
                _row(f"  reader {args.against}"[:19], before, "")
            else:
                times = best_of(run, path, args.repeats)
            _row(label, times, "" if args.no_peers else _peer(spec, path, args.repeats))
        print(f"load average after: {_load()}")


def _row(label: str, times: StageTimes, peer: str) -> None:
    print(f"{label:<20}{times.rows:>7}{times.read:>8.3f}{times.validate:>8.3f}"
          f"{times.map:>8.3f}{times.total:>8.3f}{times.cpu:>8.3f}"
          f"{times.rows / times.total:>9,.0f}   {peer}", flush=True)


def _processor_with_reader_of(revision: str) -> Callable[[Path], StageTimes]:
    """The processor's steps with ``read_table`` of ``revision``'s ``ingest/rows/readers.py``."""
    import ingest.rows

    source = subprocess.run(["git", "show", f"{revision}:ingest/rows/readers.py"],
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType(f"readers_at_{revision}")
    exec(compile(source, f"{revision}:ingest/rows/readers.py", "exec"), module.__dict__)
    # processor() takes read_table from the package when it is made: lend it the other one.
    own = ingest.rows.read_table
    ingest.rows.read_table = module.read_table
    try:
        return processor()
    finally:
        ingest.rows.read_table = own


def _alternating(
    run: Callable[[Path], StageTimes], other: Callable[[Path], StageTimes], path: Path, repeats: int
) -> tuple[StageTimes, StageTimes]:
    """Best of ``repeats`` of each, a run of one then a run of the other."""
    mine, theirs = run(path), other(path)
    for _ in range(repeats - 1):
        mine, theirs = mine.best(run(path)), theirs.best(other(path))
    return mine, theirs


def _peer(spec: SignalFormat, path: Path, repeats: int) -> str:
    """The peer's best read as a table cell; a slow peer gets one run, a very slow one none."""
    best: float | None = None
    rows = 0
    note = ""
    for _ in range(repeats):
        try:
            read = peer_read(spec.peer, path, PEER_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            note = f"skipped: over {PEER_TIMEOUT_SECONDS:.0f} s"
            break
        best = read.seconds if best is None else min(best, read.seconds)
        rows = read.rows
        if read.seconds > PEER_TIMEOUT_SECONDS * SLOW_PEER_SHARE:
            note = "1 run (slow)"
            break
    figure = f"{best:.2f} s, {rows / best:,.0f} rows/s" if best else ""
    return f"{spec.peer.name}: {figure}{' ' if figure and note else ''}{note}"


def _load() -> str:
    return ", ".join(f"{figure:.2f}" for figure in os.getloadavg())


if __name__ == "__main__":
    main()
