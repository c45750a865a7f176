"""The ledger's stored JSON: the encoder made once writes exactly what json's own would."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.records import stored_json

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20,
)


@given(_VALUES)
def test_stored_json_is_what_json_writes_compact_with_non_ascii_kept(value: Any) -> None:
    assert stored_json(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_stored_json_of_a_custom_data_dict() -> None:
    assert stored_json({"région": "Île", "n": 1.5, "ok": True, "none": None}) == (
        '{"région":"Île","n":1.5,"ok":true,"none":null}')


@pytest.mark.parametrize("value", [{1, 2}, {"when": object()}, [b"bytes"]])
def test_a_value_json_cannot_write_is_refused_as_json_refuses_it(value: Any) -> None:
    with pytest.raises(TypeError) as ours:
        stored_json(value)
    with pytest.raises(TypeError) as theirs:
        json.dumps(value)
    assert str(ours.value) == str(theirs.value)
