"""The embedded ledger's writes: a batch of queued requests in one ledger transaction.

One code writes a batch wherever it runs: :func:`write_batch`, called by the run's own process
for a small stream (and when a child fails), and by :func:`write_chunk` in a limited child of its
own (``ingest.sandbox.Worker``) for a larger one. A child reads its chunk of batches (parses and
validates every request, ``ledger.plans``) as soon as it starts, while the child before it
writes; then, told to go, writes its batches in order, one ledger transaction each, and sends
each batch's answers as it commits them. The ledger's Python (the rows, the records, SQLite) so
runs beside the run's process and the daemon's event loop instead of under their lock
(the GIL), and the plans never travel between processes.

Where the ledger and the state are schemas of one PostgreSQL database, the child marks the outbox
itself in each batch's ledger transaction (``Database.beside``): a batch and its marks commit
together. Elsewhere (SQLite's two files) the parent marks it from each batch's answers, a commit
of its own: a child that dies between the two leaves its batch pending; the batch is written
again and the ledger answers it from what it remembers (``delivered_requests``), writing nothing
twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.config import Settings
from core.db import Location
from core.gcpause import collection_paused
from core.passwords import PasswordHasher
from core.tenants import TenantStore, open_state
from ingest.delivery.outbox import Outbox
from ingest.delivery.poster import HTTP_UNAUTHORIZED, Delivery, DeliveryOutcome, error_text, mark_deliveries
from ingest.sandbox import Channel

if TYPE_CHECKING:
    # The ledger's modules (pydantic's schemas among them, 0.12 s) are imported where they are
    # used: by the children, whose fork server has them already, and by this process only when
    # it writes a batch itself. The run's process names this module to start each child.
    from ledger.auth import Gatekeeper
    from ledger.plans import Plan, Refused
    from ledger.requests import Answer, LedgerRequests
    from ledger.store import LedgerStore

#: What a child sends per batch: each row's delivery (None: left pending, its tenant's token
#: was refused before it), the tenants whose token was refused so far, and whether the outbox
#: was marked in the batch's own transaction.
BatchAnswers = tuple[list[Delivery | None], list[str], bool]
#: Marks a batch's rows in the outbox, given each row's delivery, inside its ledger transaction.
Marks = Callable[[Sequence["WriteRow"], Sequence[Delivery | None]], None]


@dataclass(frozen=True)
class WriteRow:
    """A queued request as the ledger takes it: outbox id and content key, tenant, the token it
    is sent with, method, path (relative to ``/api/{version}``) and body."""

    id: int
    key: str
    tenant: str
    token: str
    method: str
    path: str
    text: str


@dataclass(frozen=True)
class ChunkJob:
    """A child's work: batches to write in order, the time zone of each of their tenants, and
    remembered answers to forget first (the stream's first child)."""

    settings: Settings
    zones: dict[str, str]
    batches: list[list[WriteRow]]
    forget_before: float | None = None


def write_batch(requests: LedgerRequests, gate: Gatekeeper, rows: Sequence[WriteRow], refused: set[str],
                planned: Sequence[tuple[str, Plan | Refused]] | None = None,
                marks: Marks | None = None) -> list[Delivery | None]:
    """Apply ``rows`` in one ledger transaction: each row's delivery, or None for a row left
    pending because its tenant is in ``refused``; a tenant whose token gets 401 is added there
    (that row gets its 401, the tenant's rows after it wait for a new token). ``planned`` are the
    rows already read, each with the time zone it was read in; ``marks``, if given, marks them in
    the same transaction. A fault of ours (a bug, a broken database) rolls the whole batch back
    and is raised: the batch stays pending."""
    from ledger.errors import ApiError
    from ledger.requests import Queued

    queued: list[Queued] = []
    taken: list[int] = []
    deliveries: list[Delivery | None] = [None] * len(rows)
    with requests.batch([(row.id, row.key) for row in rows]) as conn:
        for index, row in enumerate(rows):
            if row.tenant in refused:
                continue
            admitted = requests.admit_once(gate, row.token)
            if isinstance(admitted, ApiError) and admitted.status_code == HTTP_UNAUTHORIZED:
                refused.add(row.tenant)
            queued.append(Queued(row.tenant, row.token, row.id, row.key, row.method, row.path, row.text,
                                 planned[index] if planned is not None else None))
            taken.append(index)
        for index, answer in zip(taken, requests.apply_queued(conn, gate, queued)):
            deliveries[index] = delivery_of(answer)
        if marks is not None:
            marks(rows, deliveries)
    return deliveries


def delivery_of(answer: Answer) -> Delivery:
    """The outcome the poster would record for this answer over HTTP."""
    status = answer.status
    if answer.succeeded:
        return Delivery(DeliveryOutcome.POSTED, status, answer.transaction_id, "", 1)
    if status == HTTP_UNAUTHORIZED:
        return Delivery(DeliveryOutcome.UNAUTHORIZED, status, None,
                        "the destination refused the API token (HTTP 401)", 1)
    return Delivery(DeliveryOutcome.FAILED, status, None, error_text(status, answer.body), 1)


@contextmanager
def ledger_requests(settings: Settings) -> Iterator[tuple[LedgerRequests, Gatekeeper, Marks | None]]:
    """The ledger's requests and gate over this data dir's stores, opened in a child and closed
    after, and the outbox's marks written in the ledger's transactions where they can be."""
    from ledger.auth import Gatekeeper
    from ledger.requests import LedgerRequests
    from ledger.store import LedgerStore

    state = open_state(settings.state_location)
    try:
        ledger = LedgerStore.open(settings.ledger_location)
        try:
            tenants = TenantStore(state, settings.tenants_dir, PasswordHasher(settings.passwords))
            yield (LedgerRequests(settings.api, tenants, ledger), Gatekeeper(tenants, None),
                   outbox_marks(ledger, settings.state_location))
        finally:
            ledger.close()
    finally:
        state.close()


def outbox_marks(ledger: LedgerStore, state: Location) -> Marks | None:
    """The outbox's marks written in ``ledger``'s transactions, where the state (at ``state``)
    can share them (``Database.beside``); None where it cannot."""
    beside = ledger.db.beside(state)
    if beside is None:
        return None
    outbox = Outbox(beside)

    def marks(rows: Sequence[WriteRow], deliveries: Sequence[Delivery | None]) -> None:
        mark_deliveries(outbox, [(row.id, delivery) for row, delivery in zip(rows, deliveries, strict=True)
                                 if delivery is not None])
    return marks


@collection_paused()
def write_chunk(job: ChunkJob, channel: Channel) -> None:
    """A child's work (``ingest.sandbox.Worker``): read every request of the job and open the
    stores now, wait for the parent's word, then write the batches in order and send each batch's
    :data:`BatchAnswers`. The word is the tenants refused so far (a list: go) or None (stop); any
    message while writing means stop after the batch under way. A refused token ends the chunk
    after its batch, as it ends the stream.

    The collector is paused for the child's life (``core.gcpause``): its collections, over the
    fork server's modules and the chunk's rows, took about 15 % of a child's CPU time, most of
    it while writing, which the next chunk's writing waits for."""
    from ledger.plans import BodyLimits, PlanJob, plan_batch

    api = job.settings.api
    rows = [row for batch in job.batches for row in batch]
    plans = plan_batch(PlanJob(BodyLimits(api.max_body_bytes, api.max_json_depth),
                               [(row.tenant, job.zones[row.tenant], row.method, row.path, row.text) for row in rows]))
    read = iter(plans)
    with ledger_requests(job.settings) as (requests, gate, marks):
        word = channel.receive()
        if word is None:
            return
        refused = set(word)
        if job.forget_before is not None:
            requests.forget_delivered(job.forget_before)
        for batch in job.batches:
            if channel.waiting():
                return
            planned = [(job.zones[row.tenant], next(read)) for row in batch]
            deliveries = write_batch(requests, gate, batch, refused, planned, marks)
            channel.send((deliveries, sorted(refused), marks is not None))
            if refused:
                return


__all__ = ["BatchAnswers", "ChunkJob", "Marks", "WriteRow", "delivery_of", "ledger_requests", "outbox_marks",
           "write_batch", "write_chunk"]
