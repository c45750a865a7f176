"""Case 6 (placeholder while ingest is built)."""
from bench.context import BenchContext
from bench.errors import NotAvailable
from bench.runner import Measure


def case_6(context: BenchContext) -> list[Measure]:
    raise NotAvailable("not written yet")
