"""The accepted-file rule, shared by the front door (at upload time) and the processor (again).

A file is accepted when its type is one of the allowed extensions (case-insensitive) and its name
has no "." apart from the one before the extension [invoca-sftp-signal-upload.txt].
"""

from __future__ import annotations

from collections.abc import Iterable


def upload_name_error(name: str, allowed_extensions: Iterable[str]) -> str | None:
    """Why ``name`` (a base name, no folders) is not an acceptable upload, or None if it is."""
    allowed = sorted({ext.lower() for ext in allowed_extensions})
    listing = ", ".join(ext.upper() for ext in allowed)
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        return f"{name!r}: file type must be {listing}"
    if extension.lower() not in allowed:
        return f"{name!r}: file type .{extension} is not accepted; use {listing}"
    if "." in stem:
        return f"{name!r}: the name may contain no '.' except before the extension"
    if any(ord(ch) < 32 or ch in "/\\" for ch in name):
        return f"{name!r}: the name contains a control character or a slash"
    return None
