"""Calls files (the tenant's ``calls`` feed, ASAPP call metadata) shaped like a customer's export.

The calls counterpart of :mod:`bench.signal_files`, for case 7's calls row: deterministic (fixed
seed), one call a row with the columns the ``calls`` template expects (``customer_id`` hashed as
ASAPP sends it, ``call_start`` and ``call_end`` in ISO 8601 UTC, the caller's number with and
without spaces, the queue) and a few of its optional ones, repeated queues and dispositions, and
a few bad values (about 0.3 % of rows, counted in :class:`~bench.signal_files.Written`) so the
error paths run too.

A call is named by ``customer_id|call_start``; ``prefix`` goes into every customer id, so a file
written with a new prefix holds only calls the ledger has not seen.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from bench.signal_files import BAD_ROW_SHARE, CALLERS, DAY_SECONDS, DAY_START, SEED, Written

HEADER = (
    "customer_id", "call_start", "call_end", "calling_phone_number", "agent_queue_assigned",
    "time_in_queue", "call_handle_time", "queue_abandoned", "disposition_category",
)
CALL_START, CALL_END, PHONE, QUEUE_TIME = 1, 2, 3, 5
SPOILERS = ((PHONE, "555-1212"), (CALL_START, "2024-05-01 25:00"), (QUEUE_TIME, "about a minute"))
QUEUES = ("Sales", "Support", "Billing", "Retention", "Sales Spanish", "Tech Support Tier 2")
DISPOSITIONS = ("Resolved", "Sale", "Callback scheduled", "Escalated", "No answer", "Transferred")
ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


def call_rows(prefix: str) -> Iterator[tuple[list[str], bool]]:
    """Endless (cells, spoiled) pairs; ``prefix`` makes the customer ids, and so the calls, new."""
    rng = random.Random(SEED)
    callers = [f"+1 {rng.randint(200, 999)} {rng.randint(200, 999)} {rng.randint(0, 9999):04d}"
               for _ in range(CALLERS)]
    index = 0
    while True:
        start = DAY_START + timedelta(seconds=rng.randrange(DAY_SECONDS))
        queued = rng.randint(0, 900)
        handled = rng.randint(30, 3600)
        caller = rng.choice(callers)
        customer = hashlib.sha256(f"{prefix}{index}".encode()).hexdigest()[:32]
        row = [
            customer,
            start.strftime(ISO_UTC),
            (start + timedelta(seconds=queued + handled)).strftime(ISO_UTC),
            caller if rng.random() < 0.7 else caller.replace(" ", ""),
            rng.choice(QUEUES),
            str(queued),
            str(handled),
            rng.choice(("false", "false", "false", "true")),
            rng.choice(DISPOSITIONS),
        ]
        spoiled = rng.random() < BAD_ROW_SHARE
        if spoiled:
            column, value = rng.choice(SPOILERS)
            row[column] = value
        yield row, spoiled
        index += 1


def calls_csv_file(path: Path, rows: int, prefix: str) -> Written:
    """Write ``rows`` calls; the file's size follows from them (about 150 bytes a row)."""
    bad = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(HEADER)
        for _, (row, spoiled) in zip(range(rows), call_rows(prefix)):
            writer.writerow(row)
            bad += spoiled
    return Written(rows, bad)
