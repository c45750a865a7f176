"""One error root: every error sftpctl reports derives from SftpInboxError, in its kind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core import errors
from core.config import ConfigError
from core.errors import Conflict, NotFound, SftpInboxError, UsageError, kind_of
from core.passwords import PasswordError
from core.tenants import TenantError, TenantExists, TenantNotFound
from ingest.claims import ClaimHeld
from ingest.rows.errors import FeedError, FileRejected
from ingest.schedule import ScheduleError
from ingest.store import UnknownFeed
from service.sftpctl import CommandError

KINDS = [
    (ConfigError, UsageError, ValueError),
    (PasswordError, UsageError, ValueError),
    (TenantError, UsageError, ValueError),
    (FeedError, UsageError, ValueError),
    (ScheduleError, UsageError, ValueError),
    (CommandError, UsageError, Exception),
    (TenantNotFound, NotFound, TenantError),
    (UnknownFeed, NotFound, TenantError),
    (TenantExists, Conflict, TenantError),
    (ClaimHeld, Conflict, RuntimeError),
    (FileRejected, SftpInboxError, Exception),
]


@pytest.mark.parametrize(("error", "kind", "historic"), KINDS, ids=[k[0].__name__ for k in KINDS])
def test_each_operator_error_has_its_kind_and_keeps_its_python_base(
    error: type[Exception], kind: type[SftpInboxError], historic: type[Exception]
) -> None:
    instance = FeedError("f.toml", 1, "bad") if error is FeedError else error("message")
    assert isinstance(instance, SftpInboxError) and isinstance(instance, historic)
    assert kind_of(instance) is kind


def test_the_specific_kind_wins_over_usage() -> None:
    """A TenantNotFound is also a TenantError (a usage error): not found is what counts."""
    assert isinstance(TenantNotFound("x"), UsageError) and kind_of(TenantNotFound("x")) is NotFound
    assert kind_of(TenantExists("x")) is Conflict
    assert kind_of(SftpInboxError("x")) is SftpInboxError


def test_core_errors_imports_nothing_of_the_project() -> None:
    """core sits at the bottom: every module may import core.errors, so it imports none of them."""
    tree = ast.parse(Path(errors.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__"}
