"""Two nodes as docs/cluster.md sets them up: one PostgreSQL, one shared data folder and keys
folder, a real HAProxy (PROXY protocol v2, round robin) in front of two ``sftpd serve`` processes.

Clients upload 200 files through the balancer while one node is killed (``kill -9``) part-way and
started again; an upload its node's death cut off is tried again by its client, as a customer's
script would. Then one ``sftpctl run`` processes everything, and the database must show each
upload processed once, each row posted once, one run per schedule slot, one retention pass
between the nodes, and a lockout made through one node holding on the other.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest

from core.db import Database, PostgresLocation
from sftpd.proxy_protocol import build
from tests.conftest import free_port
from tests.support.daemon import project_env, until_listening

PROXY = "127.0.0.2"  # HAProxy connects to the nodes from here, the one trusted proxy
CLIENT = "127.0.0.3"  # the uploading customers, as HAProxy sees them
TENANT, PASSWORD = "acme", "cluster-test-password-1"
UPLOADS = 200  # half calls files (in/calls/), half signals files matching them (in/)
ROWS_PER_FILE = 2
CLIENTS = 6
FILES_PER_CONNECTION = 8
KILL_AFTER, RESTART_AFTER = 40, 80  # uploads done when node B is killed, and started again
WAIT_SECONDS = 60.0

HAPROXY_CONFIG = """\
global
    maxconn 200
    stats socket {stats}
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend sftp
    bind 127.0.0.1:{front_port}
    default_backend nodes
backend nodes
    balance roundrobin
    option tcp-check
    tcp-check expect string SSH-2.0-
    server a 127.0.0.1:{port_a} send-proxy-v2 source {proxy} check check-send-proxy inter 200ms fall 1 rise 2
    server b 127.0.0.1:{port_b} send-proxy-v2 source {proxy} check check-send-proxy inter 200ms fall 1 rise 2
"""


@dataclass
class Node:
    name: str
    config: Path
    log: Path
    port: int
    process: subprocess.Popen[str] | None = None
    output: str = ""

    def start(self) -> None:
        with self.log.open("a") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.daemon", "serve", "--config", str(self.config), "--no-demo"],
                cwd=self.config.parent, stdout=subprocess.PIPE, stderr=stderr, text=True,
                env=project_env())
        self.output = until_listening(self.process, self.log.read_text)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.terminate()
        return self.process.wait(timeout=60)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]


def node_config(home: Path, shared: Path, url: str, port: int) -> Path:
    home.mkdir()
    config = home / "sftpd.toml"
    config.write_text(f"""\
data_dir = "{shared / 'var'}"
[server]
listen_port = {port}
keys_dir = "{shared / 'keys'}"
proxy_protocol = true
trusted_proxies = ["{PROXY}"]
[defender]
pair_max_failures = 2
failure_delay_seconds = 0.0
[schedule]
stable_seconds = 1.0
# An upload a node recorded (or published) but did not stage before it was killed is staged by
# a later scan of either node: soon here, within the test's wait (the default is every 60 s).
scan_interval_seconds = 1.0
[api]
listen_port = {free_port()}
[admin]
listen_port = {free_port()}
[database]
url = {json.dumps(url)}
""")
    return config


@pytest.fixture
def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        pytest.fail("Debian's haproxy is needed (scripts/test.sh installs it)")
    return found


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Node, Node]]:
    shared = tmp_path / "shared"
    shared.mkdir()
    nodes = []
    for name in ("a", "b"):
        port = free_port()
        nodes.append(Node(name, node_config(tmp_path / name, shared, postgres_url, port),
                          tmp_path / name / "daemon.log", port))
    try:
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def balancer(tmp_path: Path, haproxy_binary: str, cluster: tuple[Node, Node]) -> Iterator[int]:
    front_port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(front_port=front_port, port_a=cluster[0].port,
                                            port_b=cluster[1].port, proxy=PROXY,
                                            stats=tmp_path / "haproxy.sock"))
    with (tmp_path / "haproxy.log").open("wb") as log:
        process = subprocess.Popen([haproxy_binary, "-db", "-f", str(config)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield front_port
    finally:
        process.terminate()
        process.wait(timeout=30)


def nodes_up(stats: Path) -> set[str]:
    """The servers HAProxy's health checks find up now (its stats socket's ``show stat``)."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(stats))
            sock.sendall(b"show stat\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        return set()
    lines = answer.decode().splitlines()
    if not lines or not lines[0].startswith("# "):
        return set()
    names = lines[0][2:].split(",")
    rows = [dict(zip(names, line.split(","), strict=False)) for line in lines[1:] if line]
    return {row["svname"] for row in rows if row.get("pxname") == "nodes" and row.get("status") == "UP"
            and row["svname"] not in ("BACKEND", "FRONTEND")}


def files() -> dict[str, bytes]:
    """Every upload by its path: calls file i and signals file i share their two calls; every row
    unique (phone, start, customer id, partner id), calls an hour apart (beyond the match window)."""
    out: dict[str, bytes] = {}
    for i in range(UPLOADS // 2):
        calls = ["customer_id,call_start,call_end,calling_phone_number,agent_queue_assigned"]
        signals = ["call_start_time,calling_phone_number,name,partner_unique_id,sale_amount,description"]
        for row in range(ROWS_PER_FILE):
            n = i * ROWS_PER_FILE + row
            day, hour = divmod(n, 24)
            start = f"2026-{10 + day // 28:02d}-{1 + day % 28:02d}T{hour:02d}:05:00Z"
            end = start.replace(":05:00Z", ":15:00Z")
            phone = f"+1 888{n:07d}"
            calls.append(f"cust-{n:04d},{start},{end},{phone},Sales")
            signals.append(f"{start},{phone},Sale,order-{n:04d},{n}.50,row {n}")
        out[f"in/calls/calls-{i:03d}.csv"] = ("\n".join(calls) + "\n").encode()
        out[f"in/signals-{i:03d}.csv"] = ("\n".join(signals) + "\n").encode()
    return out


@dataclass
class Uploading:
    queue: asyncio.Queue[tuple[str, bytes]]
    done: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    milestones: dict[int, asyncio.Event] = field(default_factory=dict)
    # Cleared at RESTART_AFTER (B's start takes seconds, the rest of the uploads less), set
    # again once B is back: uploads then go on to both nodes.
    going: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.going.set()

    def reached(self, count: int) -> asyncio.Event:
        return self.milestones.setdefault(count, asyncio.Event())

    def finished_one(self) -> None:
        self.done += 1
        if self.done == RESTART_AFTER:
            self.going.clear()
        for count, event in self.milestones.items():
            if self.done >= count:
                event.set()


async def customer(front_port: int, password: str, host_key: asyncssh.SSHKey, work: Uploading) -> None:
    """Uploads from the queue through the balancer, a fresh connection every few files; an
    upload that fails (its node died under it) is tried again on a new connection."""
    while not work.queue.empty():
        batch = [work.queue.get_nowait() for _ in range(min(FILES_PER_CONNECTION, work.queue.qsize()))]
        while batch:
            try:
                async with asyncio.timeout(30), asyncssh.connect(
                    "127.0.0.1", front_port, local_addr=(CLIENT, 0), username=TENANT,
                    password=password, known_hosts=([host_key], [], []),
                    server_host_key_algs=["ssh-ed25519"], client_keys=None, agent_path=None,
                    preferred_auth="password",
                ) as conn, conn.start_sftp_client() as sftp:
                    while batch:
                        await work.going.wait()
                        path, body = batch[0]
                        async with sftp.open(path, "wb") as upload:
                            for offset in range(0, len(body), 64):  # several writes: killable mid-way
                                await upload.write(body[offset:offset + 64], offset)
                        batch.pop(0)
                        work.finished_one()
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                if isinstance(exc, asyncssh.HostKeyNotVerifiable):
                    raise
                work.failures.append((batch[0][0], repr(exc)))
                if len(work.failures) > 100:
                    raise AssertionError(f"uploads keep failing: {work.failures[-5:]}") from exc
                await asyncio.sleep(0.1)


def poll(what: str, check: Callable[[], object], timeout: float = WAIT_SECONDS) -> object:
    """``check()``'s first true answer, asked every 0.1 s; the test fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)


def sftpctl(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.sftpctl", "--config", str(config), *args],
                          input=stdin, check=False, cwd=config.parent, capture_output=True, text=True, timeout=120,
                          env=project_env())


def through_proxy(port: int, client: str, password: str) -> AbstractAsyncContextManager[
        asyncssh.SSHClientConnection]:
    """A connection straight to one node, with the PROXY header HAProxy would send for ``client``."""
    sock = socket.socket()
    sock.bind((PROXY, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(build("PROXY", (client, 40000), ("127.0.0.1", port)))
    return asyncssh.connect(sock=sock, username=TENANT, password=password, known_hosts=None,
                            client_keys=None, agent_path=None, preferred_auth="password")


async def login(port: int, client: str, password: str) -> None:
    async with through_proxy(port, client, password):
        pass


# Above the suite's 120 s: a staging wait that runs out (2 x WAIT_SECONDS) must still say why.
@pytest.mark.timeout(6 * WAIT_SECONDS)
async def test_two_nodes_behind_haproxy_share_the_work_and_lose_nothing(
    cluster: tuple[Node, Node], balancer: int, postgres_url: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    a, b = cluster
    # As docs/cluster.md: the schema made once, a tenant added, then both nodes started together
    # on the empty data dir (each may make the keys: one wins, both use it); each catches up
    # the latest slot at start, and one run is started for it.
    migrated = await asyncio.to_thread(sftpctl, a.config, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    added = await asyncio.to_thread(sftpctl, a.config, "tenant", "add", TENANT, "--email",
                                    "ops@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    state = Database(PostgresLocation(postgres_url, "state"))
    ledger = Database(PostgresLocation(postgres_url, "ledger"))
    try:
        poll("the catch-up run", lambda: state.query(
            "SELECT id FROM ingest_runs WHERE slot IS NOT NULL AND status <> 'running'"))

        stats = tmp_path / "haproxy.sock"
        poll("HAProxy sees both nodes", lambda: nodes_up(stats) == {"a", "b"})
        host_key = asyncssh.read_private_key(tmp_path / "shared" / "keys" / "ssh_host_ed25519_key")
        public = asyncssh.import_public_key(host_key.export_public_key())
        async with asyncssh.connect("127.0.0.1", balancer, local_addr=(CLIENT, 0), username=TENANT,
                                    password=PASSWORD, known_hosts=([public], [], []),
                                    client_keys=None, agent_path=None, preferred_auth="password") as conn, \
                conn.start_sftp_client() as sftp:
            await sftp.mkdir("in/calls")

        everything = files()
        work = Uploading(asyncio.Queue())
        long_path = "in/calls/calls-000.csv"
        for item in everything.items():
            if item[0] != long_path:
                work.queue.put_nowait(item)
        # An upload on node A stays open while B dies and starts again: B's start must leave
        # A's in-flight file alone (the folder is shared).
        body = everything[long_path]
        async with through_proxy(a.port, CLIENT, PASSWORD) as conn, conn.start_sftp_client() as sftp:
            upload = await sftp.open(long_path, "wb")
            await upload.write(body[:10], 0)
            customers = [asyncio.ensure_future(customer(balancer, PASSWORD, public, work))
                         for _ in range(CLIENTS)]
            await asyncio.wait_for(work.reached(KILL_AFTER).wait(), WAIT_SECONDS)
            b.kill()
            killed_at = work.done
            await asyncio.wait_for(work.reached(RESTART_AFTER).wait(), WAIT_SECONDS)
            b_log_before = len(b.events())
            await asyncio.to_thread(b.start)
            restarted_at = work.done
            await asyncio.to_thread(poll, "HAProxy sees B again", lambda: "b" in nodes_up(stats))
            work.going.set()
            await upload.write(body[10:], 10)
            await upload.close()
        work.finished_one()
        await asyncio.wait_for(asyncio.gather(*customers), WAIT_SECONDS)
        assert work.done == UPLOADS
        assert work.failures, "killing node B cut off no upload: the test did not test a retry"
        assert restarted_at < UPLOADS - 20, "the uploads were over before B was back"
        again = [e for e in b.events()[b_log_before:] if e.get("event") == "auth.ok"]
        assert again, "the balancer sent nothing to B once it was back"
        print(f"uploads done in {time.monotonic() - began:.1f} s; B killed after {killed_at} uploads,"
              f" back after {restarted_at}, {len(again)} logins on it after;"
              f" {len(work.failures)} tries failed and were repeated")

        # Every upload recorded and staged by the node that received it (records land after
        # the client's close is answered): the latest upload of each path is past 'received'.
        def staged() -> bool:
            rows = state.query("SELECT path, state FROM uploads WHERE tenant = ? ORDER BY id", (TENANT,))
            latest = {row["path"]: row["state"] for row in rows}
            return latest.keys() >= set(everything) and "received" not in latest.values()
        try:
            # Generous: a file a killed node published but never recorded waits for a scan that
            # finds it stable (a second here), and a scan for the claim a dead holder left.
            poll("every upload staged", staged, timeout=2 * WAIT_SECONDS)
        except AssertionError:
            rows = state.query("SELECT * FROM uploads WHERE tenant = ? ORDER BY id", (TENANT,))
            waiting = {row["path"] for row in rows if row["state"] == "received"}
            unknown = sorted(set(everything) - {row["path"] for row in rows})
            inbox = tmp_path / "shared" / "var" / "tenants" / TENANT
            claims = [dict(row) for row in state.query("SELECT * FROM ingest_claims")]
            raise AssertionError(
                f"not staged: {[dict(row) for row in rows if row['path'] in waiting]}; claims: {claims};"
                f" never recorded:"
                f" {[(path, (inbox / path).exists()) for path in unknown]};"
                f" A: {[e for e in a.events() if e.get('level') != 'info'][-10:]};"
                f" B: {[e for e in b.events() if e.get('level') != 'info'][-10:]}") from None

        run = await asyncio.to_thread(sftpctl, a.config, "run")
        assert run.returncode == 0, run.stdout + run.stderr

        # Each path: exactly one upload processed (an earlier try that was published before its
        # node died, and then sent again, is superseded, never processed; none is left behind
        # 'received' or 'staged').
        uploads = state.query("SELECT id, path, state FROM uploads WHERE tenant = ? ORDER BY id", (TENANT,))
        processed = Counter(row["path"] for row in uploads if row["state"] != "superseded")
        assert processed == Counter(set(everything)), {p: n for p, n in processed.items() if n != 1}
        assert {row["state"] for row in uploads if row["state"] != "superseded"} == {"posted"}
        kept = [row["id"] for row in uploads if row["state"] != "superseded"]
        reports = state.query("SELECT upload_id, report FROM ingest_staged WHERE upload_id IN "
                              f"({','.join(map(str, kept))})")
        assert sorted(row["upload_id"] for row in reports) == sorted(kept)
        assert all(row["report"] for row in reports)
        assert len({row["report"] for row in reports}) == UPLOADS
        for row in reports:
            assert (tmp_path / "shared" / "var" / "tenants" / TENANT / row["report"]).is_file()

        # Every row posted exactly once: one call and one call transaction per customer id, one
        # signal and one signal transaction per partner id.
        rows = UPLOADS // 2 * ROWS_PER_FILE
        calls = ledger.query("SELECT external_id, COUNT(*) AS n FROM calls GROUP BY external_id")
        assert {row["external_id"].split("|")[0]: row["n"] for row in calls} == {
            f"cust-{n:04d}": 1 for n in range(rows)}
        signals = ledger.query("SELECT partner_unique_id, COUNT(*) AS n FROM signals GROUP BY partner_unique_id")
        assert {row["partner_unique_id"]: row["n"] for row in signals} == {
            f"order-{n:04d}": 1 for n in range(rows)}
        kinds = ledger.query("SELECT transaction_type, COUNT(*) AS n FROM transactions GROUP BY transaction_type")
        assert {row["transaction_type"]: row["n"] for row in kinds} == {"call": rows, "signal": rows}

        # One run per slot, however many nodes started (and started again) meanwhile.
        slots = state.query("SELECT slot, COUNT(*) AS n FROM ingest_runs WHERE slot IS NOT NULL GROUP BY slot")
        assert slots and all(row["n"] == 1 for row in slots), slots
        # One retention pass between the two nodes started together, none by B started again
        # within the hour: the daemons prune once an hour between them.
        passes = state.query("SELECT finished_at FROM retention_passes")
        assert len(passes) == 1, passes
        skipped = [e for node in (a, b) for e in node.events() if e.get("event") == "retention.skipped"]
        assert len(skipped) == 2, skipped

        # Failed logins through node A lock the client out; node B refuses it meanwhile, and
        # still lets another client in.
        for _ in range(2):
            with pytest.raises(asyncssh.PermissionDenied):
                await login(a.port, "198.51.100.7", "wrong")
        with pytest.raises(asyncssh.PermissionDenied):
            await login(b.port, "198.51.100.7", PASSWORD)
        await login(b.port, "198.51.100.8", PASSWORD)

        # Node A, never killed, failed no upload and logged no error.
        errors = [e for e in a.events() if e.get("level") in ("error", "ERROR", "critical")]
        assert errors == []
    finally:
        state.close()
        ledger.close()
    print(f"cluster test took {time.monotonic() - began:.1f} s")
