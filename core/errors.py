"""One root for every error an operator or a customer is meant to read: :class:`SftpInboxError`.

Each module keeps its own error class (``ConfigError``, ``TenantError``, ``FeedError``,
``ClaimHeld``...), whose message is written for people and shown as is; all of them derive
from the root, so an entry point catches one type and anything else is a bug. Beneath the root,
three kinds say what the caller can do about it; ``sftpctl`` turns each into its exit code:

- :class:`UsageError`: the request is wrong (an argument, a setting, a name, a password, a feed
  file); fix it and try again.
- :class:`NotFound`: the thing named does not exist (a tenant, a feed, an outbox row).
- :class:`Conflict`: the request is fine but the present state forbids it (the tenant already
  exists, a run is working on the tenant, the row was already sent); wait or change the state first.

An error of none of these kinds (such as a file refused by the pipeline) means the work itself
failed. A class may be two kinds (``TenantNotFound`` is a ``TenantError``, which is a usage
error, and a ``NotFound``): the more specific one, not found or conflict, is the one that counts,
as :func:`kind_of` says. Module classes keep their historic Python base (``ValueError``,
``RuntimeError``) too, for callers that catch those. This module imports nothing of the project.
"""

from __future__ import annotations

__all__ = ["Conflict", "NotFound", "SftpInboxError", "UsageError", "kind_of"]


class SftpInboxError(Exception):
    """The root: an error whose message is meant for people; anything else is a bug."""


class UsageError(SftpInboxError):
    """The request itself is wrong: an argument, a setting, a name, a value."""


class NotFound(SftpInboxError):
    """What the request names does not exist."""


class Conflict(SftpInboxError):
    """The request is valid but the present state forbids it: already there, busy, too late."""


def kind_of(error: SftpInboxError) -> type[SftpInboxError]:
    """The kind that decides how ``error`` is reported: NotFound or Conflict before UsageError,
    the root for an error of no kind."""
    for kind in (NotFound, Conflict, UsageError):
        if isinstance(error, kind):
            return kind
    return SftpInboxError
