"""The in-flight folder's leftovers on a data dir several nodes may share (sftpd/vfs.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sftpd.vfs import IN_FLIGHT_DIR, KEPT_SUFFIX, TenantFileSystem

HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def in_flight_file(fs: TenantFileSystem, content: bytes = b"partial") -> tuple[str, Path]:
    name, path = fs.new_in_flight_path()
    path.write_bytes(content)
    return name, path


def test_an_upload_alive_in_another_process_is_left_and_a_dead_ones_file_removed(tmp_path: Path) -> None:
    fs = TenantFileSystem(tmp_path)
    try:
        _, alive = in_flight_file(fs)
        _, dead = in_flight_file(fs)
        other_node = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(alive)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert other_node.stdout is not None and other_node.stdout.readline() == "held\n"
            assert fs.clear_in_flight() == 1
            assert alive.exists() and not dead.exists()
        finally:
            other_node.communicate("", timeout=30)
        # Its holder gone (as after kill -9: the kernel drops the lock), it is a leftover.
        assert fs.clear_in_flight() == 1
        assert list((tmp_path / IN_FLIGHT_DIR).iterdir()) == []
    finally:
        fs.close()


def test_the_front_doors_own_in_flight_descriptor_holds_the_lock(tmp_path: Path) -> None:
    fs = TenantFileSystem(tmp_path)
    try:
        name, path = in_flight_file(fs)
        fd = fs.open_in_flight(name)
        try:
            assert fs.clear_in_flight() == 0 and path.exists()
        finally:
            os.close(fd)
        assert fs.clear_in_flight() == 1 and not path.exists()
    finally:
        fs.close()


def test_kept_names_stay_while_younger_than_asked(tmp_path: Path) -> None:
    fs = TenantFileSystem(tmp_path)
    try:
        with fs.in_flight():
            pass
        kept = tmp_path / IN_FLIGHT_DIR / f"0123456789abcdef{KEPT_SUFFIX}"
        kept.write_bytes(b"published bytes")
        assert fs.clear_in_flight(kept_for_seconds=3600) == 0 and kept.exists()
        assert fs.clear_in_flight() == 1 and not kept.exists()
    finally:
        fs.close()
