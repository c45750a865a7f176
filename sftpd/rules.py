"""The upload rules the front door enforces while a file arrives.

The name rule itself is shared with the processor (:mod:`core.filenames`); this module adds
what only matters during a transfer: temporary names that clients upload to before renaming
the finished file (WinSCP's ``NAME.filepart``, rclone's ``NAME.XXXX.partial``) and the size limit.
"""

from __future__ import annotations

from core.config import MiB, ServerSettings
from core.filenames import upload_name_error


class UploadRules:
    def __init__(self, settings: ServerSettings) -> None:
        self.max_bytes = settings.max_upload_bytes
        self._extensions = settings.allowed_extensions
        self._temporary_suffixes = tuple(suffix.lower() for suffix in settings.temporary_suffixes)

    def is_temporary(self, name: str) -> bool:
        """A name a client uses while uploading; the rules wait for the rename to a final name."""
        return name.lower().endswith(self._temporary_suffixes)

    def name_error(self, name: str) -> str | None:
        """Why a file may not be stored under ``name``, or None; temporary names always may."""
        if self.is_temporary(name):
            return None
        return upload_name_error(name, self._extensions)

    def too_large_message(self) -> str:
        return (
            f"upload refused: the file is larger than the limit of {self.max_bytes} bytes"
            f" ({self.max_bytes / MiB:g} MiB); the partial file was discarded"
        )
