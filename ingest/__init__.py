"""The ingest pipeline: stage uploaded files, then read, validate, map, post and report on them.

Three layers, imported one way (each only from those above it):

- :mod:`ingest.rows`: a file becomes checked rows and mapped requests (no database, no network);
- :mod:`ingest.delivery`: requests are queued durably and posted, and each answer recorded;
- the run, here: staging (``staging``), the schedule (``schedule``), one run (``processor``,
  tenant by tenant under ``claims``, with ``prepare_file`` in the limited child of ``sandbox``),
  reports (``reports``), failure mail (``notify``), what is kept how long (``retention``), the
  pipeline's tables (``store``) and :class:`Ingest`, which the daemon and ``sftpctl`` drive
  (``pipeline``).

``service`` and ``bench`` import from these three faces only; ``docs/architecture.md`` follows an
upload through them.
"""

from ingest.check import CheckResult, check_sample, format_check
from ingest.claims import ClaimHeld, Claims, tenant_claim
from ingest.pipeline import Ingest, UploadStatus
from ingest.prepare import Prepared, PrepareJob, prepare_file
from ingest.processor import Progress, RunSummary
from ingest.sandbox import Limits, WorkerFailed, run_limited
from ingest.staging import STAGING_DIR
from ingest.store import migrate, purge_tenant

__all__ = [
    "STAGING_DIR",
    "CheckResult",
    "ClaimHeld",
    "Claims",
    "Ingest",
    "Limits",
    "PrepareJob",
    "Prepared",
    "Progress",
    "RunSummary",
    "UploadStatus",
    "WorkerFailed",
    "check_sample",
    "format_check",
    "migrate",
    "prepare_file",
    "purge_tenant",
    "run_limited",
    "tenant_claim",
]
