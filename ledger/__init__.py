"""The embedded Signal API and Transactions API over a call ledger.

Imports only ``core``; the ingest pipeline reaches it over HTTP like any other destination.
"""

API_VERSION = "2020-10-01"
"""The Signal API version our own clients put in the path; any well-formed version is accepted."""
