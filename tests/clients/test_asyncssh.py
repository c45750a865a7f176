"""asyncssh's SFTP client (the library Python scripts reach for): put and get of each size."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest

from tests.clients.checks import assert_same_bytes, assert_uploaded_once
from tests.clients.conftest import CLIENT_TIMEOUT_SECONDS, HOST, SIZES, TENANT, ServerThread
from tests.conftest import TEST_PASSWORD


async def transfer(
    server: ServerThread, known_hosts: Path, local: Path, remote: str, back: Path
) -> None:
    async with asyncssh.connect(
        HOST, server.port, username=TENANT, password=TEST_PASSWORD, known_hosts=str(known_hosts),
        client_keys=None, agent_path=None, preferred_auth="password",
    ) as connection, connection.start_sftp_client() as sftp:
        await sftp.put(local, remote)
        await sftp.get(remote, back)


@pytest.mark.parametrize("label", SIZES)
def test_put_then_get(
    label: str, server: ServerThread, known_hosts: Path, payloads: dict[str, Path], tmp_path: Path
) -> None:
    remote = f"in/asyncssh-{label}.csv"
    back = tmp_path / "back.csv"

    asyncio.run(asyncio.wait_for(
        transfer(server, known_hosts, payloads[label], f"/{remote}", back), CLIENT_TIMEOUT_SECONDS
    ))

    assert_uploaded_once(server, remote, payloads[label])
    assert_same_bytes(back, payloads[label])
