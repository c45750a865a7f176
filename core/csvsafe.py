"""CSV cells a spreadsheet shows as text and never evaluates (OWASP "CSV injection").

Every CSV the product writes (customer reports, the Transactions API's CSV export) passes its
cells through :func:`safe_cell`. A cell starting with ``= + - @``, a tab or a carriage return
would be read as a formula by Excel, LibreOffice or Google Sheets, so it gets a leading ``'``.
A plain number (``-12.5``, ``+18885551212``, an epoch before 1970) is left as it is: a sign and
digits call no function, and quoting it would turn the customer's amounts into text.
"""

from __future__ import annotations

import re

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# A sign, ASCII digits, at most one decimal point: nothing a spreadsheet could evaluate.
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?", re.ASCII)


def safe_cell(value: object) -> str:
    """``value`` as CSV cell text; ``None`` is an empty cell."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_PREFIXES) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text
