"""Rows: an uploaded file becomes checked rows and mapped requests, with no database and no network.

The pure half of the pipeline: read a CSV/XLSX/XLS into text (``readers``, after the cheap
workbook checks of ``precheck``), check it against the tenant's template (``templates``,
``validate``, one value at a time by ``coercion``, a column at a time by ``column_checks``), and
map each good row to a Signal API request (``mapping``, by the targets of ``fields``, as the
tenant's ``feeds`` say); every kind of request is declared once, in ``kinds``. Everything here
runs in the limited child of ``ingest.sandbox``; a file refused whole is a :class:`FileRejected`.

The names of the modules that work on columns (``mapping``, ``readers``, ``validate``) are
loaded when first used: they import polars, which a process that only queues, posts and
reports (the daemon, ``sftpctl``) need not load at every start (0.13 s). The function
``validate`` is imported from its module (``ingest.rows.validate``): once that module is loaded,
the package's attribute of that name is the module.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ingest.rows.errors import FeedError, FileRejected
from ingest.rows.feeds import DEFAULT_FEED, Feed, default_feeds, format_feed, parse_feed
from ingest.rows.kinds import KINDS, LAST_RANK, DestinationRequest, Kind, posting_rank
from ingest.rows.precheck import check_workbook
from ingest.rows.templates import (
    Template,
    TemplateError,
    get_template,
    shipped_templates,
)

if TYPE_CHECKING:
    from ingest.rows.mapping import MappedRows, map_rows
    from ingest.rows.readers import Table, read_table
    from ingest.rows.validate import RowResult, Validation, check_file

_ON_COLUMNS = {
    "MappedRows": "mapping", "map_rows": "mapping",
    "Table": "readers", "read_table": "readers",
    "RowResult": "validate", "Validation": "validate", "check_file": "validate",
}


def __getattr__(name: str) -> Any:
    module = _ON_COLUMNS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

__all__ = [
    "DEFAULT_FEED",
    "KINDS",
    "LAST_RANK",
    "DestinationRequest",
    "Feed",
    "FeedError",
    "FileRejected",
    "Kind",
    "MappedRows",
    "RowResult",
    "Table",
    "Template",
    "TemplateError",
    "Validation",
    "check_file",
    "check_workbook",
    "default_feeds",
    "format_feed",
    "get_template",
    "map_rows",
    "parse_feed",
    "posting_rank",
    "read_table",
    "shipped_templates",
]
