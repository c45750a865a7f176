"""The registry of request kinds, proved by the ASAPP kinds it declares and nothing else does:
transcript messages and purchases, from their shipped templates through feed, validation and
mapping to the ledger's request body."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ingest.rows.errors import FeedError
from ingest.rows.feeds import Feed, format_feed, parse_feed
from ingest.rows.fields import Target
from ingest.rows.kinds import KINDS, LAST_RANK, posting_rank
from ingest.rows.mapping import map_row, map_rows
from ingest.rows.readers import Table
from ingest.rows.validate import Validation, validate

PACIFIC = ZoneInfo("America/Los_Angeles")
EXAMPLES = Path(__file__).resolve().parents[3] / "etc" / "feeds"
TRANSCRIPTS = parse_feed((EXAMPLES / "transcripts.toml").read_text(), "transcripts.toml")
PURCHASES = parse_feed((EXAMPLES / "purchases.toml").read_text(), "purchases.toml")

MESSAGE_HEADER = ["conversation_externalId", "sender_externalId", "sender_role", "text", "timestamp"]
MESSAGE = ["3245556677", "6433421", "Agent", 'Happy to help, "one" moment', "2022-03-16T18:42:24.488424Z"]
PURCHASE_HEADER = [
    "transaction_id", "transaction_time", "external_customer_id", "issue_id", "external_session_id",
    "product_id", "product_quantity", "product_value_one_time", "transaction_value_recurring",
]
PURCHASE = ["1d71dce2", "2007-04-05T14:30:05.123Z", "34762720001", None, "1a09ff6d", "WI-BBGP", "+2", "60.00",
            "7.95"]


def check(feed: Feed, header: list[str], *rows: list[str | None]) -> Validation:
    return validate(Table(header=header, rows=[list(row) for row in rows]), feed, [], PACIFIC, 1.0)


def test_the_kinds_are_in_the_registry_and_post_after_what_others_refer_to() -> None:
    assert {"transcript", "purchase"} <= set(KINDS)
    assert posting_rank("transcript") > posting_rank("signal") > posting_rank("call")
    assert posting_rank("purchase") == posting_rank("transcript") < LAST_RANK


def test_the_shipped_templates_need_no_column_mapping() -> None:
    assert TRANSCRIPTS.template.name == "asapp_transcripts" and TRANSCRIPTS.mapping.columns == ()
    # ASAPP's capitals: the column finds the field of its name whatever its case.
    assert TRANSCRIPTS.target("conversation_externalId") == Target("message", "conversation_externalId")
    assert TRANSCRIPTS.target("CONVERSATION_EXTERNALID") == Target("message", "conversation_externalId")
    assert PURCHASES.target("product_quantity") == Target("purchase", "product_quantity")
    shown = format_feed(PURCHASES)
    assert "purchase requests to the embedded API" in shown
    assert "issue_id (string) -> purchase.issue_id" in shown


def test_a_message_row_becomes_the_ledgers_body() -> None:
    validation = check(TRANSCRIPTS, MESSAGE_HEADER, MESSAGE)
    assert validation.file_error is None and validation.rows[0].error is None
    mapped = map_rows(TRANSCRIPTS, validation, PACIFIC)
    [(number, request)] = mapped.requests
    assert (number, request.kind, request.method, request.path) == (2, "transcript", "POST",
                                                                    "/asapp/transcripts.json")
    assert request.body == {"message": {
        "conversation_externalId": "3245556677",
        "sender_externalId": "6433421",
        "sender_role": "agent",  # the template's spelling of the choice
        "text": 'Happy to help, "one" moment',
        "timestamp": "2022-03-16T18:42:24.488Z",
    }}
    # Row by row and column by column, the same request (text and key).
    assert map_row(TRANSCRIPTS, validation.rows[0].values, PACIFIC) == request


def test_a_purchase_row_becomes_the_ledgers_body_with_a_number_for_the_quantity() -> None:
    validation = check(PURCHASES, PURCHASE_HEADER, PURCHASE)
    assert validation.rows[0].error is None
    [(_, request)] = map_rows(PURCHASES, validation, PACIFIC).requests
    assert (request.kind, request.path) == ("purchase", "/asapp/purchases.json")
    assert request.text == (
        '{"purchase":{"external_customer_id":"34762720001","external_session_id":"1a09ff6d",'
        '"product_id":"WI-BBGP","product_quantity":2,"product_value_one_time":"60.00",'
        '"transaction_id":"1d71dce2","transaction_time":"2007-04-05T14:30:05.123Z",'
        '"transaction_value_recurring":"7.95"}}'
    )
    # The same row with its columns in another order is the same request.
    order = list(reversed(range(len(PURCHASE_HEADER))))
    again = check(PURCHASES, [PURCHASE_HEADER[i] for i in order], [PURCHASE[i] for i in order])
    assert map_rows(PURCHASES, again, PACIFIC).requests[0][1].key == request.key


@pytest.mark.parametrize(
    ("column", "value", "error"),
    [
        ("sender_role", "supervisor", "sender_role: 'supervisor' is not one of agent, customer, bot"),
        ("timestamp", "16/03/2022", "timestamp: '16/03/2022' is not an ISO 8601 UTC timestamp"),
        ("text", None, "text: missing value"),
        ("conversation_externalId", "x" * 256, "conversation_externalId: is 256 characters long"),
    ],
)
def test_a_bad_message_is_that_rows_error(column: str, value: str | None, error: str) -> None:
    bad = list(MESSAGE)
    bad[MESSAGE_HEADER.index(column)] = value
    validation = check(TRANSCRIPTS, MESSAGE_HEADER, MESSAGE, bad)
    assert validation.rows[0].error is None
    assert validation.rows[1].error is not None and validation.rows[1].error.startswith(error), validation.rows[1]
    assert [number for number, _ in map_rows(TRANSCRIPTS, validation, PACIFIC).requests] == [2]


def test_message_text_may_be_longer_than_a_string() -> None:
    long = list(MESSAGE)
    long[3] = "word " * 2000
    validation = check(TRANSCRIPTS, MESSAGE_HEADER, long)
    assert validation.rows[0].error is None
    assert map_rows(TRANSCRIPTS, validation, PACIFIC).requests[0][1].body["message"]["text"] == long[3]


@pytest.mark.parametrize(
    ("column", "value", "error"),
    [
        ("product_quantity", "1.5", "product_quantity: '1.5' is not a whole number"),
        ("product_quantity", None, "product_quantity: missing value"),
        ("product_value_one_time", "$60", "product_value_one_time: '$60' is not a decimal number"),
        ("transaction_time", "yesterday", "transaction_time: 'yesterday' is not an ISO 8601 UTC timestamp"),
        ("external_customer_id", None,
         "no external_customer_id, issue_id: the purchase cannot be attributed to a customer"),
    ],
)
def test_a_bad_purchase_is_that_rows_error(column: str, value: str | None, error: str) -> None:
    bad = list(PURCHASE)
    bad[PURCHASE_HEADER.index(column)] = value
    validation = check(PURCHASES, PURCHASE_HEADER, bad)
    assert validation.rows[0].error is not None and error in validation.rows[0].error, validation.rows[0]


def test_an_issue_id_alone_attributes_a_purchase() -> None:
    row = list(PURCHASE)
    row[PURCHASE_HEADER.index("external_customer_id")] = None
    row[PURCHASE_HEADER.index("issue_id")] = "1E10412200CC"
    validation = check(PURCHASES, PURCHASE_HEADER, row)
    assert validation.rows[0].error is None
    assert map_rows(PURCHASES, validation, PACIFIC).requests[0][1].body["purchase"]["issue_id"] == "1E10412200CC"


def test_file_level_gaps() -> None:
    no_text = check(TRANSCRIPTS, [c for c in MESSAGE_HEADER if c != "text"], MESSAGE[:3] + MESSAGE[4:])
    assert no_text.file_error is not None and "text" in no_text.file_error
    columns = [c for c in PURCHASE_HEADER if c not in ("external_customer_id", "issue_id")]
    unattributed = check(PURCHASES, columns, [v for c, v in zip(PURCHASE_HEADER, PURCHASE) if c in columns])
    assert unattributed.file_error == (
        "no column of this file gives external_customer_id, issue_id: rows could not be attributed")
    unknown = check(TRANSCRIPTS, [*MESSAGE_HEADER, "channel"], [*MESSAGE, "chat"])
    assert unknown.file_error is not None and "channel" in unknown.file_error


def test_a_feed_that_cannot_attribute_purchases_is_refused() -> None:
    text = """name = "purchases"
template = "asapp_transactions"
[mapping]
kind = "purchase"
[mapping.columns]
external_customer_id = "ignore"
issue_id = "ignore"
"""
    with pytest.raises(FeedError, match=r"no column gives purchase\.external_customer_id or purchase\.issue_id"):
        parse_feed(text)


def test_other_columns_of_a_keeping_template_go_to_the_records_attributes() -> None:
    feed = parse_feed("""name = "chats"
[template]
extends = "asapp_transcripts"
extra_columns = "custom_data"
[mapping]
kind = "transcript"
""")
    validation = check(feed, [*MESSAGE_HEADER, "channel"], [*MESSAGE, "chat"])
    assert validation.rows[0].error is None, validation.file_error
    body = map_rows(feed, validation, PACIFIC).requests[0][1].body
    assert body["message"]["attributes"] == {"channel": "chat"}


def test_a_constant_fills_a_field() -> None:
    feed = parse_feed("""name = "bots"
[template]
extends = "asapp_transcripts"
[mapping]
kind = "transcript"
[mapping.columns]
sender_role = "ignore"
[mapping.constants]
"message.sender_role" = "bot"
""")
    validation = check(feed, MESSAGE_HEADER, MESSAGE)
    assert map_rows(feed, validation, PACIFIC).requests[0][1].body["message"]["sender_role"] == "bot"


def test_map_row_refuses_a_row_without_a_required_field() -> None:
    values: dict[str, str | None] = dict(zip(MESSAGE_HEADER, MESSAGE))
    values["sender_externalId"] = None
    with pytest.raises(ValueError, match="the row has no sender_externalId"):
        map_row(TRANSCRIPTS, values, PACIFIC)
    purchase: dict[str, str | None] = dict(zip(PURCHASE_HEADER, PURCHASE))
    purchase["product_quantity"] = "0"  # zero is a value, not a missing one
    assert map_row(PURCHASES, purchase, PACIFIC).body["purchase"]["product_quantity"] == 0
