"""What the figures were measured on: they mean nothing without the machine beside them."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

GiB = 1024 ** 3
CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")


def describe(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Label → value, in the order a reader wants them."""
    facts = {
        "Date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": _cpu_model(),
        "Cores": str(os.cpu_count()),
        "RAM": _memory(),
        "Kernel": f"{platform.system()} {platform.release()}",
        "OS": _os_name(),
        "OpenSSH": _openssh_version(),
        "Python": platform.python_version(),
        "Packages": ", ".join(f"{name} {_version(name)}" for name in
                              ("asyncssh", "cryptography", "uvloop", "argon2-cffi", "psutil")),
    }
    facts.update(extra or {})
    return facts


def _cpu_model() -> str:
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib * 1024 / GiB:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "unknown")
    except OSError:
        return "unknown"


def _openssh_version() -> str:
    try:
        result = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    return (result.stderr or result.stdout).strip()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
