"""CSV cells: formulas are quoted, plain numbers and text are left alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.csvsafe import FORMULA_PREFIXES, safe_cell


@pytest.mark.parametrize(
    "value",
    ["=1+1", "+A1", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")',
     "-", "+", "-1e5", "-1.", "-.5", "+1,5", "-١٢"],
)
def test_cells_a_spreadsheet_would_evaluate_are_quoted(value: str) -> None:
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize(
    "value", ["Sale", "1.50", "", "a=b", "T-1", "-12.5", "+18885551212", "-2208988800", "+1", "-2"]
)
def test_plain_cells_and_numbers_are_left_alone(value: str) -> None:
    assert safe_cell(value) == value


def test_none_is_an_empty_cell_and_numbers_are_their_text() -> None:
    assert (safe_cell(None), safe_cell(-12.5), safe_cell(7)) == ("", "-12.5", "7")


@given(st.text())
def test_a_quoted_cell_is_the_text_behind_one_apostrophe(text: str) -> None:
    cell = safe_cell(text)
    assert cell in (text, "'" + text)
    if cell.startswith(FORMULA_PREFIXES):  # only a sign and digits may still start that way
        assert cell.lstrip("+-").replace(".", "", 1).isdigit() and cell.isascii()
