"""Response bodies: the Signal API's exact shapes, call records, and Transactions API rows.

Times go out the way the Signal API document shows them: ``*_t`` as epoch seconds in a string,
and a readable ``MM/DD/YYYY HH:MM AM/PM UTC``. Transactions API rows add ISO 8601 times in the
tenant's time zone, as the platform reports in its own zone. Requests cannot store a time outside
``core.timestamps``' range; a row written before that rule that cannot be shown in the tenant's
zone is shown in UTC rather than failing its page. CSV cells go through ``core.csvsafe``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.csvsafe import safe_cell
from ledger.ids import format_transaction_id
from ledger.records import Call, LookupResult, Signal, SignalContent, TransactionRow

DEFAULT_COLUMNS_TOKEN = "$invoca_default_columns"
DEFAULT_COLUMNS = (
    "transaction_id",
    "corrects_transaction_id",
    "transaction_type",
    "complete_call_id",
    "call_transaction_id",
    "transaction_time",
    "start_time_t",
    "start_time_local",
    "duration_in_seconds",
    "calling_phone_number",
    "external_id",
    "advertiser_id_from_network",
    "advertiser_campaign_id_from_network",
    "network_id",
)
OPTIONAL_COLUMNS = ("signals", "custom_data", "attributes")


def epoch_text(moment: float) -> str:
    return str(int(moment // 1))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(moment: float) -> datetime:
    """Epoch arithmetic, which covers years 1-9999 where ``fromtimestamp`` may not."""
    return _EPOCH + timedelta(seconds=moment)


def display_time(moment: float) -> str:
    return _utc(moment).strftime("%m/%d/%Y %I:%M %p UTC")


def local_iso(moment: float, tz: ZoneInfo) -> str:
    instant = _utc(moment)
    try:
        return instant.astimezone(tz).isoformat(timespec="seconds")
    except OverflowError:  # a year-1 or year-9999 row of an older ledger: UTC still shows it
        return instant.isoformat(timespec="seconds")


def _transaction_id(sequence: int | None) -> str | None:
    return None if sequence is None else format_transaction_id(sequence)


def signal_fields(content: SignalContent) -> dict[str, Any]:
    """A signal as the document shows it; ``sale_amount`` only when there is one."""
    fields: dict[str, Any] = {
        "name": content.name,
        "partner_unique_id": content.partner_unique_id,
        "description": content.description,
        "occurred_at_time_t": epoch_text(content.occurred_at),
        "occurred_at_time": display_time(content.occurred_at),
    }
    if content.sale_amount is not None:
        fields["sale_amount"] = content.sale_amount
    fields["value"] = "true" if content.value else "false"
    fields["custom_parameter_1"] = content.custom_parameter_1
    fields["custom_parameter_2"] = content.custom_parameter_2
    fields["custom_parameter_3"] = content.custom_parameter_3
    return fields


def signal_response(call: Call, signal: Signal) -> dict[str, Any]:
    return {
        "signal": {
            "transaction_id": format_transaction_id(signal.transaction),
            "corrects_transaction_id": _transaction_id(signal.corrects),
            **signal_fields(signal.content),
        },
        "call": {
            "transaction_id": call.transaction_id,
            "start_time_t": epoch_text(call.start_time),
            "call_start_time": display_time(call.start_time),
        },
    }


def custom_data_list(data: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in data.items()]


def call_response(call: Call) -> dict[str, Any]:
    content = call.content
    return {
        "call": {
            "transaction_id": content.transaction_id,
            "complete_call_id": call.complete_call_id,
            "external_id": content.external_id,
            "start_time_t": epoch_text(content.start_time),
            "call_start_time": display_time(content.start_time),
            "duration_in_seconds": content.duration_in_seconds,
            "calling_phone_number": content.calling_phone_number,
            "advertiser_id_from_network": content.advertiser_id_from_network,
            "advertiser_campaign_id_from_network": content.advertiser_campaign_id_from_network,
            "network_id": content.network_id,
            "attributes": content.attributes,
            "custom_data": custom_data_list(call.custom_data),
            "last_transaction_id": format_transaction_id(call.transaction),
            "corrects_transaction_id": _transaction_id(call.corrects),
        }
    }


def lookup_response(result: LookupResult) -> dict[str, Any]:
    row = result.row
    return {
        "lookup_row": {
            "table": row.table,
            "primary_key": row.primary_key,
            "secondary_key": row.secondary_key or None,
            "data": row.data,
        },
        "updated_calls": [
            {
                "complete_call_id": call.complete_call_id,
                "call_transaction_id": call.transaction_id,
                "transaction_id": format_transaction_id(sequence),
            }
            for call, sequence in result.updated_calls
        ],
    }


def transaction_row(row: TransactionRow, columns: Sequence[str], tz: ZoneInfo) -> dict[str, Any]:
    """One Transactions API row with exactly ``columns``, from the record stored with it."""
    call = row.record["call"]
    signal = row.record["signal"]
    values: dict[str, Any] = {
        "transaction_id": format_transaction_id(row.sequence),
        "corrects_transaction_id": _transaction_id(row.corrects),
        "transaction_type": row.transaction_type.value,
        "complete_call_id": row.record["complete_call_id"],
        "call_transaction_id": call["transaction_id"],
        "transaction_time": local_iso(row.recorded_at, tz),
        "start_time_t": epoch_text(call["start_time"]),
        "start_time_local": local_iso(call["start_time"], tz),
        "duration_in_seconds": call["duration_in_seconds"],
        "calling_phone_number": call["calling_phone_number"],
        "external_id": call["external_id"],
        "advertiser_id_from_network": call["advertiser_id_from_network"],
        "advertiser_campaign_id_from_network": call["advertiser_campaign_id_from_network"],
        "network_id": call["network_id"],
    }
    if "signals" in columns:
        values["signals"] = [signal_fields(SignalContent(**signal))] if signal else []
    if "custom_data" in columns:
        values["custom_data"] = row.record["custom_data"]
    if "attributes" in columns:
        values["attributes"] = call["attributes"]
    return values


def transactions_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV with a header; nested values (signals, custom data) are JSON text in their cell, and
    a cell a spreadsheet would evaluate as a formula is quoted (``core.csvsafe``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[column]) for column in columns])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return safe_cell(value)
