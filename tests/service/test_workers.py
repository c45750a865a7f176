"""``[server] workers = 2``: a supervisor and two worker processes on one port (service/workers.py).

A real ``sftpd serve`` with real clients over loopback: OpenSSH's ``sftp`` and asyncssh. Which
worker served a login is read from the daemon's JSON log (each worker's lines name it). The
kernel spreads connections over the two listeners by a hash of the connection's addresses and
ports, so a test that needs both workers makes enough connections for one worker alone to be
out of the question (16: one chance in 32,768).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import asyncssh
import pytest

from core.config import ConfigError, ServerSettings, Settings, load_settings
from core.crypto import AtRest
from core.passwords import PasswordHasher
from core.tenants import TenantStore, open_state
from service.workers import worker_settings
from tests.conftest import TEST_PASSWORD, free_port
from tests.service.test_drain import EXIT_TIMEOUT_SECONDS, Daemon, query, start, stopped_at_exit
from tests.sftpd.test_proxy_protocol import CLIENT, PROXY, start_haproxy
from tests.support import postgres
from tests.support.clients import HOST, OpenSSHClient, asyncssh_connect

TENANT = "acme"
SPREAD = 16
PAIR_FAILURES = 3


def write_config(settings: Settings, drain_seconds: float = 5.0, server: str = "",
                 sessions: int = 2 * SPREAD) -> Path:
    """Two workers; the pair lockout after ``PAIR_FAILURES`` failures, with no delay after one;
    room for ``SPREAD`` sessions of the tenant at once, unless ``sessions`` says less."""
    tmp_path = settings.data_dir.parent
    config = tmp_path / "sftpd.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "var"}"\n'
        f'[server]\nlisten_port = {free_port()}\nkeys_dir = "{tmp_path / "keys"}"\n'
        f"workers = 2\ndrain_seconds = {drain_seconds}\nmax_sessions_per_tenant = {sessions}\n{server}"
        f"[defender]\npair_max_failures = {PAIR_FAILURES}\nfailure_delay_seconds = 0.0\n"
        f"[api]\nlisten_port = {free_port()}\n[admin]\nlisten_port = 0\n"
        + postgres.config_section(settings.database.url)
    )
    settings = load_settings(config)
    db = open_state(settings.state_location)
    try:
        TenantStore(db, settings.tenants_dir, PasswordHasher(settings.passwords)).add(
            TENANT, "ops@example.com", TEST_PASSWORD)
    finally:
        db.close()
    return config


def workers_of(daemon: Daemon, event: str, **fields: object) -> list[int]:
    """The worker of each ``event`` logged so far whose fields include ``fields``."""
    return [entry["worker"] for entry in daemon.events(event)
            if all(entry.get(key) == value for key, value in fields.items())]


def worker_pids(daemon: Daemon) -> dict[int, int]:
    """Each worker's pid now, from the supervisor's ``workers.started`` lines (the latest wins)."""
    return {entry["worker"]: entry["pid"] for entry in daemon.events("workers.started")}


async def openssh_logins(tmp_path: Path, port: int, count: int, extra: tuple[str, ...] = ()) -> list[int]:
    """``count`` OpenSSH ``sftp`` sessions at once, each listing ``/in``; their exit statuses."""
    work = tmp_path / "client"
    work.mkdir(exist_ok=True)
    client = OpenSSHClient(work, port)
    runs = await asyncio.gather(*(client.run(TENANT, TEST_PASSWORD, ["ls /in"], extra=extra)
                                  for _ in range(count)))
    return [run.returncode for run in runs]


async def test_logins_uploads_and_a_lockout_are_shared_by_both_workers(tmp_path: Path, settings: Settings) -> None:
    with stopped_at_exit(start(tmp_path, write_config(settings), "--no-demo")) as daemon:
        assert "(2 workers)" in daemon.output
        assert sorted(worker_pids(daemon)) == [0, 1]
        # Logins with OpenSSH's sftp, spread by the kernel over both workers.
        assert await openssh_logins(tmp_path, daemon.port, SPREAD) == [0] * SPREAD
        assert set(workers_of(daemon, "auth.ok", user=TENANT)) == {0, 1}

        # Uploads through either worker are recorded and staged in the one database.
        async def upload(i: int) -> None:
            async with asyncssh_connect(daemon.port, TENANT, TEST_PASSWORD) as conn, \
                    conn.start_sftp_client() as sftp, await sftp.open(f"/in/f{i}.csv", "wb") as f:
                await f.write(f"customer_id\nc{i}\n".encode())

        await asyncio.gather(*(upload(i) for i in range(SPREAD)))
        state = load_settings(daemon.config).state_location
        deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
        while (query(state, "SELECT count(*) FROM uploads WHERE state = 'staged'")[0][0] < SPREAD
               and time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        assert sorted(query(state, "SELECT path, state FROM uploads")) == sorted(
            (f"in/f{i}.csv", "staged") for i in range(SPREAD))

        # Failed logins, wherever they land, lock the pair for every worker.
        for _ in range(PAIR_FAILURES):
            with pytest.raises(asyncssh.PermissionDenied):
                async with asyncssh_connect(daemon.port, TENANT, "wrong password"):
                    pass
        assert daemon.events("auth.locked")
        refused_before = len(daemon.events("auth.refused"))
        assert await openssh_logins(tmp_path, daemon.port, SPREAD) == [255] * SPREAD
        assert set(workers_of(daemon, "auth.refused", user=TENANT)) == {0, 1}
        assert len(daemon.events("auth.refused")) - refused_before >= SPREAD
        # Only worker 0 runs the schedule: the catch-up run happened once.
        assert query(state, "SELECT count(*) FROM ingest_runs")[0][0] == 1
        assert set(workers_of(daemon, "ingest.run_started")) == {0}
        daemon.signal()
        assert daemon.wait() == 0


@pytest.mark.parametrize("victim", [0, 1])
async def test_a_killed_worker_is_restarted_and_logins_go_on(tmp_path: Path, settings: Settings, victim: int) -> None:
    """Worker 0 holds the schedule and the API too: it comes back like any other."""
    with stopped_at_exit(start(tmp_path, write_config(settings), "--no-demo")) as daemon:
        before = worker_pids(daemon)
        os.kill(before[victim], signal.SIGKILL)
        deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
        while worker_pids(daemon)[victim] == before[victim] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        after = worker_pids(daemon)
        assert after[victim] != before[victim] and after[1 - victim] == before[1 - victim]
        assert daemon.events("workers.died")[0]["status"] == -signal.SIGKILL
        while len(daemon.events("sftpd.listening")) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await openssh_logins(tmp_path, daemon.port, SPREAD) == [0] * SPREAD
        assert set(workers_of(daemon, "auth.ok", user=TENANT)) == {0, 1}
        daemon.signal()
        assert daemon.wait() == 0


async def test_a_tenants_session_cap_holds_across_workers_and_a_killed_workers_places_are_freed(
    tmp_path: Path, settings: Settings,
) -> None:
    """Counted in each worker's memory, the cap of 2 let the tenant hold up to 4 sessions."""
    cap = 2

    async def log_in_until_refused(stack: contextlib.AsyncExitStack, tries: int) -> tuple[int, int]:
        held = refused = 0
        for _ in range(tries):
            try:
                await stack.enter_async_context(asyncssh_connect(daemon.port, TENANT, TEST_PASSWORD))
                held += 1
            except asyncssh.DisconnectError as exc:
                assert f"{TENANT} already has {cap} sessions open" in exc.reason
                refused += 1
        return held, refused

    with stopped_at_exit(start(tmp_path, write_config(settings, sessions=cap), "--no-demo")) as daemon:
        async with contextlib.AsyncExitStack() as stack:
            assert await log_in_until_refused(stack, SPREAD) == (cap, SPREAD - cap)
            assert set(workers_of(daemon, "auth.ok", user=TENANT)) == {0, 1}
            assert set(workers_of(daemon, "connection.refused", limit="max_sessions_per_tenant")) == {0, 1}
            # Both workers die with the sessions they hold (kill -9: no goodbye to the database);
            # their places are free as soon as new workers listen, not when the lease runs out.
            before = worker_pids(daemon)
            for pid in before.values():
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
            while len(daemon.events("sftpd.listening")) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert set(worker_pids(daemon).values()).isdisjoint(before.values())
        async with contextlib.AsyncExitStack() as stack:
            assert await log_in_until_refused(stack, cap + 1) == (cap, 1)
        state = load_settings(daemon.config).state_location
        while query(state, "SELECT count(*) FROM sftpd_sessions")[0][0] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # each row is removed as its worker sees the logout
        assert query(state, "SELECT count(*) FROM sftpd_sessions")[0][0] == 0
        daemon.signal()
        assert daemon.wait() == 0


async def test_sigterm_drains_every_worker(tmp_path: Path, settings: Settings) -> None:
    """Uploads open on any worker when the supervisor gets SIGTERM are finished by their
    clients within the window and published; each worker logs its drain, all exit 0."""
    first, second = b"customer_id\n", b"c1\n"
    with stopped_at_exit(start(tmp_path, write_config(settings, drain_seconds=20), "--no-demo")) as daemon:
        conns = [await asyncssh.connect(HOST, daemon.port, username=TENANT, password=TEST_PASSWORD,
                                        known_hosts=None, client_keys=None, agent_path=None,
                                        preferred_auth="password") for _ in range(SPREAD)]
        try:
            files = []
            for i, conn in enumerate(conns):
                sftp = await conn.start_sftp_client()
                upload = await sftp.open(f"/in/d{i}.csv", "wb")
                await upload.write(first)
                files.append(upload)
            daemon.signal()
            deadline = time.monotonic() + EXIT_TIMEOUT_SECONDS
            while len(daemon.events("sftpd.draining")) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            for upload in files:
                await upload.write(second, len(first))
                await upload.close()
        finally:
            for conn in conns:
                conn.close()
        assert daemon.wait() == 0
    drained = daemon.events("daemon.drained")
    assert sorted(entry["worker"] for entry in drained) == [0, 1]
    assert sorted(name for entry in drained for name in entry["uploads_finished"]) == sorted(
        f"{TENANT}:/in/d{i}.csv" for i in range(SPREAD))
    assert set(workers_of(daemon, "auth.ok", user=TENANT)) == {0, 1}
    at_rest = AtRest.load(tmp_path / "keys", tmp_path / "var", create=False)
    for i in range(SPREAD):
        assert at_rest.read_bytes(tmp_path / f"var/tenants/{TENANT}/in/d{i}.csv") == first + second
    assert daemon.events("workers.stopped")[0]["exit_codes"] == [0, 0]


def test_each_worker_takes_a_share_of_the_connections_and_whole_per_source_caps() -> None:
    """The tenant's cap stays whole too: it is counted in the database, across workers."""
    server = ServerSettings(workers=3, max_connections=1000, max_connections_per_source=100,
                            max_prelogin_per_source=20, max_sessions_per_tenant=10)
    shared = worker_settings(Settings(server=server)).server
    assert (shared.max_connections, shared.max_connections_per_source, shared.max_prelogin_per_source,
            shared.max_sessions_per_tenant) == (334, 100, 20, 10)
    one = Settings(server=ServerSettings(max_connections=1000))
    assert worker_settings(one) is one


def test_workers_need_a_fixed_port_and_a_sane_count() -> None:
    with pytest.raises(ConfigError, match="name a port"):
        ServerSettings(workers=2, listen_port=0)
    with pytest.raises(ConfigError, match="workers"):
        ServerSettings(workers=-1)
    assert ServerSettings(workers=0).worker_count == min(os.cpu_count() or 1, 4)
    assert ServerSettings(workers=0, listen_port=2222).worker_count >= 1


async def test_behind_haproxy_every_worker_reads_the_proxy_header(tmp_path: Path, settings: Settings) -> None:
    """PROXY protocol v2 per worker: HAProxy's connections, spread over both, name the client."""
    proxied = f'proxy_protocol = true\ntrusted_proxies = ["{PROXY}"]\n'
    with stopped_at_exit(start(tmp_path, write_config(settings, server=proxied), "--no-demo")) as daemon:
        haproxy, front_port = await start_haproxy(tmp_path, daemon.port)
        try:
            statuses = await openssh_logins(tmp_path, front_port, SPREAD, ("-o", f"BindAddress={CLIENT}"))
        finally:
            haproxy.terminate()
            await haproxy.wait()
        assert statuses == [0] * SPREAD
        logins = [entry for entry in daemon.events("auth.ok") if entry["user"] == TENANT]
        assert {entry["source"] for entry in logins} == {CLIENT}
        assert {entry["worker"] for entry in logins} == {0, 1}
        daemon.signal()
        assert daemon.wait() == 0
