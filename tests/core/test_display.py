"""Names shown to operators: every control and bidi character escaped, JSON still JSON."""

from __future__ import annotations

import json

import pytest

from core.display import UNSAFE, for_terminal, json_safe, text_for_terminal


@pytest.mark.parametrize("code", sorted(UNSAFE))
def test_every_unsafe_character_is_shown_as_its_escape(code: int) -> None:
    shown = for_terminal(f"a{chr(code)}b.csv")
    assert chr(code) not in shown and shown.isprintable()
    assert shown == f"a\\x{code:02x}b.csv" if code < 0x100 else f"a\\u{code:04x}b.csv"


def test_the_override_trick_is_visible() -> None:
    assert for_terminal("report\u202evsc.exe") == "report\\u202evsc.exe"
    assert for_terminal("\x1b]0;owned\x07x.csv") == "\\x1b]0;owned\\x07x.csv"


def test_letters_of_any_script_are_kept() -> None:
    assert for_terminal("Ümsatz_März_שלום_売上.csv") == "Ümsatz_März_שלום_売上.csv"


def test_free_text_keeps_its_lines() -> None:
    assert text_for_terminal("row 2:\tbad\u202e\nrow 3") == "row 2:\tbad\\u202e\nrow 3"


def test_json_stays_the_same_value_with_nothing_raw_in_it() -> None:
    value = {"path": "in/a\u202e\x85\x7f\x1b\u2066é.csv"}
    text = json_safe(json.dumps(value, ensure_ascii=False))
    assert json.loads(text) == value
    assert not any(ord(char) in UNSAFE for char in text) and "é" in text
