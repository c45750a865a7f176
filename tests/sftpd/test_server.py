"""The listener serves SFTP and nothing else: no shell, no commands, no SCP, no tunnels; a shell
or a command is told so in one line, with a non-zero exit status."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from sftpd.server import SFTP_ONLY_EXIT_STATUS
from tests.conftest import TEST_PASSWORD
from tests.sftpd.commands import ssh
from tests.sftpd.conftest import TENANT, RunningServer, ServerFactory
from tests.support.clients import OpenSSHClient, asyncssh_connect


async def test_shell_commands_and_scp_are_refused_saying_why(server: RunningServer) -> None:
    async with asyncssh_connect(server.port, TENANT, TEST_PASSWORD) as conn:
        for command in ("id", "scp -t /in", None):
            result = await conn.run(command, encoding=None)
            assert result.exit_status == SFTP_ONLY_EXIT_STATUS, command
            assert b"this server offers SFTP only" in result.stderr, command
        result = await conn.run(subsystem="netconf", encoding=None)
        assert result.exit_status == SFTP_ONLY_EXIT_STATUS
        assert b"'netconf' is not available" in result.stderr
    assert list(server.inbox().iterdir()) == []


async def test_ssh_gets_one_line_saying_sftp_only(server: RunningServer, tmp_path: Path) -> None:
    client = OpenSSHClient(tmp_path, server.port)
    for command in ((), ("id",), ("-t", "ls")):
        run = await ssh(client, TENANT, TEST_PASSWORD, *command)
        assert run.returncode == SFTP_ONLY_EXIT_STATUS, (command, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert lines[-1].strip().startswith("sftpd: this server offers SFTP only"), run.stderr
        assert run.stdout == ""
        if "-t" not in command:
            assert len(lines) == 1, run.stderr


async def test_port_forwarding_is_refused(server: RunningServer) -> None:
    async with asyncssh_connect(server.port, TENANT, TEST_PASSWORD) as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.open_connection("127.0.0.1", server.port)
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", server.port)


async def test_port_zero_binds_a_free_port_and_close_stops_listening(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    port = server.port
    assert port > 0
    await server.server.close()
    with pytest.raises(OSError):
        async with asyncssh_connect(port, TENANT, TEST_PASSWORD):
            pass
