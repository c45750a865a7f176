"""Malformed and hostile input gets a 4xx, never a 500: ids, dates, durations and numbers out of
range, oversized and deeply nested bodies (refused after the token, before they are read)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from typing import Any

import httpx
import pytest

from core.config import MiB
from core.tenants import Tenant
from ledger.server import ApiServer
from ledger.store import LedgerStore
from tests.ledger.helpers import API, TenantClient, error

SIGNALS = f"{API}/transactions/signals.json"
CALL = {"external_id": "call-1", "start_time": "1435993200", "network_id": "n-1"}
RESPONSE_TIMEOUT_SECONDS = 5.0


@pytest.fixture
async def with_call(client: TenantClient) -> TenantClient:
    assert (await client.call(**CALL)).status_code == 201
    return client


# Ids, dates, durations and numbers


async def test_a_transaction_id_beyond_sqlites_integers_finds_no_call(with_call: TenantClient) -> None:
    for transaction_id in ("80000000-00000000", "FFFFFFFF-FFFFFFFF"):
        by_search = await with_call.signal({"transaction_id": transaction_id}, {"name": "Sale"})
        by_path = await with_call.http.post(
            f"{API}/transactions/{transaction_id}/signals.json",
            json={"signal": {"name": "Sale"}, "oauth_token": with_call.token},
        )
        for response in (by_search, by_path):
            assert (response.status_code, response.json()["errors"]["class"]) == (404, "RecordNotFound")


async def test_a_path_id_longer_than_a_parameter_is_refused(with_call: TenantClient) -> None:
    response = await with_call.http.post(
        f"{API}/transactions/{'7' * 256}/signals.json",
        json={"signal": {"name": "Sale"}, "oauth_token": with_call.token},
    )
    assert (response.status_code, response.json()) == (403, error(
        "RecordInvalid", "Validation failed: transaction_id in the path must be 1 to 255 characters"
    ))


OUT_OF_RANGE = "is out of range: in UTC it must fall from 1900-01-01 to 9999-12-30"


@pytest.mark.parametrize(
    "start_time", ["0001-01-01T00:00:00Z", "1899-12-31T23:59:59Z", "9999-12-31T12:00:00Z",
                   "00010101000000000", "0001/01/01 01:00:00 AM"],
)
async def test_a_call_dated_outside_the_renderable_range_is_refused(
    client: TenantClient, start_time: str
) -> None:
    response = await client.call(external_id="old", start_time=start_time)

    assert (response.status_code, response.json()) == (403, error(
        "RecordInvalid", f"Validation failed: call.start_time: {start_time!r} {OUT_OF_RANGE}"
    ))
    assert await client.transactions() == []


async def test_the_first_and_last_renderable_days_are_served(client: TenantClient) -> None:
    for name, start in (("first", "1900-01-01T00:00:00Z"), ("last", "9999-12-30T23:59:59Z")):
        assert (await client.call(external_id=name, start_time=start)).status_code == 201

    every = await client.transactions(to="9999-12-31")
    from_first_day = await client.transactions(from_="1900-01-01", to="9999-12-31")
    csv_page = await client.transactions_response("csv", to="9999-12-31")

    assert [row["start_time_t"] for row in every] == ["-2208988800", "253402214399"]
    assert [row["start_time_local"] for row in every] == [
        "1899-12-31T16:00:00-08:00", "9999-12-30T15:59:59-08:00"
    ]
    assert len(from_first_day) == 1  # the first call's day is 1899-12-31 in the account's zone
    assert csv_page.status_code == 200 and ",-2208988800," in csv_page.text


async def test_a_page_holding_an_older_ledgers_year_one_call_still_renders(
    client: TenantClient, api: ApiServer, acme: Tenant
) -> None:
    """Rows stored before the range rule (written to the store directly) are shown in UTC."""
    store = LedgerStore.open(api._settings.ledger_location)
    try:
        store.save_call(acme.name, "b7d5e1a4-0000-4000-8000-000000000001", {"start_time": -62135596800.0})
    finally:
        store.close()

    rows = await client.transactions()
    csv_page = await client.transactions_response("csv")

    assert rows[0]["start_time_local"] == "0001-01-01T00:00:00+00:00"
    assert csv_page.status_code == 200 and "0001-01-01T00:00:00+00:00" in csv_page.text


@pytest.mark.parametrize("duration", [604801, 10**30, "99999999999999999999", "１２"])  # noqa: RUF001 - fullwidth
async def test_durations_are_bounded(with_call: TenantClient, duration: Any) -> None:
    response = await with_call.call(**CALL, duration_in_seconds=duration)

    assert response.status_code == 403
    assert "must be a whole number of seconds from 0 to 604800" in response.json()["errors"]["invalid_data"]


async def test_a_week_long_call_is_accepted(with_call: TenantClient) -> None:
    assert (await with_call.call(**CALL, duration_in_seconds=604800)).status_code == 200


@pytest.mark.parametrize(
    "amount, message",
    [("١٢.٥٠", "must be money with at most 2 decimal places"), ("9" * 256, "at most 255 characters")],  # noqa: RUF001 - Arabic-Indic digits
)
async def test_money_is_ascii_digits_of_a_parameters_length(
    with_call: TenantClient, amount: str, message: str
) -> None:
    response = await with_call.signal({"network_id": "n-1"}, {"name": "Sale", "sale_amount": amount})

    assert response.status_code == 403 and message in response.json()["errors"]["invalid_data"]


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
async def test_numbers_must_be_finite(with_call: TenantClient, number: bytes) -> None:
    body = b'{"signal": {"name": "Sale", "sale_amount": %s}, "search": {"network_id": "n-1"}}' % number
    response = await with_call.http.post(
        SIGNALS, content=body, headers={"Authorization": f"Bearer {with_call.token}"}
    )

    assert response.status_code == 403
    assert response.json()["errors"]["invalid_data"].startswith(
        "Validation failed: the request body is not valid JSON"
    )


# Bodies: depth


def nested(depth: int) -> bytes:
    """A signal body (one level) whose ``custom_data`` holds arrays: ``depth`` levels in all."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return f'{{"signal": {{"name": "Sale"}}, "custom_data": {inner}}}'.encode()


async def test_json_nested_deeper_than_the_limit_is_a_400(with_call: TenantClient) -> None:
    auth = {"Authorization": f"Bearer {with_call.token}"}
    at_limit = await with_call.http.post(SIGNALS, content=nested(32), headers=auth)
    too_deep = await with_call.http.post(SIGNALS, content=nested(33), headers=auth)
    very_deep = await with_call.http.post(SIGNALS, content=nested(200_000), headers=auth)

    assert at_limit.status_code == 403  # read, and judged on its content
    expected = error("BadRequest", "the request body nests objects and arrays deeper than 32 levels")
    assert (too_deep.status_code, too_deep.json()) == (400, expected)
    assert (very_deep.status_code, very_deep.json()) == (400, expected)


async def test_a_deep_body_without_a_token_is_unauthorized(http: httpx.AsyncClient) -> None:
    response = await http.post(SIGNALS, content=nested(200_000))

    assert (response.status_code, response.json()) == (401, error("Unauthorized", "Missing oauth token"))


# Bodies: size, over a raw socket so the test sees what the server reads and when it answers


async def raw_request(api: ApiServer, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (and ``body``, if the server still reads) and return the answer; the
    server must then have closed the connection, not kept it open to drain the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        if body:
            writer.write(body)
            with contextlib.suppress(ConnectionError):  # the server may stop reading first
                await writer.drain()
        answer = await asyncio.wait_for(_read_response(reader), RESPONSE_TIMEOUT_SECONDS)
        assert answer[1]["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), RESPONSE_TIMEOUT_SECONDS) == b""
        return answer
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}
    content = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, content


def head(token: str | None, *extra: str) -> str:
    lines = [f"POST {SIGNALS} HTTP/1.1", "Host: test", "Content-Type: application/json", *extra]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return "\n".join(lines) + "\n"


async def test_a_huge_body_with_a_bad_token_is_refused_unread(api: ApiServer, acme: Tenant) -> None:
    """300 MB declared, nothing sent: the 401 comes at once, so nothing was waited for or read."""
    for token in ("wrong", None):
        status, _, content = await raw_request(api, head(token, "Content-Length: 300000000"))
        expected = "Invalid oauth token" if token else "Missing oauth token"
        assert (status, json.loads(content)) == (401, error("Unauthorized", expected))


async def test_a_declared_oversized_body_is_refused_unread_after_the_token(
    api: ApiServer, acme: Tenant
) -> None:
    status, _, content = await raw_request(api, head(acme.api_token, f"Content-Length: {MiB + 1}"))

    assert (status, json.loads(content)) == (
        413, error("PayloadTooLarge", f"the request body is larger than {MiB} bytes")
    )


async def test_a_chunked_body_is_cut_off_at_the_limit(api: ApiServer, acme: Tenant) -> None:
    chunk = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MiB // len(chunk) + 1))
    status, _, content = await raw_request(
        api, head(acme.api_token, "Transfer-Encoding: chunked"), chunks  # no last chunk: never ends
    )

    assert (status, json.loads(content)["errors"]["class"]) == (413, "PayloadTooLarge")


async def test_an_oversized_body_holding_the_token_is_unauthorized(
    http: httpx.AsyncClient, acme: Tenant
) -> None:
    body = {"signal": {"name": "Sale", "description": "x" * MiB}, "oauth_token": acme.api_token}

    response = await http.post(SIGNALS, json=body)

    assert (response.status_code, response.json()) == (401, error("Unauthorized", "Missing oauth token"))


async def test_a_body_at_the_limit_is_read(with_call: TenantClient) -> None:
    body = {"signal": {"name": "Sale", "description": ""}, "search": {"network_id": "n-1"}}
    padding = MiB - len(json.dumps(body).encode())
    body["signal"]["description"] = "x" * padding

    response = await with_call.http.post(
        SIGNALS, content=json.dumps(body).encode(), headers={"Authorization": f"Bearer {with_call.token}"}
    )

    assert response.status_code == 403  # read in full and judged: a network filter alone finds no call
    assert "transaction_id or start_time_t must be present" in response.text


async def test_the_body_limit_is_configurable(settings: Any, tenants: Any, acme: Tenant) -> None:
    server = ApiServer(settings.replace(api__max_body_bytes=100), tenants)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(
                SIGNALS, json={"signal": {"name": "x" * 100}},
                headers={"Authorization": f"Bearer {acme.api_token}"},
            )
    finally:
        await server.close()

    assert response.status_code == 413


# Routing


async def test_a_wrong_method_gets_405_with_every_allowed_method(http: httpx.AsyncClient) -> None:
    response = await http.delete(SIGNALS)
    listing = await http.post(f"{API}/transactions.json")

    assert (response.status_code, response.headers["Allow"]) == (405, "POST, PUT")
    assert response.json() == error("RoutingError", "Method Not Allowed")
    assert (listing.status_code, listing.headers["Allow"]) == (405, "GET")


async def test_an_unknown_path_is_a_404_in_the_apis_shape(http: httpx.AsyncClient) -> None:
    response = await http.get(f"{API}/nothing-here")

    assert (response.status_code, response.json()) == (404, error("RoutingError", "Not Found"))


# The CSV export


async def test_the_csv_export_neutralises_formulas_and_keeps_numbers(client: TenantClient) -> None:
    hostile = '=HYPERLINK("http://evil.example","click")'
    created = await client.call(
        external_id=hostile, start_time="1899-12-31T23:00:00-08:00", network_id="-2+3+cmd|' /C calc'!A0",
        advertiser_id_from_network="@SUM(A1)", duration_in_seconds="12",
    )
    assert created.status_code == 201, created.text

    page = await client.transactions_response("csv")

    header, row = list(csv.reader(io.StringIO(page.text)))
    cells = dict(zip(header, row, strict=True))
    assert cells["external_id"] == "'" + hostile
    assert cells["network_id"] == "'-2+3+cmd|' /C calc'!A0"
    assert cells["advertiser_id_from_network"] == "'@SUM(A1)"
    assert cells["start_time_t"] == "-2208963600"  # a negative number stays a number
    assert cells["duration_in_seconds"] == "12"


# NUL characters (SQLite would store one; PostgreSQL's text cannot hold one)


async def test_a_nul_character_anywhere_is_refused_never_a_server_error(
    with_call: TenantClient, http: httpx.AsyncClient,
) -> None:
    auth = with_call._auth()
    nul = "a\x00b"
    refused = [
        await with_call.call(external_id=nul, start_time="1435993200"),
        await with_call.call(external_id="call-2", start_time="1435993200", attributes={nul: "x"}),
        await http.post(SIGNALS, json={"search": {"transaction_id": nul}, "signal": {"name": "Sale"}}, headers=auth),
        await with_call.transcript(conversation_externalId=nul, sender_externalId="s", sender_role="agent",
                                   text="t", timestamp="2022-03-16T18:42:24Z"),
        await http.post(f"{API}/transactions/a%00b/signals.json", json={"signal": {"name": "Sale"}}, headers=auth),
        await http.put(f"{API}/lookup_tables/a%00b/rows", headers=auth,
                       json={"primary_key": "+18885550001", "data": {"Campaign": "x"}}),
        await http.get(f"{API}/asapp/transcripts.json", params={"conversation_externalId": nul}, headers=auth),
    ]
    assert [response.status_code for response in refused] == [403] * len(refused)
    assert all("NUL character" in response.json()["errors"]["invalid_data"] for response in refused)
    for token in ({"params": {"oauth_token": nul}}, {"json": {"oauth_token": nul, "call": CALL}}):
        response = await http.request("GET" if "params" in token else "POST",
                                      f"{API}/transactions.json" if "params" in token else f"{API}/calls.json", **token)
        assert response.status_code == 401
    listed = await http.get(f"{API}/transactions.json", headers=auth)
    assert [row["transaction_type"] for row in listed.json()] == ["call"]  # nothing else was written
