"""Request bodies: the depth limit and finite numbers, as properties over any JSON value."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.bodies import parse_json
from ledger.errors import BadRequest, RecordInvalid

LIMIT = 4

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=20,
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def holds_nul(value: Any) -> bool:
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(map(holds_nul, value))
    return isinstance(value, str) and "\x00" in value


@settings(deadline=None)
@given(values)
@example({"k\x00": 1}).via("a NUL in a key")
@example([{"k": "v\x00"}]).via("a NUL in a nested value")
def test_a_value_within_the_limit_reads_back_and_a_deeper_one_is_a_400(value: Any) -> None:
    """...and one holding a NUL character anywhere (a key too) is refused, naming it."""
    raw = json.dumps(value).encode()
    if depth(value) > LIMIT:
        with pytest.raises(BadRequest):
            parse_json(raw, LIMIT)
    elif holds_nul(value):
        with pytest.raises(RecordInvalid, match="NUL character"):
            parse_json(raw, LIMIT)
    else:
        assert parse_json(raw, LIMIT) == value


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_are_a_value_or_one_of_the_apis_errors(raw: bytes) -> None:
    with contextlib.suppress(BadRequest, RecordInvalid):
        parse_json(raw, LIMIT)


@pytest.mark.parametrize("text", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e400", b"-1e999"])
def test_numbers_must_be_finite(text: bytes) -> None:
    with pytest.raises(RecordInvalid, match="not valid JSON"):
        parse_json(text, LIMIT)


def test_brackets_inside_strings_do_not_count() -> None:
    assert parse_json(b'{"a": "[[[[[[[[[[{{{{{{{{"}', LIMIT) == {"a": "[[[[[[[[[[{{{{{{{{"}


def test_an_empty_body_is_none() -> None:
    assert parse_json(b" \r\n", LIMIT) is None
