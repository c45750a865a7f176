"""Errors in the Signal API's shape: ``{"errors": {"class": ..., "invalid_data": ...}}``.

The ``class`` names and the messages the document spells out are kept word for word, because
clients written against Invoca match on them.
"""

from __future__ import annotations

from typing import Any

NO_SEARCH_MESSAGE = "Validation failed: transaction_id or start_time_t must be present"
# Invoca's words, for API clients that match on them. A customer reading a report has no such
# documentation: ingest.reports.CUSTOMER_TEXTS puts what to check in its place there (a test in
# tests/ingest/test_reports.py keeps the two equal).
NO_CALL_MESSAGE = "No call found. Please refer to the documentation."
NO_PERMISSION_MESSAGE = "You do not have permissions to perform the requested operation."


class ApiError(Exception):
    """An answer other than success; ``status_code`` and ``error_class`` are set per subclass."""

    status_code = 403
    error_class = "RecordInvalid"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"errors": {"class": self.error_class, "invalid_data": self.message}}


class RecordInvalid(ApiError):
    """Bad input; the message starts with "Validation failed:" as in the document."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            detail if detail.startswith("Validation failed:") else f"Validation failed: {detail}"
        )


class RecordNotFound(ApiError):
    status_code = 404
    error_class = "RecordNotFound"

    def __init__(self, message: str = NO_CALL_MESSAGE) -> None:
        super().__init__(message)


class UnauthorizedOperation(ApiError):
    error_class = "UnauthorizedOperation"

    def __init__(self, message: str = NO_PERMISSION_MESSAGE) -> None:
        super().__init__(message)


class UnauthorizedAdvertiser(ApiError):
    error_class = "UnauthorizedAdvertiser"


class Unauthorized(ApiError):
    status_code = 401
    error_class = "Unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="api"'})


class RateLimited(ApiError):
    status_code = 429
    error_class = "RateLimitExceeded"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_seconds)})


class ServiceUnavailable(ApiError):
    """The database cannot be reached right now (``core.db.DatabaseUnavailable``): try again soon,
    rather than a 500 for a request that did nothing wrong."""

    status_code = 503
    error_class = "ServiceUnavailable"
    retry_after_seconds = 5

    def __init__(self) -> None:
        super().__init__("The service is unavailable for a moment; try again shortly",
                         headers={"Retry-After": str(self.retry_after_seconds)})


class BadRequest(ApiError):
    """A body the server refuses to parse at all (nested deeper than ``api.max_json_depth``)."""

    status_code = 400
    error_class = "BadRequest"


class PayloadTooLarge(ApiError):
    """A body over ``api.max_body_bytes``; it is refused unread, or as soon as the limit is passed,
    and the connection is closed rather than made to drain the rest."""

    status_code = 413
    error_class = "PayloadTooLarge"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


class RoutingError(ApiError):
    """No such path (404) or no such method on it (405, with ``Allow``), in the API's error shape."""

    error_class = "RoutingError"

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers)
        self.status_code = status_code
