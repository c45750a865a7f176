from __future__ import annotations

import pytest

from core.filenames import upload_name_error

ALLOWED = ("csv", "xlsx", "xls")


@pytest.mark.parametrize("name", ["signals.csv", "Signals.CSV", "a.xlsx", "b.XLS", "with space.csv"])
def test_accepted(name: str) -> None:
    assert upload_name_error(name, ALLOWED) is None


@pytest.mark.parametrize(
    "name, reason",
    [
        ("notes.txt", "not accepted"),
        ("noextension", "must be CSV, XLS, XLSX"),
        (".csv", "must be"),
        ("two.dots.csv", "no '.' except before the extension"),
        ("tab\tname.csv", "control character"),
    ],
)
def test_refused_with_reason(name: str, reason: str) -> None:
    error = upload_name_error(name, ALLOWED)
    assert error is not None and reason in error
