"""Run sftp-inbox and OpenSSH's ``internal-sftp`` side by side and write ``docs/BENCHMARKS.md``.

Usage (as root, from the repository; ``bench/run.sh`` installs what is needed first)::

    python -m bench.compare [--quick] [--cases 1,2,...] [--runs N] [--output FILE]

Every case builds its rows independently: a case whose part is missing (say, the ingest package
is not there yet) shows ``n/a (reason)`` and the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable as for -m
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import end_to_end, processor, remote_pacing, sessions, transfers
from bench.clients import CIPHER, KEX, PINNED, AsyncsshClient, ClientError
from bench.context import BenchContext
from bench.errors import NotAvailable
from bench.machine import describe
from bench.openssh_server import private_sshd, sshd_version
from bench.our_server import our_server
from bench.plan import ALL_CASES, Plan, choose, parse_cases
from bench.procs import raise_open_file_limit
from bench.report import markdown_table, render, targets_table
from bench.runner import Measure, run_measure
from bench.stats import Row
from bench.targets import judge_all
from core.config import PasswordSettings

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPOSITORY / "docs" / "BENCHMARKS.md"
PASSWORD_BYTES = 18

CASES: dict[int, tuple[str, Callable[[BenchContext], list[Measure]]]] = {
    1: ("uploads: one big file, many 5 MB files in one session", transfers.case_1),
    2: ("many small files", transfers.case_2),
    3: ("concurrent clients", transfers.case_3),
    4: ("login time", sessions.case_4),
    5: ("memory of idle sessions", sessions.case_5),
    6: ("processor and embedded API", processor.case_6),
    7: ("end to end: upload, run, report", end_to_end.case_7),
    8: ("remote Signal API destination at its rate limit", remote_pacing.case_8),
}
OPENSSH_CASES = frozenset({1, 2, 3, 4, 5})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/run.sh",
                                     description="Benchmark sftp-inbox side by side with OpenSSH.")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and 2 runs, for development (figures are not comparable)")
    parser.add_argument("--cases", type=parse_cases, default=ALL_CASES, metavar="1,2,...",
                        help="cases to run (default: all): " +
                             "; ".join(f"{number} {title}" for number, (title, _) in CASES.items()))
    parser.add_argument("--runs", type=positive, metavar="N", help="runs per side (default 5, quick 2)")
    parser.add_argument("--output", type=Path, metavar="FILE",
                        help=f"write the Markdown here (default: {DEFAULT_OUTPUT.relative_to(REPOSITORY)} "
                             "for a full run of every case; otherwise only printed)")
    return parser


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = choose(args.quick, args.runs)
    output = args.output
    if output is None and not plan.quick and tuple(args.cases) == ALL_CASES:
        output = DEFAULT_OUTPUT
    rows, extra = asyncio.run(run_cases(plan, args.cases))
    verdicts = judge_all(rows, quick=plan.quick)
    command = "bench/run.sh" + ("".join(f" {arg}" for arg in (argv if argv is not None else sys.argv[1:])))
    document = render(rows, verdicts, describe(extra), method(plan), command.strip())
    print()
    print(targets_table(verdicts))
    print()
    print(markdown_table(rows))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(document, encoding="utf-8")
        print(f"\nwritten to {output}")
    return 0


async def run_cases(plan: Plan, cases: Sequence[int]) -> tuple[list[Row], dict[str, str]]:
    """Start the servers the cases need, run every case, stop the servers."""
    raise_open_file_limit()
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    rows: list[Row] = []
    extra: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="sftp-inbox-bench-") as scratch, ExitStack() as stack:
        context = BenchContext(plan, Path(scratch))
        try:
            context.ours = stack.enter_context(our_server(context.scratch / "ours", password,
                                                          plan.max_upload_bytes))
            extra["Our server"] = ("`python -m service.daemon serve` with the bench config of "
                                   "bench/our_server.py; " + _hashing())
        except NotAvailable as exc:
            context.ours_missing = f"our server: {exc}"
            _progress(context.ours_missing)
        if 3 in cases:
            try:
                context.ours_workers = stack.enter_context(our_server(
                    context.scratch / "ours-workers", password, plan.max_upload_bytes,
                    workers=transfers.WORKERS))
            except NotAvailable as exc:
                context.ours_workers_missing = f"our server with {transfers.WORKERS} workers: {exc}"
                _progress(context.ours_workers_missing)
        if OPENSSH_CASES.intersection(cases):
            extra["OpenSSH server"] = await start_openssh(context, stack, password)
        for case in cases:
            title, build = CASES[case]
            _progress(f"== case {case}: {title}")
            try:
                measures = build(context)
            except NotAvailable as exc:
                rows.append(Row(key=f"{case}.missing", case=case, title=title, variant="—", unit="—",
                                higher_is_better=True, peer_name="—", unavailable=str(exc)))
                _progress(f"case {case}: n/a ({exc})")
                continue
            for measure in measures:
                rows.append(await run_measure(measure, plan.runs))
    return rows, extra


async def start_openssh(context: BenchContext, stack: ExitStack, password: str) -> str:
    """Debian's default is UsePAM yes; fall back to shadow passwords where PAM cannot log in."""
    for use_pam in (True, False):
        attempt = ExitStack()
        try:
            endpoint = attempt.enter_context(private_sshd(context.scratch / "sshd", password, use_pam))
            await AsyncsshClient().login(endpoint, PINNED)
        except (NotAvailable, ClientError) as exc:
            attempt.close()
            context.openssh_missing = f"OpenSSH: {exc}"
            _progress(f"{context.openssh_missing} (UsePAM {'yes' if use_pam else 'no'})")
            continue
        stack.enter_context(attempt)
        context.openssh = endpoint
        return (f"{sshd_version()}, private `sshd -D -f CONFIG` (see bench/openssh_server.py), "
                f"UsePAM {'yes' if use_pam else 'no'}, `internal-sftp` in a ChrootDirectory")
    return f"not available: {context.openssh_missing}"


def _hashing() -> str:
    cost = PasswordSettings()
    return (f"argon2id m={cost.argon2_memory_kib} KiB, t={cost.argon2_time_cost}, "
            f"p={cost.argon2_parallelism} (the shipped default, OWASP's minimum)")


def method(plan: Plan) -> list[str]:
    sentences = [
        (f"{plan.runs} runs per row and side, alternating ours, peer, ours, peer, ...; each figure is the "
        "median with (min–max). Ratio = our median / the peer's median in the row's unit "
        "(for ms and MiB, lower is better)."),
        ("Same client against both servers: OpenSSH's `sftp` in batch mode (password through "
        f"SSH_ASKPASS) and asyncssh. *Pinned* rows force cipher `{CIPHER}` and key exchange `{KEX}` "
        "by client options; *server defaults* rows let each server negotiate what it prefers. Targets "
        "are judged on pinned rows."),
        ("CPU s: user + system seconds of everything the server ran during one run, read from a "
        "cgroup v2 `cpu.stat` of its own (so OpenSSH's exited per-login processes count; without "
        "cgroups, the process tree's times); median over runs."),
        ("Case 3 runs twice against our server: as shipped (one process), and a second daemon "
        "with `[server] workers = 2` (a supervisor and two processes accepting on one port, "
        "docs/workers.md), rows marked *2 workers*; both against the same OpenSSH."),
        ("Uploads are timed from connect to close, login included, as a customer's transfer is; every "
        "upload is checked on the server's disk afterwards, and a missing or short file is an error."),
        ("Memory: RSS summed over the server's process tree (OpenSSH: the listener plus two processes "
        "per session); the notes add PSS, which counts shared pages once."),
        ("Our server runs with its shipped settings except: the size limit raised for the big upload, "
        "brute-force thresholds and the API's and poster's rate limits out of reach. Every login is "
        "checked against the tenant's real argon2id hash, made by `sftpctl tenant add`."),
        ("Processor (case 6) runs in the bench process on files of bench/signal_files.py (0.3 % of "
        "rows spoiled on purpose; errors count only other rejects); its peer is a plain read of the "
        "same file with pandas, openpyxl or xlrd in a fresh interpreter, imports excluded, alternating "
        "in the same run. `python -m bench.processor_speed` prints the same, stage by stage."),
        ("Remote destination (case 8): `python -m bench.remote_pacing`, in the bench process: the "
        "ledger's API of a data dir of its own over HTTP on loopback, its rate limit on, and an inbox "
        "whose calls feed posts to it through `Ingest.run`; the figure is the sustained rate as a "
        "share of the limit (a window over the mean gap between request k and k + limit, at the "
        "server), the errors are its 429s and any answer but 201."),
    ]
    if plan.quick:
        sentences.append("**Quick run:** sizes and counts reduced; the absolute targets do not apply.")
    return sentences


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
