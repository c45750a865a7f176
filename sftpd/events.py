"""The one narrow interface from the front door to whatever processes uploads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
"""Called for every completed upload, in upload order, on the front door's recorder thread, never
the event loop: it may block for short work (a rename), which holds up only later records."""

FeedFolders = Callable[[str], Sequence[str]]
"""The names of a tenant's feed folders (``in/<feed>/``): the only sub-folders of ``in/`` whose
files the ingest side takes. Blocking (it may read a database): called in a worker thread."""
