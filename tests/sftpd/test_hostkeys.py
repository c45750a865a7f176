"""Host keys: made once with private modes, then the same on every start."""

from __future__ import annotations

import stat
from pathlib import Path

import asyncssh
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sftpd.hostkeys import HostKeyError, load_or_create_host_keys
from tests.conftest import TEST_PASSWORD
from tests.sftpd.conftest import TENANT, ServerFactory
from tests.support.clients import asyncssh_connect


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_generated_private_and_reused(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    first = load_or_create_host_keys(keys_dir)

    assert [key.get_algorithm() for key in first] == ["ssh-ed25519", "ssh-rsa"]
    rsa_key = first[1].pyca_key
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and rsa_key.key_size == 3072
    assert mode(keys_dir) == 0o700
    assert sorted(path.name for path in keys_dir.iterdir()) == [
        "ssh_host_ed25519_key",
        "ssh_host_ed25519_key.pub",
        "ssh_host_rsa_key",
        "ssh_host_rsa_key.pub",
    ]
    assert mode(keys_dir / "ssh_host_ed25519_key") == 0o600
    assert mode(keys_dir / "ssh_host_rsa_key") == 0o600

    again = load_or_create_host_keys(keys_dir)
    assert [key.public_data for key in again] == [key.public_data for key in first]


def test_a_key_readable_by_others_is_refused(tmp_path: Path, host_keys_template: Path) -> None:
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    key = keys_dir / "ssh_host_ed25519_key"
    key.write_bytes((host_keys_template / "ssh_host_ed25519_key").read_bytes())
    key.chmod(0o644)
    with pytest.raises(HostKeyError, match="chmod 600"):
        load_or_create_host_keys(keys_dir)


async def test_restart_keeps_the_host_keys(make_server: ServerFactory, tmp_path: Path) -> None:
    keys_dir = tmp_path / "fresh-keys"

    async def served_keys() -> list[bytes]:
        server = await make_server(server__keys_dir=keys_dir)
        keys = []
        try:
            for algorithm in ("ssh-ed25519", "rsa-sha2-256"):
                async with asyncssh_connect(
                    server.port, TENANT, TEST_PASSWORD, server_host_key_algs=[algorithm]
                ) as conn:
                    key = conn.get_server_host_key()
                    assert key is not None
                    keys.append(key.public_data)
        finally:
            await server.server.close()
        return keys

    first = await served_keys()
    assert first == await served_keys()
    assert first == [
        asyncssh.read_public_key(keys_dir / f"ssh_host_{kind}_key.pub").public_data
        for kind in ("ed25519", "rsa")
    ]


@pytest.mark.parametrize(
    ("algorithm", "key_type"),
    [("rsa-sha2-256", "ssh-rsa"), ("rsa-sha2-512", "ssh-rsa"), ("ssh-ed25519", "ssh-ed25519")],
)
async def test_strong_host_key_algorithms_are_served(
    make_server: ServerFactory, algorithm: str, key_type: str
) -> None:
    server = await make_server()
    async with asyncssh_connect(
        server.port, TENANT, TEST_PASSWORD, server_host_key_algs=[algorithm]
    ) as conn:
        key = conn.get_server_host_key()
        assert key is not None and key.get_algorithm() == key_type


async def test_rsa_with_sha1_signatures_is_not_offered(make_server: ServerFactory) -> None:
    server = await make_server()
    with pytest.raises(asyncssh.KeyExchangeFailed):
        async with asyncssh_connect(
            server.port, TENANT, TEST_PASSWORD, server_host_key_algs=["ssh-rsa"]
        ):
            pass
