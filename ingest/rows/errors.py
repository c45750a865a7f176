"""Errors shared across the pipeline; their messages are shown to customers and operators as is."""

from __future__ import annotations

from core.errors import SftpInboxError, UsageError


class FileRejected(SftpInboxError):
    """The whole file cannot be processed; ``reason`` says why, in words a customer can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FeedError(ValueError, UsageError):
    """A feed definition is invalid; the message is ``"{source}:{line}: {reason}"``."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason
