"""Every way a request can be refused, with the document's status codes and error bodies."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core.tenants import Tenant, TenantStore
from core.timestamps import FORMATS_HINT
from tests.ledger.helpers import API, TenantClient, error

SIGNALS = f"{API}/transactions/signals.json"
CALL = {"transaction_id": "00000000-00000001", "external_id": "call-1", "start_time": "1435993200"}
SEARCH = {"transaction_id": "00000000-00000001"}


@pytest.fixture
async def with_call(client: TenantClient) -> TenantClient:
    assert (await client.call(**CALL)).status_code == 201
    return client


async def test_no_search_parameters_is_the_documents_validation_error(with_call: TenantClient) -> None:
    response = await with_call.signal({"calling_phone_number": "+18885551212"}, {"name": "Sale"})

    assert response.status_code == 403
    assert response.json() == error(
        "RecordInvalid", "Validation failed: transaction_id or start_time_t must be present"
    )


MONEY_RULE = "must be money with at most 2 decimal places and no currency symbol or separators"
INVALID_SIGNALS: list[tuple[dict[str, Any], str]] = [
    ({}, "signal.name must be present"),
    ({"name": "  "}, "signal.name: can't be blank"),
    (
        {"name": "Sale", "sale_amount": "100.123"},
        f"signal.sale_amount: {MONEY_RULE}, got '100.123'",
    ),
    (
        {"name": "Sale", "sale_amount": "$100"},
        f"signal.sale_amount: {MONEY_RULE}, got '$100'",
    ),
    (
        {"name": "Sale", "sale_amount": "1,000.00"},
        f"signal.sale_amount: {MONEY_RULE}, got '1,000.00'",
    ),
    ({"name": "Sale", "value": "yes"}, "signal.value: must be true, false, 1 or 0, got 'yes'"),
    ({"name": "Sale", "value": 2}, "signal.value: must be true, false, 1 or 0, got 2"),
    (
        {"name": "Sale", "custom_parameter_3": "x" * 256},
        "signal.custom_parameter_3: must be at most 255 characters, got 256",
    ),
    ({"name": "Sale", "sale_ammount": "1.00"}, "signal.sale_ammount is not a known parameter"),
    (
        {"name": "Sale", "occurred_at_time": "yesterday"},
        f"signal.occurred_at_time: 'yesterday' is not a timestamp: {FORMATS_HINT}",
    ),
    (
        {"name": "Sale", "occurred_at_time": "2016/02/30 01:00:00 PM"},
        ("signal.occurred_at_time: '2016/02/30 01:00:00 PM' is not a valid date and time:"
        " day is out of range for month"),
    ),
]


async def test_invalid_signal_fields(with_call: TenantClient) -> None:
    for signal, message in INVALID_SIGNALS:
        response = await with_call.signal(SEARCH, signal)

        assert (response.status_code, response.json()) == (
            403,
            error("RecordInvalid", f"Validation failed: {message}"),
        ), signal


async def test_nothing_is_written_when_a_request_is_refused(with_call: TenantClient) -> None:
    rows = await with_call.transactions()

    await with_call.signal(SEARCH, {"name": "Sale", "sale_amount": "1.234"})
    await with_call.signal(SEARCH, {"name": "Sale"}, custom_data=[{"name": "Unknown", "value": "x"}])

    assert await with_call.transactions() == rows


INVALID_SEARCHES: list[tuple[dict[str, Any], str]] = [
    (
        {"calling_phone_number": "555-0123", "call_start_time": "1435993200"},
        ("search.calling_phone_number: must be a phone number in E.164 format such as '+1 8885551212',"
        " got '555-0123'"),
    ),
    (
        {"call_start_time": "1435993200", "duration_in_seconds": -5},
        "search.duration_in_seconds: must be a whole number of seconds from 0 to 604800, got -5",
    ),
    (
        {"call_record_id": "not-a-guid"},
        ("search.call_record_id: must be a GUID such as 0f8fad5b-d9cb-469f-a165-70867728950e,"
        " got 'not-a-guid'"),
    ),
    ({"transactionid": "00000000-00000001"}, "search.transactionid is not a known parameter"),
]


async def test_invalid_search_fields(with_call: TenantClient) -> None:
    for search, message in INVALID_SEARCHES:
        response = await with_call.signal(search, {"name": "Sale"})

        assert (response.status_code, response.json()) == (
            403,
            error("RecordInvalid", f"Validation failed: {message}"),
        ), search


async def test_custom_data_outside_the_dictionary_names_the_field(with_call: TenantClient) -> None:
    response = await with_call.signal(
        SEARCH, {"name": "Sale"}, custom_data=[{"name": "Shoe Size", "value": 9}]
    )

    assert response.status_code == 403
    assert response.json() == error(
        "RecordInvalid",
        "Validation failed: custom_data: field 'Shoe Size' is not in the data dictionary of this account",
    )


NOT_JSON_OBJECTS = [
    (
        b"{not json",
        ("Validation failed: the request body is not valid JSON: Expecting property name enclosed"
        " in double quotes: line 1 column 2 (char 1)"),
    ),
    (b"", "Validation failed: the request body must be a JSON object"),
    (b"[1, 2]", "Validation failed: the request body must be a JSON object"),
]


async def test_a_body_that_is_not_a_json_object(with_call: TenantClient, http: httpx.AsyncClient) -> None:
    for content, message in NOT_JSON_OBJECTS:
        response = await http.post(
            SIGNALS, content=content, headers={"Authorization": f"Bearer {with_call.token}"}
        )

        assert (response.status_code, response.json()) == (403, error("RecordInvalid", message)), content


async def test_a_bad_body_without_a_token_is_unauthorized_first(http: httpx.AsyncClient) -> None:
    response = await http.post(SIGNALS, content=b"{not json")

    assert response.status_code == 401
    assert response.json() == error("Unauthorized", "Missing oauth token")


WITHOUT_TOKEN: list[dict[str, Any]] = [
    {"json": {"signal": {"name": "Sale"}, "search": SEARCH}},
    {"json": {"signal": {"name": "Sale"}, "search": SEARCH, "oauth_token": ""}},
    {
        "json": {"signal": {"name": "Sale"}, "search": SEARCH},
        "headers": {"Authorization": "Basic dXNlcjpwYXNz"},
    },
]


async def test_a_missing_token_is_401(http: httpx.AsyncClient) -> None:
    for credentials in WITHOUT_TOKEN:
        response = await http.post(SIGNALS, **credentials)

        assert response.status_code == 401, credentials
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json() == error("Unauthorized", "Missing oauth token")


WRONG_TOKEN: list[dict[str, Any]] = [
    {"json": {"signal": {"name": "Sale"}, "search": SEARCH, "oauth_token": "wrong"}},
    {"json": {"signal": {"name": "Sale"}, "search": SEARCH}, "params": {"oauth_token": "wrong"}},
    {"json": {"signal": {"name": "Sale"}, "search": SEARCH}, "headers": {"Authorization": "Bearer wrong"}},
    {
        "json": {"signal": {"name": "Sale"}, "search": SEARCH},
        "headers": {"Authorization": 'Token token="wrong"'},
    },
]


async def test_a_bad_token_is_401(with_call: TenantClient, http: httpx.AsyncClient) -> None:
    for credentials in WRONG_TOKEN:
        response = await http.post(SIGNALS, **credentials)

        assert (response.status_code, response.json()) == (
            401,
            error("Unauthorized", "Invalid oauth token"),
        ), credentials


async def test_every_documented_token_placement_works(
    with_call: TenantClient, http: httpx.AsyncClient
) -> None:
    token = with_call.token
    body: dict[str, Any] = {"search": SEARCH, "signal": {"name": "Sale"}}
    placements: dict[str, dict[str, Any]] = {
        "body": {"json": {**body, "oauth_token": token}},
        "query": {"json": body, "params": {"oauth_token": token}},
        "bearer": {"json": body, "headers": {"Authorization": f"Bearer {token}"}},
        "rails": {"json": body, "headers": {"Authorization": f"Token token={token}"}},
        "rails-quoted": {"json": body, "headers": {"Authorization": f'Token token="{token}"'}},
    }

    for partner_unique_id, (how, request) in enumerate(placements.items()):
        request["json"] = {
            **request["json"],
            "signal": {"name": "Sale", "partner_unique_id": partner_unique_id},
        }
        response = await http.post(SIGNALS, **request)

        assert response.status_code == 201, how


async def test_a_rotated_token_stops_working_at_once(
    with_call: TenantClient, tenants: TenantStore, acme: Tenant
) -> None:
    new_token = tenants.rotate_token(acme.name)

    old = await with_call.signal(SEARCH, {"name": "Sale"})
    new = await TenantClient(with_call.http, new_token).signal(SEARCH, {"name": "Sale"})

    assert old.status_code == 401
    assert new.status_code == 201


async def test_a_disabled_account_may_not_use_the_api(
    with_call: TenantClient, tenants: TenantStore, acme: Tenant
) -> None:
    tenants.set_enabled(acme.name, False)

    response = await with_call.signal(SEARCH, {"name": "Sale"})

    assert response.status_code == 403
    assert response.json() == error(
        "UnauthorizedOperation", "You do not have permissions to perform the requested operation."
    )


NO_PERMISSION = error(
    "UnauthorizedOperation", "You do not have permissions to perform the requested operation."
)


async def test_a_removed_login_stops_the_token_until_a_new_password(
    with_call: TenantClient, tenants: TenantStore, acme: Tenant, other_client: TenantClient
) -> None:
    tenants.remove_login(acme.name)

    posted = await with_call.signal(SEARCH, {"name": "Sale"})
    call = await with_call.call(**{**CALL, "transaction_id": "00000000-00000002", "external_id": "c2"})
    read = await with_call.transactions_response()
    assert [(r.status_code, r.json()) for r in (posted, call, read)] == [(403, NO_PERMISSION)] * 3
    assert (await other_client.call(**CALL)).status_code == 201  # another tenant is untouched

    tenants.set_password(acme.name, "a-brand-new-password")
    again = await with_call.signal(SEARCH, {"name": "Sale"})
    assert again.status_code == 201, again.text
    assert len(await with_call.transactions(transaction_type="signal")) == 1


async def test_re_enabling_a_disabled_account_restores_its_token(
    with_call: TenantClient, tenants: TenantStore, acme: Tenant
) -> None:
    tenants.set_enabled(acme.name, False)
    refused = await with_call.signal(SEARCH, {"name": "Sale"})
    tenants.set_enabled(acme.name, True)
    restored = await with_call.signal(SEARCH, {"name": "Sale"})

    assert (refused.status_code, refused.json()) == (403, NO_PERMISSION)
    assert restored.status_code == 201, restored.text


async def test_a_malformed_api_version_is_not_found(with_call: TenantClient, http: httpx.AsyncClient) -> None:
    for version in ("latest", "2020-1-01", "20201001"):
        response = await http.post(
            f"/api/{version}/transactions/signals.json",
            json={"search": SEARCH, "signal": {"name": "Sale"}, "oauth_token": with_call.token},
        )

        assert (response.status_code, response.json()) == (
            404,
            error("RecordNotFound", f"Unknown API version {version!r}; use a date such as 2020-10-01"),
        )


async def test_any_well_formed_api_version_is_served(
    with_call: TenantClient, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        "/api/2017-02-07/transactions/signals.json",
        json={"search": SEARCH, "signal": {"name": "Sale"}, "oauth_token": with_call.token},
    )

    assert response.status_code == 201
