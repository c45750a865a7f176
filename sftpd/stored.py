"""What a tenant sees of a stored file: its plaintext, read through :class:`core.crypto.AtRest`.

Files are stored sealed (see :mod:`core.crypto.sealed`); a data dir older than encryption at
rest may still hold plaintext files, which are served as they are. Sizes come from a sealed
file's header and length, without a key, so listing a folder costs one small read a file.
A sealed file that fails authentication, or one the master key in place cannot open, is refused
with an SFTP failure that says so, and a log line for the operator: never served.

Files are always opened by the caller (a link-refusing walk, see :mod:`sftpd.vfs`) and handed
over as descriptors; nothing here opens a path.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from asyncssh import SFTPFailure

from core.crypto import AtRest, MasterKeyError, TamperedFile
from core.logs import get_logger
from sftpd.vfs import VirtualPath

log = get_logger(__name__)

# What cannot be served, whoever reads: a changed or damaged file, or a key that cannot open it.
Unreadable = (TamperedFile, MasterKeyError)


class Refused(SFTPFailure):
    """A stored file that cannot be served (see :func:`refusal`); OpenSSH's ``sftp`` shows only
    the status code, so the session writes the message to stderr too."""


def plaintext_size(fd: int, name: str) -> int:
    """The size a tenant sees of the regular file open at ``fd`` (closed here): the plaintext's.

    A sealed file whose header is too damaged to tell shows its stored size; reading it is
    refused anyway.
    """
    with open(fd, "rb", closefd=True) as raw:
        try:
            return AtRest.file_size(raw, name)
        except TamperedFile:
            return os.fstat(fd).st_size


def open_plaintext(at_rest: AtRest, fd: int, path: VirtualPath) -> BinaryIO:
    """The plaintext of the file open at ``fd`` (taken over), seekable; raises one of
    :data:`Unreadable` if it cannot be served."""
    return at_rest.open_fd(fd, str(path))


def plaintext_digest(at_rest: AtRest, fd: int, path: VirtualPath) -> tuple[int, str]:
    """The size and sha256 of the plaintext of the file open at ``fd`` (closed here), as the
    upload history records them. Blocking: run it in a thread."""
    return at_rest.digest_fd(fd, str(path))


def refusal(tenant: str, path: VirtualPath, exc: TamperedFile | MasterKeyError, doing: str) -> Refused:
    """The SFTP failure for a stored file that cannot be served, logged with the cause (the
    tenant sees the virtual path only, never the key file's)."""
    log.error("stored.unreadable", tenant=tenant, path=path.relative, doing=doing, reason=str(exc))
    if isinstance(exc, MasterKeyError):
        return Refused(
            f"{path}: the server cannot decrypt this file with its current key; it was not served"
            " (the operator has been told)"
        )
    return Refused(
        f"{path}: refused: the stored file fails its integrity check (it was changed or damaged"
        " after it was stored) and is not served"
    )
