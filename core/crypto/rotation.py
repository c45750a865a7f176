"""Master key rotation: every file's data key wrapped by a new master key, no data re-encrypted.

The state of a rotation is the key files themselves, so a rotation that was killed is resumed by
running it again (:func:`rotate_master_key` does that on its own), whatever the step it died in:

1. The current key is copied to ``master-retiring.key`` (a new file, linked into place whole).
   From here on a rotation is under way and every reader loads both keys.
2. A new key replaces ``master.key`` (an atomic rename). Files written from now on use it.
3. Every encrypted file under the given roots whose header names the retiring key is rewrapped
   in place (:func:`core.crypto.sealed.rewrap`); passes repeat until one finds none left.
4. ``master-retiring.key`` is deleted: the old key is no longer needed, nor kept.

If the process dies in step 1 or 2 the retiring key equals ``master.key`` and step 2 is done
again; in step 3 the files already rewrapped are skipped. A process holding the old key in memory
(the daemon) would keep sealing new files with it: rotate with the daemon stopped, or have it
reload its keys before step 4.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.crypto.keys import (
    KEY_BYTES,
    MASTER_KEY_FILE,
    RETIRING_KEY_FILE,
    Keyring,
    MasterKey,
    MasterKeyError,
    read_key_file,
    sync_dir,
    write_key_file,
)
from core.crypto.sealed import MAGIC, TamperedFile, rewrap
from core.errors import Conflict
from core.logs import get_logger

log = get_logger(__name__)

ROTATION_LOCK_FILE = "rotation.lock"


class RotationBusy(Conflict):
    """Another process is rotating this master key; two at once could lose a new key."""


@dataclass
class RotationReport:
    """What a rotation did; ``tampered`` and ``foreign`` files were left as they were (neither
    is made less readable by the rotation: they could not be read before it either)."""

    old_key_id: str
    new_key_id: str
    resumed: bool
    rewrapped: int = 0
    already_current: int = 0
    tampered: list[Path] = field(default_factory=list)
    foreign: list[Path] = field(default_factory=list)


def rotation_in_progress(keys_dir: Path) -> bool:
    """Whether a rotation was started and not finished (both keys are then needed)."""
    return (keys_dir / RETIRING_KEY_FILE).exists()


def rotate_master_key(
    keys_dir: Path, roots: Iterable[Path], *, after_file: Callable[[Path], None] | None = None
) -> RotationReport:
    """Rotate the master key of ``keys_dir`` over every encrypted file under ``roots``, or finish
    the rotation a killed run left. ``after_file`` is called after each file is handled.

    One rotation at a time per keys dir (a lock on ``rotation.lock``; a second gets
    :class:`RotationBusy` and changes nothing).
    """
    with _rotation_lock(keys_dir):
        return _rotate(keys_dir, list(roots), after_file)


@contextmanager
def _rotation_lock(keys_dir: Path) -> Iterator[None]:
    if not keys_dir.is_dir():
        read_key_file(keys_dir / MASTER_KEY_FILE)  # the missing key's own message
    fd = os.open(keys_dir / ROTATION_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RotationBusy(f"a master key rotation is already running on {keys_dir}; wait for it") from None
        yield
    finally:
        os.close(fd)


def _rotate(keys_dir: Path, roots: list[Path], after_file: Callable[[Path], None] | None) -> RotationReport:
    master_path = keys_dir / MASTER_KEY_FILE
    retiring_path = keys_dir / RETIRING_KEY_FILE
    resumed = retiring_path.exists()
    if not resumed:
        _link_copy(read_key_file(master_path), retiring_path)
    retiring = read_key_file(retiring_path)
    current = read_key_file(master_path)
    if current.key_id == retiring.key_id:
        current = _replace_key(master_path)
    keyring = Keyring(current, retiring)
    report = RotationReport(retiring.key_id.hex(), current.key_id.hex(), resumed)
    log.info("masterkey.rotation.started", old_key_id=report.old_key_id, new_key_id=report.new_key_id, resumed=resumed)
    rewrapped: set[Path] = set()
    while _pass(roots, keyring, report, rewrapped, after_file):
        pass
    report.rewrapped = len(rewrapped)
    retiring_path.unlink()
    sync_dir(keys_dir)
    log.info(
        "masterkey.rotation.finished",
        old_key_id=report.old_key_id,
        new_key_id=report.new_key_id,
        rewrapped=report.rewrapped,
        tampered=len(report.tampered),
        foreign=len(report.foreign),
    )
    return report


def _pass(
    roots: list[Path],
    keyring: Keyring,
    report: RotationReport,
    rewrapped: set[Path],
    after_file: Callable[[Path], None] | None,
) -> bool:
    """One walk over the roots; True if it rewrapped a file (another pass is then due, for files
    a process still holding the old key wrote meanwhile). The last pass sets the report's lists."""
    found = False
    report.already_current = 0
    report.tampered.clear()
    report.foreign.clear()
    for path in _encrypted_files(roots):
        try:
            if rewrap(path, keyring, keyring.current):
                rewrapped.add(path)
                found = True
            elif path not in rewrapped:
                report.already_current += 1
        except TamperedFile as exc:
            report.tampered.append(path)
            log.warning("masterkey.rotation.tampered", path=str(path), error=str(exc))
        except MasterKeyError:
            report.foreign.append(path)
            log.warning("masterkey.rotation.foreign_key", path=str(path))
        except FileNotFoundError:
            continue  # deleted meanwhile (retention): nothing to keep readable
        if after_file is not None:
            after_file(path)
    return found


def _encrypted_files(roots: list[Path]) -> Iterator[Path]:
    """Regular files (not links) under ``roots`` that begin with the format's magic."""
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder, name)
                try:
                    if path.is_symlink() or not path.is_file():
                        continue
                    with open(path, "rb") as raw:
                        if raw.read(len(MAGIC)) != MAGIC:
                            continue
                except OSError:
                    continue
                yield path


def _link_copy(key: MasterKey, path: Path) -> None:
    """Write ``key``'s secret to ``path`` whole or not at all (a temporary file linked in)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    write_key_file(temporary, key.secret)
    try:
        os.link(temporary, path)
    finally:
        temporary.unlink()
    sync_dir(path.parent)


def _replace_key(master_path: Path) -> MasterKey:
    """A new random key put in place of ``master_path`` by one atomic rename."""
    temporary = master_path.with_name(f".{master_path.name}.{secrets.token_hex(4)}")
    write_key_file(temporary, secrets.token_bytes(KEY_BYTES))
    os.replace(temporary, master_path)
    sync_dir(master_path.parent)
    return read_key_file(master_path)
