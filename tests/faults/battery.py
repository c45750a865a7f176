"""The fault battery: ``kill -9`` at random points of every phase, then count what was lost or doubled.

Each trial starts from an empty data dir and sends the same two files (calls, then signals with one
row the API must refuse) through the real programs:

- ``upload`` and ``staging``: a real daemon takes the uploads from an asyncssh client and is
  killed while they arrive, or just after the client saw them complete (while they are recorded
  and staged). The daemon is started again, the client sends again whatever it did not see
  complete, as a customer would, and the daemon is stopped the ordinary way.
- ``processing``, ``delivery`` and ``reporting``: ``sftpctl run`` (which serves the embedded API
  itself, the daemon being down) is killed after a random progress event of that phase, plus a
  random few milliseconds.

Then ``sftpctl run`` finishes the work, and the trial counts, against what the files say: calls and
signals missing from the ledger or recorded twice (a second call row, a second signal transaction),
published uploads whose bytes are not a file the client sent, finished files without exactly one
report, and files needing a mail not named in exactly one message. Every count must be 0.

``python -m tests.faults.battery --trials 100`` runs the long form (trials spread over the phases)
and prints one line per phase; ``tests/faults/test_battery.py`` runs a short form in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import hashlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from tests.conftest import free_port
from tests.support.at_rest import stored_bytes
from tests.support.clients import asyncssh_sftp
from tests.support.daemon import Daemon, project_env, start_daemon

PHASES = ("upload", "staging", "processing", "delivery", "reporting")
TENANT = "demo"
CALLS_PATH = "in/calls/calls.csv"
SIGNALS_PATH = "in/signals.csv"
ROWS = 800  # at most 839: one row a minute from 10:00
BATCH_ROWS = 500  # two batches a file, so the embedded ledger's children write them
BAD_ROW_ID = "bad"
RUN_TIMEOUT_SECONDS = 120


def calls_file(rows: int = ROWS) -> bytes:
    lines = ["customer_id,call_start,call_end,calling_phone_number,agent_queue_assigned"]
    for n in range(rows):
        lines.append(f"cust-{n},{_start(n)},{_start(n, 600)},+1 888555{n:04d},Sales")
    return ("\n".join(lines) + "\n").encode()


def signals_file(rows: int = ROWS) -> bytes:
    lines = ["call_start_time,calling_phone_number,name,partner_unique_id,sale_amount,description"]
    for n in range(rows):
        lines.append(f"{_start(n)},+1 888555{n:04d},Sale,order-{n},{n}.99,plan {n}")
    lines.append(f"{_start(0)},+1 8885550000,Sale,{BAD_ROW_ID},12.345,three decimals")
    return ("\n".join(lines) + "\n").encode()


def _start(n: int, plus: int = 0) -> str:
    seconds = n * 60 + plus
    return f"2026-11-20T{10 + seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"


FILES = {CALLS_PATH: calls_file(), SIGNALS_PATH: signals_file()}


@dataclass
class Tally:
    """What one trial (or a phase's trials together) found wrong; every field must stay 0."""

    lost_rows: int = 0
    duplicated_rows: int = 0
    foreign_uploads: int = 0
    missing_reports: int = 0
    duplicated_reports: int = 0
    missing_mails: int = 0
    duplicated_mails: int = 0

    def add(self, other: Tally) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    @property
    def clean(self) -> bool:
        return not any(getattr(self, item.name) for item in fields(self))

    def line(self) -> str:
        return ", ".join(f"{item.name.replace('_', ' ')} {getattr(self, item.name)}" for item in fields(self))


@dataclass
class Trial:
    phase: str
    seed: int
    killed_after: str = ""
    tally: Tally = field(default_factory=Tally)
    work: Workspace | None = None


class Workspace:
    """One trial's folder: config (no rate limits, instant scans), data dir, ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port, self.api_port = free_port(), free_port()
        self.config = root / "sftpd.toml"
        self.config.write_text(
            f'data_dir = "{root / "var"}"\n'
            f"[server]\nlisten_port = {self.port}\n"
            f'keys_dir = "{root / "keys"}"\n'
            f"[api]\nlisten_port = {self.api_port}\nrate_limit_requests = 1000000\n"
            f"[post]\nrate_limit_requests = 1000000\nbackoff_base_seconds = 0.05\nembedded_batch_rows = {BATCH_ROWS}\n"
            "[schedule]\nstable_seconds = 0.0\nscan_interval_seconds = 0.2\n"
            "[defender]\nfailure_delay_seconds = 0.0\n"
        )
        self.data_dir = root / "var"

    def sftpctl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.sftpctl", "--config", str(self.config), *args],
            cwd=self.root, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS,
            env=project_env(), input=stdin, check=False,
        )

    def start_run(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "service.sftpctl", "--config", str(self.config), "run"],
            cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=project_env(),
        )

    def daemon(self) -> Daemon:
        return start_daemon(self.root, self.port, self.api_port, "--config", str(self.config))

    @property
    def tenant_root(self) -> Path:
        return self.data_dir / "tenants" / TENANT


async def upload(port: int, password: str, paths: list[str]) -> list[str]:
    """Upload ``paths`` one after another; those the client saw complete, in order."""
    done: list[str] = []
    try:
        async with asyncssh_sftp(port, TENANT, password) as sftp:
            for path in paths:
                folder = path.rpartition("/")[0]
                if folder != "in" and not await sftp.exists(folder):
                    await sftp.mkdir(folder)
                async with sftp.open(path, "wb") as remote:
                    data = FILES[path]
                    for start in range(0, len(data), 8192):
                        await remote.write(data[start:start + 8192], start)
                done.append(path)
    except Exception as exc:  # noqa: BLE001 - the server was killed: whatever the client says
        failure = f"{type(exc).__name__}: {exc}"
        assert failure  # the client's view of it does not matter; what it saw complete does
    return done


async def front_door_trial(work: Workspace, phase: str, rng: random.Random) -> str:
    """Kill the daemon during the uploads, or just after them; send again what did not complete."""
    daemon = work.daemon()
    password = daemon.demo_password
    assert password, daemon.output
    paths = [CALLS_PATH, SIGNALS_PATH]
    sending = asyncio.create_task(upload(work.port, password, paths))
    if phase == "upload":
        await asyncio.sleep(rng.uniform(0.0, 0.25))
        done: list[str] = []
    else:
        done = await sending
        await asyncio.sleep(rng.uniform(0.0, 0.05))
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait()
    if phase == "upload":
        done = await sending
    killed_after = f"{len(done)} of {len(paths)} uploads complete"
    daemon = work.daemon()
    try:
        rest = [path for path in paths if path not in done]
        if rest:
            assert await upload(work.port, password, rest) == rest
    finally:
        assert daemon.stop() == 0
    return killed_after


def pipeline_trial(work: Workspace, phase: str, rng: random.Random) -> str:
    """Put the files in ``in/`` as a finished upload would, then kill ``sftpctl run`` mid-phase."""
    added = work.sftpctl("tenant", "add", TENANT, "--email", "demo@example.com", "--password-stdin",
                         stdin="a-long-password-for-the-battery\n")
    assert added.returncode == 0, added.stderr
    for path, data in FILES.items():
        target = work.tenant_root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    events = {
        "processing": ("file.started", 2, 0.15),
        # Delivery into the embedded ledger takes a fraction of a second: kill at a random moment of it.
        "delivery": ("post.started", 1, 0.4),
        "reporting": ("file.done", 2, 0.01),
    }
    wanted, count, jitter = events[phase]
    nth = rng.randrange(count)
    run = work.start_run()
    assert run.stdout is not None
    seen = 0
    killed_after = "the run's end"
    for line in run.stdout:
        if line.startswith(wanted):
            if seen == nth:
                time.sleep(rng.uniform(0.0, jitter))
                killed_after = f"{wanted} #{nth + 1} + a few ms"
                break
            seen += 1
    run.send_signal(signal.SIGKILL)
    run.wait()
    return killed_after


def finish(work: Workspace) -> None:
    """Let an ordinary run complete whatever the killed one left."""
    completed = work.sftpctl("run")
    assert completed.returncode in (0, 1), completed.stdout + completed.stderr


def count(work: Workspace) -> Tally:
    """What the ledger, the upload history, ``out/`` and the mail spool say, against the files."""
    tally = Tally()
    ledger = sqlite3.connect(work.data_dir / "ledger.db")
    try:
        calls = Counter(row[0] for row in ledger.execute(
            "SELECT external_id FROM calls WHERE tenant = ?", (TENANT,)))
        signals = Counter(row[0] for row in ledger.execute(
            "SELECT s.partner_unique_id FROM signals s JOIN calls c ON c.id = s.call_id WHERE c.tenant = ?",
            (TENANT,)))
        transactions = Counter(row[0] for row in ledger.execute(
            "SELECT transaction_type FROM transactions WHERE tenant = ?", (TENANT,)))
    finally:
        ledger.close()
    expected_calls = {f"cust-{n}|{_start(n).replace('Z', '.000Z')}" for n in range(ROWS)}
    expected_signals = {f"order-{n}" for n in range(ROWS)}
    tally.lost_rows = len(expected_calls - set(calls)) + len(expected_signals - set(signals))
    tally.duplicated_rows = (
        sum(n - 1 for n in calls.values()) + sum(n - 1 for n in signals.values())
        + len(set(calls) - expected_calls) + len(set(signals) - expected_signals)
        + max(0, transactions["signal"] - ROWS) + max(0, transactions["call"] - ROWS)
    )
    listed = work.sftpctl("uploads", TENANT, "--json")
    assert listed.returncode == 0, listed.stderr
    uploads = json.loads(listed.stdout)
    digests = {hashlib.sha256(data).hexdigest() for data in FILES.values()}
    for item in uploads:
        sha = _upload_sha(work, item["id"])
        if sha not in digests:
            tally.foreign_uploads += 1
    finished = [item for item in uploads if item["state"] in ("posted", "partly failed", "failed", "rejected")]
    recorded = [item["report"] for item in finished if item["report"]]
    on_disk = {str(path) for path in (work.tenant_root / "out").rglob("*-report.csv")}
    tally.missing_reports = len(finished) - len([path for path in recorded if path in on_disk])
    tally.duplicated_reports = len(on_disk - set(recorded))
    needs_mail = [item for item in finished if item["state"] != "posted"]
    keys = work.data_dir.parent / "keys"  # mail is sealed at rest
    mails = [email.message_from_bytes(stored_bytes(path, keys)) for path in (work.data_dir / "mail").glob("*.eml")]
    for item in needs_mail:
        name = Path(item["report"] or "").name
        mentions = sum(1 for mail in mails if any(part.get_filename() == name for part in mail.walk()))
        tally.missing_mails += mentions == 0
        tally.duplicated_mails += max(0, mentions - 1)
    return tally


def _upload_sha(work: Workspace, upload_id: int) -> str:
    state = sqlite3.connect(work.data_dir / "state.db")
    try:
        row = state.execute("SELECT sha256 FROM uploads WHERE id = ?", (upload_id,)).fetchone()
    finally:
        state.close()
    return str(row[0]) if row else ""


def run_trial(root: Path, phase: str, seed: int) -> Trial:
    rng = random.Random(seed)
    work = Workspace(root)
    trial = Trial(phase, seed, work=work)
    if phase in ("upload", "staging"):
        trial.killed_after = asyncio.run(front_door_trial(work, phase, rng))
    else:
        trial.killed_after = pipeline_trial(work, phase, rng)
    finish(work)
    trial.tally = count(work)
    return trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trials", type=int, default=100, help="trials in all, spread over the phases")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phases", default=",".join(PHASES))
    args = parser.parse_args(argv)
    phases = args.phases.split(",")
    totals = {phase: Tally() for phase in phases}
    trials = Counter[str]()
    with tempfile.TemporaryDirectory(prefix="faults-") as folder:
        for n in range(args.trials):
            phase = phases[n % len(phases)]
            trial = run_trial(Path(folder) / f"trial-{n}", phase, args.seed * 100_003 + n)
            totals[phase].add(trial.tally)
            trials[phase] += 1
            if not trial.tally.clean:
                print(f"trial {n} ({phase}, seed {trial.seed}, killed after {trial.killed_after}):"
                      f" {trial.tally.line()}", flush=True)
    for phase in phases:
        print(f"{phase:<11} {trials[phase]:>3} trials: {totals[phase].line()}")
    return 0 if all(tally.clean for tally in totals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
