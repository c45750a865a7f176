"""Password-only logins, brute-force lockouts and no user enumeration, against the real server."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time

import asyncssh
import paramiko
import pytest

from core.tenants import open_state
from sftpd.defender import Defender
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import OTHER_TENANT, TENANT, RunningServer, ServerFactory
from tests.support.clients import (
    OpenSSHClient,
    asyncssh_connect,
    asyncssh_sftp,
    paramiko_sftp,
    paramiko_transport,
)

WRONG_PASSWORD = "not-the-password-1234"
NEW_PASSWORD = "a-brand-new-password"


async def can_log_in(
    server: RunningServer, user: str = TENANT, password: str = TEST_PASSWORD, source: str = ""
) -> bool:
    """Log in with asyncssh, from ``source`` if given (any 127.x.y.z address works on Linux)."""
    options = {"local_addr": (source, 0)} if source else {}
    try:
        async with asyncssh_connect(server.port, user, password, **options):
            return True
    except asyncssh.PermissionDenied:
        return False


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, object]]:
    return [
        getattr(record, "fields", {}) for record in caplog.records if record.getMessage() == event
    ]


async def test_password_login_with_asyncssh_and_paramiko(server: RunningServer) -> None:
    async with asyncssh_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
        assert sorted(await sftp.listdir("/")) == ["in", "out"]

    def list_with_paramiko() -> list[str]:
        with paramiko_sftp(server.port, TENANT, TEST_PASSWORD) as sftp:
            return sorted(sftp.listdir("/"))

    assert await asyncio.to_thread(list_with_paramiko) == ["in", "out"]


async def test_wrong_password_is_refused_and_logged_without_it(
    server: RunningServer, openssh: OpenSSHClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert not await can_log_in(server, TENANT, WRONG_PASSWORD)
    run = await openssh.run(TENANT, WRONG_PASSWORD, ["ls"])
    assert run.returncode != 0 and "Permission denied" in run.stderr
    assert await can_log_in(server)

    failures = logged(caplog, "auth.failed")
    assert {(entry["user"], entry["source"]) for entry in failures} == {(TENANT, "127.0.0.1")}
    # asyncssh tries one password; OpenSSH tries password, then keyboard-interactive.
    assert [entry["method"] for entry in failures] == [
        "password",
        "password",
        "keyboard-interactive",
    ]
    assert logged(caplog, "auth.ok")[-1]["user"] == TENANT
    assert not [
        record
        for record in caplog.records
        if WRONG_PASSWORD in str(vars(record)) or TEST_PASSWORD in str(vars(record))
    ]


async def test_public_key_and_host_based_auth_are_refused(server: RunningServer) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        async with asyncssh_connect(
            server.port, TENANT, None, client_keys=[key], preferred_auth="publickey"
        ):
            pass

    def offered_methods() -> list[str]:
        with paramiko_transport(server.port) as transport:
            with pytest.raises(paramiko.BadAuthenticationType) as refused:
                transport.auth_none(TENANT)
            return sorted(refused.value.allowed_types)

    assert await asyncio.to_thread(offered_methods) == ["keyboard-interactive", "password"]


async def test_keyboard_interactive_is_a_single_password_prompt(server: RunningServer) -> None:
    prompts: list[tuple[str, bool]] = []

    def log_in(password: str) -> bool:
        def answer(title: str, instructions: str, asked: list[tuple[str, bool]]) -> list[str]:
            prompts.extend(asked)
            return [password] * len(asked)

        with paramiko_transport(server.port) as transport:
            try:
                transport.auth_interactive(TENANT, answer)
            except paramiko.AuthenticationException:
                return False
            return transport.is_authenticated()

    assert await asyncio.to_thread(log_in, TEST_PASSWORD)
    assert not await asyncio.to_thread(log_in, WRONG_PASSWORD)
    assert prompts == [("Password: ", False)] * 2


async def test_disabled_tenant_and_removed_login_cannot_log_in(server: RunningServer) -> None:
    server.tenants.set_enabled(TENANT, False)
    assert not await can_log_in(server)
    server.tenants.set_enabled(TENANT, True)
    assert await can_log_in(server)

    server.tenants.remove_login(TENANT)
    assert not await can_log_in(server)
    server.tenants.set_password(TENANT, NEW_PASSWORD)
    assert await can_log_in(server, TENANT, NEW_PASSWORD)


async def test_account_lockout_and_unlock_from_another_process(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(server.settings.defender.account_max_failures):
        assert not await can_log_in(server, TENANT, WRONG_PASSWORD)

    assert not await can_log_in(server), "a locked account must refuse even the right password"
    assert logged(caplog, "auth.locked")[0]["key"] == TENANT
    assert logged(caplog, "auth.refused")[0]["user"] == TENANT

    operator_db = open_state(server.settings.state_location)  # what sftpctl opens, in its own process
    try:
        operator = Defender(operator_db, server.settings.defender)
        locks = [(lock.kind, lock.key, lock.source, lock.failures) for lock in operator.lockouts()]
        assert locks == [("account", TENANT, "", 5), ("pair", TENANT, "127.0.0.1", 5)]
        assert operator.unlock_account(TENANT)
    finally:
        operator_db.close()
    assert await can_log_in(server)


async def test_failures_elsewhere_never_lock_the_tenant_out_of_its_usual_address(
    server: RunningServer, openssh: OpenSSHClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    usual = await openssh.run(TENANT, TEST_PASSWORD, ["ls /"])  # from 127.0.0.1
    assert usual.returncode == 0, usual.stderr
    attacker, stranger = "127.0.0.2", "127.0.0.3"
    for _ in range(server.settings.defender.account_max_failures + 1):
        assert not await can_log_in(server, TENANT, WRONG_PASSWORD, source=attacker)

    assert not await can_log_in(server, source=attacker), "the attacker's pair is locked"
    assert not await can_log_in(server, source=stranger), "the account is locked for strangers"
    again = await openssh.run(TENANT, TEST_PASSWORD, ["ls /"])
    assert again.returncode == 0, again.stderr
    assert "in" in again.stdout and "out" in again.stdout
    assert await can_log_in(server, OTHER_TENANT, source=attacker), "the address is not locked"
    assert [(lock.kind, lock.key, lock.source) for lock in server.defender.lockouts()] == [
        ("account", TENANT, ""),
        ("pair", TENANT, attacker),
    ]
    refusals = {
        (entry["source"], str(entry["reason"]).split()[0])
        for entry in logged(caplog, "auth.refused")
    }
    assert refusals == {(attacker, "pair"), (stranger, "account")}


async def test_an_operator_unblock_lifts_the_pair_lockout(make_server: ServerFactory) -> None:
    server = await make_server(defender__account_max_failures=100)
    attacker = "127.0.0.2"
    for _ in range(server.settings.defender.pair_max_failures):
        assert not await can_log_in(server, TENANT, WRONG_PASSWORD, source=attacker)
    assert not await can_log_in(server, source=attacker)
    assert await can_log_in(server), "only the pair is locked"
    assert server.defender.unlock_source(attacker)
    assert await can_log_in(server, source=attacker)


async def test_source_lockout_covers_every_account(make_server: ServerFactory) -> None:
    server = await make_server(defender__source_max_failures=3, defender__account_max_failures=50)
    for name in ("admin", "root", "nobody"):
        assert not await can_log_in(server, name, WRONG_PASSWORD)

    assert not await can_log_in(server)
    assert [(lockout.kind, lockout.key) for lockout in server.defender.lockouts()] == [
        ("source", "127.0.0.1")
    ]
    assert server.defender.unlock_source("127.0.0.1")
    assert await can_log_in(server)


async def test_unknown_user_costs_as_much_as_a_wrong_password(make_server: ServerFactory) -> None:
    server = await make_server(
        defender__account_max_failures=100, defender__source_max_failures=100
    )

    async def attempt(user: str) -> float:
        started = time.perf_counter()
        assert not await can_log_in(server, user, WRONG_PASSWORD)
        return time.perf_counter() - started

    known: list[float] = []
    unknown: list[float] = []
    for _ in range(5):
        known.append(await attempt(TENANT))
        unknown.append(await attempt("no-such-tenant"))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, (known, unknown)


async def test_each_failure_is_followed_by_a_delay(make_server: ServerFactory) -> None:
    delay = 0.5
    server = await make_server(defender__failure_delay_seconds=delay)
    started = time.perf_counter()
    assert not await can_log_in(server, TENANT, WRONG_PASSWORD)
    assert time.perf_counter() - started >= delay


async def test_connections_beyond_the_limit_are_refused(make_server: ServerFactory) -> None:
    server = await make_server(server__max_connections=1)
    async with asyncssh_connect(server.port, TENANT, TEST_PASSWORD):
        with pytest.raises((asyncssh.Error, OSError)):
            async with asyncssh_connect(server.port, TENANT, TEST_PASSWORD):
                pass
    await asyncio.sleep(0.1)
    assert await can_log_in(server)
