"""The one narrow interface from the front door to whatever processes uploads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.uploads import Upload


@dataclass(frozen=True)
class UploadCompleted:
    """A file the client finished and closed normally; it is already recorded in the state DB.

    ``local_path`` is where the file lies now, inside the tenant's ``in/``. ``kept`` is a second
    name of the very bytes that were hashed, outside the tenant's reach, so they need not be
    copied and hashed again: the listener may move it away (a rename, on the same file system)
    during its call; whatever is still there when the call returns is deleted.
    """

    upload: Upload
    local_path: Path
    kept: Path | None = None


UploadListener = Callable[[UploadCompleted], None]
"""Called on the event loop for every completed upload; it must not block (hand work off)."""
