"""Shipped templates match their sources; template definitions are checked."""

from __future__ import annotations

import pytest

from ingest.rows.coercion import TYPE_NAMES
from ingest.rows.templates import (
    TemplateError,
    get_template,
    parse_template,
    shipped_templates,
)

SIGNAL_API_COLUMNS = [
    "transaction_id",
    "call_record_id",
    "call_start_time",
    "calling_phone_number",
    "duration_in_seconds",
    "name",
    "partner_unique_id",
    "description",
    "occurred_at_time",
    "sale_amount",
    "value",
    "custom_parameter_1",
    "custom_parameter_2",
    "custom_parameter_3",
]


def columns(name: str) -> dict[str, tuple[str, bool]]:
    return {column.name: (column.type, column.required) for column in get_template(name).columns}


def test_shipped_names() -> None:
    assert set(shipped_templates()) == {
        "signals",
        "lookup",
        "calls",
        "asapp_call_metadata",
        "asapp_transcripts",
        "asapp_transactions",
    }


def test_every_shipped_column_has_a_known_type_and_a_description() -> None:
    for template in shipped_templates().values():
        assert template.description
        for column in template.columns:
            assert column.type in TYPE_NAMES and column.description, (template.name, column.name)


def test_signals_template() -> None:
    template = get_template("signals")
    found = columns("signals")
    assert set(SIGNAL_API_COLUMNS) <= set(found)
    assert [name for name, (_, required) in found.items() if required] == ["name"]
    assert found["call_start_time"] == ("timestamp", False)
    assert found["occurred_at_time"] == ("timestamp", False)
    assert found["sale_amount"] == ("money", False)
    assert found["value"] == ("boolean01", False)
    assert found["calling_phone_number"] == ("phone", False)
    assert found["duration_in_seconds"] == ("integer", False)
    assert template.extra_columns == "custom_data" and not template.ordered


def test_lookup_template() -> None:
    assert columns("lookup") == {
        "primary_key": ("string", True),
        "secondary_key": ("string", False),
    }
    assert get_template("lookup").extra_columns == "custom_data"


def test_asapp_call_metadata_follows_the_seed() -> None:
    found = columns("asapp_call_metadata")
    assert len(found) == 23
    assert {name for name, (_, required) in found.items() if required} == {
        "customer_id",
        "call_start",
        "call_end",
    }
    assert found["call_start"] == ("iso_utc", True)
    assert found["call_assigned_to_agent"] == ("iso_utc", False)
    assert found["survey_offered"] == ("bool", False)
    assert found["time_in_queue"] == ("integer", False)
    assert found["caller_account_value"] == ("decimal", False)
    assert found["disposition_notes"] == ("text", False)


def test_asapp_transcripts_follows_the_seed() -> None:
    template = get_template("asapp_transcripts")
    assert columns("asapp_transcripts") == {
        "conversation_externalId": ("string", True),
        "sender_externalId": ("string", True),
        "sender_role": ("string", True),
        "text": ("text", True),
        "timestamp": ("iso_utc", True),
    }
    assert template.column("sender_role").choices == ("agent", "customer", "bot")  # type: ignore[union-attr]


def test_asapp_transactions_follows_the_seed() -> None:
    found = columns("asapp_transactions")
    assert len(found) == 16
    assert {name for name, (_, required) in found.items() if required} == {
        "transaction_id",
        "transaction_time",
        "external_session_id",
        "product_quantity",
    }
    assert found["product_quantity"] == ("integer", True)
    assert found["transaction_value_one_time"] == ("decimal", False)


def test_calls_is_call_metadata_plus_the_phone_number() -> None:
    metadata = get_template("asapp_call_metadata")
    calls = get_template("calls")
    assert calls.columns[:-1] == metadata.columns
    assert calls.columns[-1].name == "calling_phone_number"
    assert calls.columns[-1].type == "phone" and not calls.columns[-1].required


def test_column_lookup_ignores_case() -> None:
    template = get_template("signals")
    assert template.column("Transaction_ID") is template.column("transaction_id") is not None
    assert template.column("nope") is None


def test_unknown_shipped_template() -> None:
    with pytest.raises(KeyError, match="no shipped template named 'nope'; shipped: asapp_call"):
        get_template("nope")


def test_inline_template_defaults() -> None:
    template = parse_template(
        {"columns": [{"name": "a"}, {"name": "b", "type": "money"}]}, name="x"
    )
    assert template.name == "x"
    assert [(c.name, c.type, c.required) for c in template.columns] == [
        ("a", "string", False),
        ("b", "money", False),
    ]
    assert template.extra_columns == "forbidden" and not template.ordered


def test_default_type_callback() -> None:
    template = parse_template(
        {"columns": [{"name": "when"}, {"name": "who", "type": "text"}]},
        name="x",
        default_type=lambda column: "timestamp" if column == "when" else "phone",
    )
    assert [c.type for c in template.columns] == ["timestamp", "text"]


def test_extends_adds_columns_and_overrides_rules() -> None:
    template = parse_template(
        {"extends": "lookup", "ordered": True, "columns": [{"name": "tier", "required": True}]},
        name="tiers",
    )
    assert template.name == "tiers" and template.ordered
    assert [c.name for c in template.columns] == ["primary_key", "secondary_key", "tier"]
    assert template.extra_columns == "custom_data"


@pytest.mark.parametrize(
    "data, path, reason",
    [
        ({"columns": []}, ("columns",), "lists no columns"),
        ({"columns": {"name": "a"}}, ("columns",), "array of tables"),
        ({"columns": [{"type": "string"}]}, ("columns", 0), "has no name"),
        (
            {"columns": [{"name": "a", "type": "float"}]},
            ("columns", 0, "type"),
            "unknown type 'float'",
        ),
        (
            {"columns": [{"name": "a", "required": "yes"}]},
            ("columns", 0, "required"),
            "true or false",
        ),
        (
            {"columns": [{"name": "a", "choices": "x"}]},
            ("columns", 0, "choices"),
            "list of strings",
        ),
        ({"columns": [{"name": "a", "size": 3}]}, ("columns", 0, "size"), "unknown key 'size'"),
        ({"columns": [{"name": "a"}, {"name": "A"}]}, ("columns", 1, "name"), "listed twice"),
        (
            {"extra_columns": "keep", "columns": [{"name": "a"}]},
            ("extra_columns",),
            "must be one of",
        ),
        ({"ordered": 1, "columns": [{"name": "a"}]}, ("ordered",), "true or false"),
        ({"extends": "nope", "columns": [{"name": "a"}]}, ("extends",), "shipped template"),
        ({"colums": []}, ("colums",), "unknown key 'colums'"),
    ],
)
def test_template_errors_carry_their_key_path(data: dict, path: tuple, reason: str) -> None:
    with pytest.raises(TemplateError, match=reason) as caught:
        parse_template(data, name="x")
    assert caught.value.path == path
