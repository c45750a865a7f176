"""What the product stores sealed at rest (reports, snapshots, spooled mail), read as a test that
looks at the disk must: through ``core.crypto.AtRest`` with the test's keys dir."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from core.config import Settings
from core.crypto import AtRest, load_keyring


def keys_of(where: Settings | Path) -> AtRest:
    """The keys of a test's settings (``[server] keys_dir``) or of a keys dir."""
    keys_dir = where.server.keys_dir if isinstance(where, Settings) else where
    return AtRest(keys_dir, load_keyring(keys_dir))


def stored_bytes(path: Path | str, where: Settings | Path) -> bytes:
    """The plaintext of the stored file at ``path``."""
    return keys_of(where).read_bytes(Path(path))


def stored_text(path: Path | str, where: Settings | Path, encoding: str = "utf-8") -> str:
    return stored_bytes(path, where).decode(encoding)


def stored_csv(path: Path | str, where: Settings | Path) -> list[list[str]]:
    """The rows of a stored report (UTF-8 with a byte-order mark)."""
    return list(csv.reader(io.StringIO(stored_text(path, where, "utf-8-sig"), newline="")))
