"""The upload rules the front door enforces while a file arrives.

The name rule itself is shared with the processor (:mod:`core.filenames`); this module adds
what only matters during a transfer: temporary names that clients upload to before renaming
the finished file (WinSCP's ``NAME.filepart``, rclone's ``NAME.XXXX.partial``), the size limit,
and the shape of paths: how deep folders nest below ``in/`` and how long a name or a whole path
may be. Those keep every stored path far inside what the OS accepts (4096 bytes for a path on
Linux, with the data folder in front), so no tenant can make a folder that the processor, a
backup or an operator's shell then fails on.
"""

from __future__ import annotations

from core.config import MiB, ServerSettings
from core.filenames import upload_name_error
from core.tenants import IN_DIR
from sftpd.vfs import MAX_NAME_BYTES, VirtualPath


class UploadRules:
    def __init__(self, settings: ServerSettings) -> None:
        self.max_bytes = settings.max_upload_bytes
        self._extensions = settings.allowed_extensions
        self._temporary_suffixes = tuple(suffix.lower() for suffix in settings.temporary_suffixes)
        self._max_depth = settings.max_folder_depth
        self._max_name_bytes = min(settings.max_name_bytes, MAX_NAME_BYTES)
        self._max_path_bytes = settings.max_path_bytes

    def path_error(
        self, path: VirtualPath, folder: bool, depth_below: int = 0, bytes_below: int = 0
    ) -> str | None:
        """Why a file (or, with ``folder``, a folder) may not be created at ``path``, or None.

        A folder moved with its contents brings ``depth_below`` levels of folders and paths up
        to ``bytes_below`` bytes longer than its own (see :func:`sftpd.vfs.folder_extent`).
        """
        name_bytes = len(path.name.encode("utf-8"))
        if name_bytes > self._max_name_bytes:
            return f"{path.name[:40]!r}...: names are limited to {self._max_name_bytes} bytes"
        # parts[0] is in/; a file's own name is not a folder level.
        depth = len(path.parts) - (1 if folder else 2) + depth_below
        if depth > self._max_depth:
            return (
                f"folders may be nested at most {self._max_depth} deep below {IN_DIR}/"
                f" (this would make {depth})"
            )
        length = len(str(path).encode("utf-8")) + bytes_below
        if length > self._max_path_bytes:
            return (
                f"paths are limited to {self._max_path_bytes} bytes (this would make {length})"
            )
        return None

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
