"""The listener serves SFTP and nothing else: no shell, no commands, no SCP, no tunnels."""

from __future__ import annotations

import asyncssh
import pytest

from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import TENANT, RunningServer, ServerFactory
from tests.support.clients import asyncssh_connect


async def test_shell_commands_and_scp_are_refused(server: RunningServer) -> None:
    async with asyncssh_connect(server.port, TENANT, TEST_PASSWORD) as conn:
        for command in ("id", "scp -t /in", None):
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.run(command, check=True)


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
