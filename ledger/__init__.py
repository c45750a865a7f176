"""The embedded Signal API and Transactions API over a call ledger.

Imports only ``core``; the ingest pipeline reaches it over HTTP like any other destination.
"""

from core.config import EMBEDDED_API_VERSION as API_VERSION

__all__ = ["API_VERSION"]
