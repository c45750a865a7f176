"""Feed files: defaults, routing of columns to request fields, and errors with their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.rows.errors import FeedError
from ingest.rows.feeds import (
    DEFAULT_FEED,
    Destination,
    default_feeds,
    format_feed,
    parse_feed,
)
from ingest.rows.fields import Target

EXAMPLES = Path(__file__).resolve().parents[3] / "etc" / "feeds"

MINIMAL = 'name = "x"\ntemplate = "signals"\n[mapping]\nkind = "signal"\n'


def feed_error(text: str) -> FeedError:
    with pytest.raises(FeedError) as caught:
        parse_feed(text, "feeds/x.toml")
    return caught.value


def test_default_feeds() -> None:
    feeds = default_feeds()
    assert set(feeds) == {"signals", "calls"} and DEFAULT_FEED == "signals"
    assert feeds["signals"].mapping.kind == "signal" and feeds["signals"].template.name == "signals"
    assert feeds["calls"].mapping.kind == "call" and feeds["calls"].template.name == "calls"
    for feed in feeds.values():
        assert feed.destination == Destination(url=None, token=None)


@pytest.mark.parametrize("name", ["signals", "calls"])
def test_the_examples_of_the_defaults_are_the_defaults(name: str) -> None:
    text = (EXAMPLES / f"{name}.toml").read_text()
    assert parse_feed(text, name) == default_feeds()[name]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_parses(path: Path) -> None:
    feed = parse_feed(path.read_text(), str(path))
    assert feed.name == path.stem or path.stem == "lookup"


def test_signals_columns_go_to_the_fields_of_their_name() -> None:
    feed = default_feeds()["signals"]
    assert feed.target("transaction_id") == Target("search", "transaction_id")
    assert feed.target("Call_Start_Time") == Target("search", "call_start_time")
    assert feed.target("name") == Target("signal", "name")
    assert feed.target("value") == Target("signal", "value")
    assert feed.target("plan_type") == Target("custom_data", "plan_type")


def test_calls_columns() -> None:
    feed = default_feeds()["calls"]
    assert feed.target("call_start") == Target("call", "call_start")
    assert feed.target("calling_phone_number") == Target("call", "calling_phone_number")
    assert feed.target("agent_queue_assigned") == Target("attributes", "agent_queue_assigned")


def test_custom_mapping_example() -> None:
    feed = parse_feed((EXAMPLES / "orders.toml").read_text(), "orders.toml")
    template = feed.template
    assert template.ordered and template.extra_columns == "forbidden"
    assert feed.target("Order ID") == Target("signal", "partner_unique_id")
    assert feed.target("Phone") == Target("search", "calling_phone_number")
    assert feed.target("Plan") == Target("custom_data", "plan_type")
    assert feed.target("Internal Note") is None
    # Columns without a type take the type of the field they are mapped to.
    assert template.column("Phone").type == "phone"  # type: ignore[union-attr]
    assert template.column("Order ID").type == "string"  # type: ignore[union-attr]
    assert dict(feed.mapping.constants) == {
        Target("signal", "name"): "Sale",
        Target("signal", "description"): "Order placed by phone",
    }


def test_lookup_example() -> None:
    feed = parse_feed((EXAMPLES / "lookup.toml").read_text())
    assert feed.mapping.table == "accounts"
    assert feed.target("primary_key") == Target("lookup", "primary_key")
    assert feed.target("account_tier") == Target("data", "account_tier")


def test_unmapped_columns_can_be_ignored() -> None:
    feed = parse_feed(MINIMAL + 'unmapped = "ignore"\n')
    assert feed.target("plan_type") is None
    assert feed.target("name") == Target("signal", "name")


def test_extra_columns_can_be_mapped_explicitly() -> None:
    feed = parse_feed(MINIMAL + '[mapping.columns]\n"Plan" = "custom_data.plan_type"\n')
    assert feed.target("plan") == Target("custom_data", "plan_type")


def test_constants_are_canonical() -> None:
    feed = parse_feed(
        'name = "x"\n[[template.columns]]\nname = "transaction_id"\n[[template.columns]]\n'
        'name = "name"\n[mapping]\nkind = "signal"\n[mapping.constants]\n"signal.value" = "No"\n'
        '"custom_data.source" = 7\n"search.duration_in_seconds" = "0060"\n'
    )
    assert dict(feed.mapping.constants) == {
        Target("signal", "value"): "false",
        Target("custom_data", "source"): "7",
        Target("search", "duration_in_seconds"): "60",
    }


def test_destination() -> None:
    feed = parse_feed(
        MINIMAL + '[destination]\nurl = "https://api.example.com/v1/"\ntoken = "s3cret"\n'
    )
    assert feed.destination == Destination(url="https://api.example.com/v1", token="s3cret")
    assert "s3cret" not in repr(feed)


def test_format_feed_shows_where_each_column_goes() -> None:
    text = format_feed(parse_feed((EXAMPLES / "orders.toml").read_text()))
    assert "feed orders: signal requests to the embedded API, with the tenant's token" in text
    assert "Phone (phone required) -> search.calling_phone_number" in text
    assert "Internal Note (text) -> ignore" in text
    assert 'constant "Sale" -> signal.name' in text


def test_error_format_and_toml_syntax_line() -> None:
    error = feed_error('name = "x"\ntemplate = "signals"\n[mapping\nkind = "signal"\n')
    assert str(error).startswith("feeds/x.toml:3: ")
    assert (error.source, error.line) == ("feeds/x.toml", 3)


def test_unterminated_string_names_its_line() -> None:
    assert feed_error('name = "x"\n\ntemplate = "signals\n').line == 3


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ('name = "x"\ntemplat = "signals"\n', 2, "unknown key 'templat'"),
        ('template = "signals"\n[mapping]\nkind = "signal"\n', 1, "needs a name"),
        ('name = "X Feed"\ntemplate = "signals"\n', 1, "needs a name of 1-32"),
        ('name = "x"\ntemplate = "signals"\n', 1, "needs a [mapping] table"),
        ('name = "x"\ntemplate = "signals"\n[mapping]\nkind = "sale"\n', 4, "kind must be one of"),
        ('name = "x"\n\ntemplate = "nope"\n[mapping]\nkind = "signal"\n', 3, "no shipped template"),
        (
            'name = "x"\ntemplate = 3\n[mapping]\nkind = "signal"\n',
            2,
            "must name a shipped template",
        ),
        (
            MINIMAL + '\n[mapping.columns]\n"Order ID" = "signal.partner_unique_id"\n'
            '"Phone" = "search.caller"\n',
            8,
            "'search.caller' is not a field of a signal request",
        ),
        (MINIMAL + '[mapping.columns]\n"a" = 5\n', 6, "must be a string"),
        (
            MINIMAL + '[mapping.columns]\n"Plan" = "custom_data.plan"\n"plan" = "ignore"\n',
            7,
            "mapped twice",
        ),
        (
            MINIMAL + '[mapping.columns]\n"Product" = "signal.name"\n',
            3,
            "column 'Product' and column 'name' both map to signal.name",
        ),
        (
            MINIMAL + '[mapping.constants]\n"signal.name" = "Sale"\n',
            3,
            "constant signal.name and column 'name' both map to signal.name",
        ),
        (MINIMAL + '[mapping.constants]\n"signal.sale_amount" = "$5"\n', 6, "is not an amount"),
        (
            MINIMAL + '[mapping.constants]\n"signal.occurred_at_time" = "1460404800"\n',
            6,
            "timestamp and cannot be a constant",
        ),
        (MINIMAL + '[mapping.constants]\n"signal.value" = [1]\n', 6, "string, number or boolean"),
        (MINIMAL + 'unmapped = "attributes"\n', 5, "unmapped must be 'custom_data' or 'ignore'"),
        (MINIMAL + 'table = "t"\n', 5, "only a lookup mapping has a table"),
        (
            'name = "x"\ntemplate = "lookup"\n[mapping]\nkind = "lookup"\n',
            3,
            "needs the table's name",
        ),
        (
            'name = "x"\ntemplate = "lookup"\n[mapping]\nkind = "lookup"\ntable = "a b"\n',
            5,
            "needs the table's name",
        ),
        (
            ('name = "x"\ntemplate = "calls"\n[mapping]\nkind = "call"\n[mapping.columns]\n'
            '"Phone" = "call.calling_phone_number"\n'),
            6,
            "column 'Phone' is not in template 'calls', which refuses other columns",
        ),
        (
            ('name = "x"\ntemplate = "calls"\n[mapping]\nkind = "call"\n[mapping.columns]\n'
            'call_end = "ignore"\n'),
            3,
            "no column or constant gives call.call_end",
        ),
        (
            ('name = "x"\ntemplate = "lookup"\n[mapping]\nkind = "signal"\n'
            '[mapping.constants]\n"signal.name" = "Sale"\n'),
            3,
            "no row could find its call",
        ),
        (MINIMAL + '[destination]\nurl = "ftp://example.com"\n', 6, "http:// or https://"),
        (MINIMAL + '[destination]\ntoken = " "\n', 6, "non-empty string"),
        (MINIMAL + '[destination]\nuser = "me"\n', 6, "unknown key 'user'"),
    ],
)
def test_errors_name_the_line(text: str, line: int, reason: str) -> None:
    error = feed_error(text)
    assert reason in error.reason
    assert error.line == line, str(error)


INLINE = """\
name = "orders"

[template]
ordered = true

[[template.columns]]
name = "Order ID"

[[template.columns]]
name = "Total"
type = "float"

[mapping]
kind = "signal"
"""


def test_inline_template_error_names_the_line_in_the_right_array_entry() -> None:
    error = feed_error(INLINE)
    assert error.line == 11
    assert "column 'Total': unknown type 'float'" in error.reason


def test_inline_template_unknown_key_line() -> None:
    error = feed_error(INLINE.replace('type = "float"', 'typo = "money"'))
    assert error.line == 11 and "unknown key 'typo'" in error.reason


def test_dotted_and_quoted_keys_are_located() -> None:
    text = (
        'name = "x"\ntemplate = "signals"\nmapping.kind = "signal"\n'
        'mapping.columns."Plan A" = "x.y"\n'
    )
    error = feed_error(text)
    assert error.line == 4 and "'x.y'" in error.reason
