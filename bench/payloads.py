"""Upload payloads: random bytes, so neither compression nor sparse-file tricks flatter anyone."""

from __future__ import annotations

import os
from pathlib import Path

CHUNK_BYTES = 1024 * 1024


def random_file(folder: Path, size: int) -> Path:
    """A file of ``size`` random bytes, written once per size and reused by every run."""
    path = folder / f"payload-{size}.bin"
    if path.exists() and path.stat().st_size == size:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            chunk = min(remaining, CHUNK_BYTES)
            handle.write(os.urandom(chunk))
            remaining -= chunk
    return path
