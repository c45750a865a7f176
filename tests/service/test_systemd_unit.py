"""``etc/sftp-inbox.service``, the systemd unit README.md's "Running it as a service" installs.

Two checks, both run here: systemd's own parser (``systemd-analyze verify``, Debian's ``systemd``
package; it reports unknown keys and bad values) and, read with configparser, the hardening and
stop settings the README promises, since ``verify`` accepts a unit without any of them. The unit
is not started under systemd here: the container has no systemd as PID 1.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from core.config import Settings, load_settings

ROOT = Path(__file__).parents[2]
UNIT = ROOT / "etc" / "sftp-inbox.service"
EXEC = "/opt/sftp-inbox/venv/bin/sftpd"
# What verify says of a unit whose program is not installed, as it is not on a test machine.
NOT_INSTALLED = f"sftp-inbox.service: Command {EXEC} is not executable: No such file or directory"
CAPABILITY_LINES = "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"


def verify(unit_text: str, tmp_path: Path) -> list[str]:
    """What ``systemd-analyze verify`` reports of ``unit_text``, one entry a line."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: install Debian's systemd package")
    unit = tmp_path / "sftp-inbox.service"
    unit.write_text(unit_text)
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], check=False,
                            capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line != NOT_INSTALLED or Path(EXEC).exists()]


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(UNIT)
    return parser["Service"]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    assert verify(UNIT.read_text(), tmp_path) == []


def test_the_port_22_variant_in_its_comment_is_accepted_too(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert all(f"#   {line}" in text.splitlines() for line in CAPABILITY_LINES.splitlines())
    variant = text.replace("\nCapabilityBoundingSet=\n", "\n" + CAPABILITY_LINES)
    assert variant != text
    assert verify(variant, tmp_path) == []


def test_it_runs_the_installed_daemon_as_its_own_user_with_the_hardening() -> None:
    unit = service()
    assert unit["ExecStart"].startswith(f"{EXEC} serve --config /etc/sftp-inbox/sftpd.toml")
    assert unit["User"] == unit["Group"] == "sftp-inbox"
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes", "Restart": "on-failure", "KillSignal": "SIGTERM",
        "KillMode": "mixed",
    }
    assert {key: unit.get(key) for key in expected} == expected
    assert set(unit["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert unit["CapabilityBoundingSet"] == "" and "AmbientCapabilities" not in unit


def test_it_stops_after_the_drain_not_before() -> None:
    assert float(service()["TimeoutStopSec"]) > Settings().server.drain_seconds


def test_the_readme_settings_write_only_where_the_unit_allows(tmp_path: Path) -> None:
    """The data and key directories of the README's sftpd.toml are the unit's ReadWritePaths."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running it as a service", 1)[1].split("\n## ", 1)[0]
    snippet = re.search(r"```toml\n(.*?)```", section, re.S)
    assert snippet, "the README section shows /etc/sftp-inbox/sftpd.toml"
    config = tmp_path / "sftpd.toml"
    config.write_text(snippet.group(1))
    settings = load_settings(config)
    writable = service()["ReadWritePaths"].split()
    assert sorted(writable) == sorted([str(settings.data_dir), str(settings.server.keys_dir)])
    assert service()["WorkingDirectory"] == str(settings.data_dir)
