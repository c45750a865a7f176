"""Fixtures of the core tests: where a store lives on each engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.db import Location, PostgresLocation

Locate = Callable[[str], Location]


@pytest.fixture(params=["sqlite", "postgresql"])
def locate(request: pytest.FixtureRequest, tmp_path: Path) -> Locate:
    """Where a store named ``name`` lives on the engine under test: a file, or a schema of the
    test's own PostgreSQL database."""
    if request.param == "sqlite":
        return lambda name: tmp_path / f"{name}.db"
    url = request.getfixturevalue("postgres_url")
    return lambda name: PostgresLocation(url, name)
