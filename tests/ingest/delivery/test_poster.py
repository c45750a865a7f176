"""Posting against a real HTTP server on loopback: rate limit, retries, and what each answer means."""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from core.config import Settings
from core.db import Database
from core.tenants import Tenant, TenantStore
from core.uploads import UploadStore
from ingest.pipeline import Ingest
from ingest.processor import RunSummary
from ingest.reports import CUSTOMER_TEXTS
from tests.ingest.conftest import (
    Answer,
    FakeApi,
    drop,
    errors,
    idempotent,
    stall,
    status,
)
from tests.support.at_rest import stored_bytes, stored_csv

NO_CALL = "No call found. Please refer to the documentation."


def signals(count: int, start: int = 1) -> str:
    lines = ["transaction_id,name,partner_unique_id"]
    lines += [f"T{n},Sale,{n}" for n in range(start, start + count)]
    return "\n".join(lines) + "\n"


async def post(ingest: Ingest, tenants: TenantStore, uploads: UploadStore, content: str,
               name: str = "sales.csv") -> RunSummary:
    upload, path = drop(tenants, uploads, "acme", f"in/{name}", content)
    await ingest.stage(upload, path)
    return await ingest.run()


def report_rows(ingest: Ingest, summary: RunSummary, index: int = 0) -> dict[str, list[str]]:
    """Row number -> [status, transaction id, error] from a run's report."""
    report = summary.files[index].report
    assert report is not None
    lines = stored_csv(report, ingest.settings)
    start = lines.index(["row", "status", "transaction_id", "error"]) + 1
    return {line[0]: line[1:] for line in lines[start:]}


def mails(ingest: Ingest) -> list[str]:
    """The text of each mail written to the .eml outbox, decoded."""
    folder = ingest.settings.mail_spool
    paths = sorted(folder.glob("*.eml")) if folder.exists() else []
    messages = [email.message_from_bytes(stored_bytes(path, ingest.settings), policy=email.policy.default)
                for path in paths]
    return [message.get_body(("plain",)).get_content() for message in messages]  # type: ignore[union-attr]


@pytest.fixture
def limited(ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore) -> Ingest:
    settings = ingest_settings.replace(post__rate_limit_requests=5, post__rate_limit_window_seconds=1.0)
    return Ingest(settings, state_db, tenants, uploads)


async def test_rate_limit_holds_as_the_server_sees_it_across_files(
    limited: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    for name, start in (("a.csv", 1), ("b.csv", 7)):
        upload, path = drop(tenants, uploads, "acme", f"in/{name}", signals(6, start))
        await limited.stage(upload, path)
    summary = await limited.run()
    await limited.aclose()
    assert summary.run.posted == 12
    arrivals = [request.at for request in fake_api.received]
    assert len(arrivals) == 12
    # No window of 1 s ever holds more than 5: the 6th request after any request is >= 1 s later.
    assert all(arrivals[i + 5] - arrivals[i] >= 1.0 for i in range(len(arrivals) - 5))


async def test_rate_limit_counts_sends_of_an_earlier_run(
    limited: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi,
    ingest_settings: Settings, state_db: Database,
) -> None:
    await post(limited, tenants, uploads, signals(4), "a.csv")
    await limited.aclose()
    # Another process (a new Ingest) posting right after must count those 4 sends.
    other = Ingest(limited.settings, state_db, tenants, uploads)
    await post(other, tenants, uploads, signals(4, start=5), "b.csv")
    await other.aclose()
    arrivals = [request.at for request in fake_api.received]
    assert all(arrivals[i + 5] - arrivals[i] >= 1.0 for i in range(len(arrivals) - 5))


async def test_403_and_404_are_row_errors_with_the_servers_message(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    fake_api.answer(
        errors(404, "RecordNotFound", NO_CALL),
        errors(403, "RecordInvalid", "Validation failed: transaction_id or start_time_t must be present"),
    )
    summary = await post(ingest, tenants, uploads, signals(3))
    rows = report_rows(ingest, summary)
    # The report puts what the customer can check in place of "refer to the documentation".
    assert rows["2"] == ["failed", "", f"RecordNotFound: {CUSTOMER_TEXTS[NO_CALL]}"]
    assert rows["3"] == ["failed", "", ("RecordInvalid: Validation failed: transaction_id or start_time_t"
                                       " must be present")]
    assert rows["4"][0] == "posted"
    assert len(fake_api.received) == 3  # row errors are not retried
    assert summary.files[0].state == "partly failed"
    [mail] = mails(ingest)
    assert "1 posted, 2 failed" in mail


async def test_a_file_of_which_no_row_was_posted_is_failed_not_partly_failed(
    ingest: Ingest, state_db: Database, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    fake_api.answer(*[errors(404, "RecordNotFound", NO_CALL)] * 2)
    summary = await post(ingest, tenants, uploads, signals(2))
    [done] = summary.files
    assert (done.state, done.posted, done.failed) == ("failed", 0, 2)
    assert uploads.get(done.upload_id).state == "failed"  # type: ignore[union-attr]
    [mail] = mails(ingest)
    assert "in/sales.csv (feed signals): failed" in mail
    # The operator sends its rows again (the calls have arrived since): the failed file reopens.
    ids = [row["id"] for row in state_db.query("SELECT id FROM ingest_outbox ORDER BY id")]
    assert ingest.retry_rows(ids) == 2
    assert uploads.get(done.upload_id).state == "processing"  # type: ignore[union-attr]
    [again] = (await ingest.run()).files
    await ingest.aclose()
    assert (again.state, again.posted, again.failed) == ("posted", 2, 0)


@pytest.fixture
def patient(ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore) -> Ingest:
    """Waits up to 5 s when the server asks for it (longer would end this run's posting)."""
    return Ingest(ingest_settings.replace(post__backoff_max_seconds=5.0), state_db, tenants, uploads)


async def test_429_is_retried_after_retry_after_seconds(
    patient: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    ingest = patient
    fake_api.answer(status(429, {"errors": {"class": "RateLimited"}}, {"Retry-After": "1"}))
    summary = await post(ingest, tenants, uploads, signals(1))
    await ingest.aclose()
    assert summary.ok
    first, second = fake_api.received
    assert second.key == first.key
    assert second.at - first.at >= 1.0


async def test_a_retry_after_beyond_the_longest_backoff_ends_this_runs_posting(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    fake_api.answer(status(429, {"errors": {"class": "RateLimited", "invalid_data": "slow down"}},
                           {"Retry-After": "3600"}))
    summary = await post(ingest, tenants, uploads, signals(2))
    assert len(fake_api.received) == 1
    assert summary.run.pending == 2
    assert any("asked to retry after 3600s" in problem for problem in summary.problems)


async def test_retry_after_may_be_an_http_date(
    patient: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    ingest = patient
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    fake_api.answer(status(503, headers={"Retry-After": when}))
    summary = await post(ingest, tenants, uploads, signals(1))
    await ingest.aclose()
    assert summary.ok
    first, second = fake_api.received
    assert second.at - first.at >= 0.5  # the date has one-second resolution


async def test_5xx_and_time_outs_are_retried(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, fake_api: FakeApi,
) -> None:
    ingest = Ingest(ingest_settings.replace(post__timeout_seconds=0.2), state_db, tenants, uploads)
    fake_api.answer(status(502), stall(1.0))
    summary = await post(ingest, tenants, uploads, signals(1))
    await ingest.aclose()
    assert summary.ok
    assert len(fake_api.received) == 3
    assert summary.files[0].state == "posted"


async def test_destination_down_for_the_whole_run_keeps_rows_pending(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    fake_api.answer(*[status(503)] * 3)  # max_attempts is 3 in these tests
    summary = await post(ingest, tenants, uploads, signals(3))
    assert len(fake_api.received) == 3  # only the first row was tried; the rest wait
    assert (summary.run.posted, summary.run.failed, summary.run.pending) == (0, 0, 3)
    assert summary.files == [] and not summary.ok
    [upload] = uploads.history("acme")
    assert upload.state == "processing"
    [mail] = mails(ingest)
    assert "The destination is not answering" in mail and "HTTP 503" in mail
    # Next run, the destination is back: every row lands once.
    again = await ingest.run()
    assert again.run.posted == 3 and again.files[0].state == "posted"
    assert sorted(fake_api.applied.values()) == [1, 2, 3]


async def test_a_row_the_server_keeps_failing_is_failed_once_others_got_through(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, fake_api: FakeApi,
) -> None:
    ingest = Ingest(ingest_settings.replace(post__max_row_attempts_total=3), state_db, tenants, uploads)
    fake_api.answer(*[poison(fake_api, "T2")] * 10)
    summary = await post(ingest, tenants, uploads, signals(3))
    await ingest.aclose()
    rows = report_rows(ingest, summary)
    assert rows["3"] == ["failed", "", "HTTP 500: boom (after 3 attempts)"]
    assert rows["2"][0] == rows["4"][0] == "posted"


def poison(api: FakeApi, *transaction_ids: str, code: int = 500) -> Answer:
    """An answer that fails the rows naming these transaction ids, and takes the others."""
    async def answer(request: Request, body: dict[str, Any]) -> Response:
        if body["search"]["transaction_id"] in transaction_ids:
            return await status(code, {"detail": "boom"})(request, body)
        return await idempotent(api, request.headers.get("idempotency-key"))

    return answer


def tries_of(api: FakeApi, transaction_id: str) -> list[int]:
    """Where in the order of arrival the server got requests for this row."""
    return [i for i, got in enumerate(api.received) if got.body["search"]["transaction_id"] == transaction_id]


async def test_a_poison_row_first_in_line_blocks_neither_its_file_nor_the_next_files(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, fake_api: FakeApi,
) -> None:
    settings = ingest_settings.replace(post__max_row_attempts_total=6, post__backoff_base_seconds=0.05)
    ingest = Ingest(settings, state_db, tenants, uploads)
    fake_api.answer(*[poison(fake_api, "T1")] * 100)
    for name, start in (("a.csv", 1), ("b.csv", 4)):
        upload, path = drop(tenants, uploads, "acme", f"in/{name}", signals(3, start))
        await ingest.stage(upload, path)
    started = time.monotonic()
    first = await ingest.run()
    assert time.monotonic() - started < 5
    # Every other row went; the file behind the poison row is done; T1 was tried max_attempts
    # times, with other rows sent between its tries rather than after them.
    assert first.run.posted == 5 and first.run.pending == 1
    assert [item.path for item in first.files] == ["in/b.csv"] and first.files[0].state == "posted"
    poisoned = tries_of(fake_api, "T1")
    assert len(poisoned) == 3 and poisoned[0] == 0 and poisoned[-1] > tries_of(fake_api, "T2")[0]
    [stuck] = ingest.outbox.stuck("acme")
    assert (stuck.file, stuck.row, stuck.attempts, stuck.state) == ("in/a.csv", 2, 3, "pending")
    assert stuck.error == "HTTP 500: boom" and stuck.next_attempt_at is not None
    # Set aside: the next run does not spend a single request on it.
    again = await ingest.run()
    assert len(tries_of(fake_api, "T1")) == 3 and again.files == []
    # Once its time has come, it fails its last tries and its file finishes, partly failed.
    state_db.execute("UPDATE ingest_outbox SET next_attempt_at = '2000-01-01T00:00:00.000Z'")
    last = await ingest.run()
    await ingest.aclose()
    assert len(tries_of(fake_api, "T1")) == 6
    [done] = last.files
    assert (done.path, done.state, done.posted, done.failed) == ("in/a.csv", "partly failed", 2, 1)
    assert report_rows(ingest, last)["2"] == ["failed", "", "HTTP 500: boom (after 6 attempts)"]
    assert ingest.outbox.stuck("acme")[0].state == "failed"
    [mail] = mails(ingest)
    assert "2 posted, 1 failed" in mail


async def test_a_row_still_failing_past_its_age_is_failed_with_the_reason(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, fake_api: FakeApi,
) -> None:
    ingest = Ingest(ingest_settings.replace(post__max_row_age_hours=0.0), state_db, tenants, uploads)
    fake_api.answer(*[poison(fake_api, "T2", code=502)] * 10)
    summary = await post(ingest, tenants, uploads, signals(2))
    await ingest.aclose()
    assert report_rows(ingest, summary)["3"] == ["failed", "", "HTTP 502: boom (after 3 attempts; queued 0 h ago)"]
    assert summary.files[0].state == "partly failed"


@pytest.mark.parametrize("code", [400, 409, 422])
async def test_a_request_refused_for_its_content_fails_at_once(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi, code: int,
) -> None:
    fake_api.answer(errors(code, "RecordInvalid", "bad row"))
    summary = await post(ingest, tenants, uploads, signals(2))
    assert len(fake_api.received) == 2
    assert report_rows(ingest, summary)["2"] == ["failed", "", "RecordInvalid: bad row"]
    assert ingest.outbox.stuck("acme") == []  # the destination's verdict, not a stuck delivery


async def test_rows_of_a_down_destination_keep_their_place_and_are_not_set_aside(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    fake_api.answer(*[status(503)] * 3)
    summary = await post(ingest, tenants, uploads, signals(4))
    assert summary.run.pending == 4
    assert len(fake_api.received) == 3  # max_attempts tries, of two rows, in a row: down
    stuck = ingest.outbox.stuck("acme")
    assert [item.row for item in stuck] == [2, 3] and all(item.next_attempt_at is None for item in stuck)
    assert [item.row_number for item in ingest.outbox.pending(["acme"])] == [2, 3, 4, 5]


async def test_connection_refused_means_down(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
) -> None:
    from tests.conftest import free_port
    ingest = Ingest(ingest_settings.replace(api__listen_port=free_port()), state_db, tenants, uploads)
    summary = await post(ingest, tenants, uploads, signals(2))
    await ingest.aclose()
    assert summary.run.pending == 2
    assert any("cannot reach http://127.0.0.1" in problem for problem in summary.problems)


async def test_401_stops_the_tenant_and_mails_without_the_token(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    fake_api.answer(errors(401, "Unauthorized", "Invalid oauth token"))
    summary = await post(ingest, tenants, uploads, signals(3))
    assert len(fake_api.received) == 1
    assert summary.run.pending == 3
    [mail] = mails(ingest)
    assert "refused this account's token (HTTP 401)" in mail
    assert tenant.api_token not in mail
    again = await ingest.run()
    assert again.run.posted == 3 and again.ok
    assert all(count == 0 for count in fake_api.repeats.values())


async def test_a_feed_with_its_own_destination_and_token(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    ingest.feeds.set("acme", f'name = "remote"\ntemplate = "signals"\n[mapping]\nkind = "signal"\n'
                             f'[destination]\nurl = "{fake_api.base_url}"\ntoken = "feed-secret"\n')
    upload, path = drop(tenants, uploads, "acme", "in/remote/x.csv", signals(1))
    await ingest.stage(upload, path)
    summary = await ingest.run()
    assert summary.ok
    [request] = fake_api.received
    assert request.body["oauth_token"] == "feed-secret"
    assert request.path == "/api/2020-10-01/transactions/signals.json"
    assert request.key is not None and len(request.key) == 64


def test_nothing_is_left_in_the_send_log_from_older_windows(tmp_path: Path) -> None:
    from core.tenants import open_state
    from ingest.store import SendLog, migrate
    db = open_state(tmp_path / "state.db")
    migrate(db)
    log = SendLog(db)
    log.record("k", 100.0)
    log.record("k", 200.0)
    log.prune(150.0)
    assert log.since("k", 0.0) == [200.0]
    db.close()


def test_the_token_goes_first_into_any_json_object() -> None:
    from ingest.delivery.poster import _with_token

    assert json.loads(_with_token("{}", 'se"cret')) == {"oauth_token": 'se"cret'}
    assert _with_token('{"signal":{"name":"Sale"}}', "t") == '{"oauth_token":"t","signal":{"name":"Sale"}}'


# The remote destination at its token's rate limit: 429s, a long outage, the ledger's own limiter.

THROTTLED = {"errors": {"class": "RateLimitExceeded", "invalid_data": "slow down"}}


def attempts_and_set_aside(db: Database) -> list[tuple[int, str | None]]:
    return [(row["attempts"], row["next_attempt_at"])
            for row in db.query("SELECT attempts, next_attempt_at FROM ingest_outbox ORDER BY id")]


async def test_a_429_holds_the_token_for_its_retry_after_and_is_not_a_try_of_the_row(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, fake_api: FakeApi,
) -> None:
    # One failed try in all would fail a row for good: a 429 must not count as one.
    settings = ingest_settings.replace(post__backoff_max_seconds=5.0, post__max_row_attempts_total=1)
    ingest = Ingest(settings, state_db, tenants, uploads)
    fake_api.answer(*[status(429, THROTTLED, {"Retry-After": "1"})] * 2)
    summary = await post(ingest, tenants, uploads, signals(2))
    await ingest.aclose()
    assert summary.ok and summary.problems == []
    assert (summary.files[0].state, summary.files[0].posted, summary.files[0].failed) == ("posted", 2, 0)
    first, second, third, fourth = fake_api.received
    # Nothing of the token went before each Retry-After elapsed; the row kept its place.
    assert second.at - first.at >= 1.0 and third.at - second.at >= 1.0
    assert first.key == second.key == third.key != fourth.key
    assert attempts_and_set_aside(state_db) == [(1, None), (1, None)]


async def test_a_429_without_retry_after_still_holds_the_token_for_a_slot_of_the_limit(
    limited: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    fake_api.answer(status(429, THROTTLED))
    summary = await post(limited, tenants, uploads, signals(1))
    await limited.aclose()
    assert summary.ok
    first, second = fake_api.received
    assert second.key == first.key and second.at - first.at >= 0.2  # 5 per 1 s: a slot is 0.2 s


async def test_429s_in_a_row_end_the_tokens_posting_with_every_row_pending_and_untouched(
    ingest: Ingest, state_db: Database, tenants: TenantStore, uploads: UploadStore, tenant: Tenant,
    fake_api: FakeApi,
) -> None:
    fake_api.answer(*[status(429, THROTTLED, {"Retry-After": "0"})] * 3)  # max_attempts is 3 here
    summary = await post(ingest, tenants, uploads, signals(3))
    assert len(fake_api.received) == 3
    assert (summary.run.posted, summary.run.failed, summary.run.pending) == (0, 0, 3)
    assert any("3 requests in a row with HTTP 429" in problem for problem in summary.problems)
    assert attempts_and_set_aside(state_db) == [(0, None)] * 3  # not tries, not set aside
    again = await ingest.run()
    assert again.run.posted == 3 and again.files[0].state == "posted"
    assert sorted(fake_api.applied.values()) == [1, 2, 3]


async def test_a_destination_down_for_whole_runs_loses_nothing_and_its_rows_go_at_the_next_run(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    fake_api.answer(*[status(503)] * 6)  # two runs of max_attempts (3) tries each
    first = await post(ingest, tenants, uploads, signals(4))
    second = await ingest.run()
    for summary in (first, second):
        assert (summary.run.posted, summary.run.failed, summary.run.pending) == (0, 0, 4)
        assert summary.files == []
        assert any("not answering" in problem for problem in summary.problems)
    third = await ingest.run()
    assert third.run.posted == 4 and third.files[0].state == "posted"
    assert sorted(fake_api.applied.values()) == [1, 2, 3, 4] and fake_api.repeats == {}


async def test_the_contact_hears_of_a_destination_outage_once_not_once_per_run(
    ingest: Ingest, tenants: TenantStore, uploads: UploadStore, tenant: Tenant, fake_api: FakeApi
) -> None:
    fake_api.answer(*[status(503)] * 6)  # three tries a run, two runs
    first = await post(ingest, tenants, uploads, signals(2))
    second = await ingest.run()
    assert all("The destination is not answering" in run.problems[0] for run in (first, second))
    [mail] = mails(ingest)  # the operator sees it every run; the contact hears of it once
    assert "The destination is not answering" in mail
    assert (await ingest.run()).run.posted == 2  # it answers again: the outage is over
    fake_api.answer(*[status(503)] * 3)
    await post(ingest, tenants, uploads, signals(1, start=9), name="more.csv")
    outages = [text for text in mails(ingest) if "The destination is not answering" in text]
    assert len(outages) == 2 and "(run 4)" in outages[1]  # a new outage is a new mail


@dataclass
class RemoteLedger:
    """The ledger's own API in a data dir of its own, its rate limit on, standing in for Invoca."""

    base_url: str
    token: str
    answers: list[tuple[float, int]]


@pytest.fixture
async def remote_ledger(tmp_path: Path) -> AsyncIterator[RemoteLedger]:
    import socket

    import uvicorn

    from core.passwords import PasswordHasher
    from core.tenants import open_state
    from ledger.app import create_app
    from ledger.store import LedgerStore
    from tests.conftest import TEST_PASSWORD

    settings = Settings(data_dir=tmp_path / "remote").replace(
        api__rate_limit_requests=5, api__rate_limit_window_seconds=1.0)
    db = open_state(settings.state_location)
    remote_tenants = TenantStore(db, settings.tenants_dir, PasswordHasher(settings.passwords))
    token = remote_tenants.add("acme", "ops@acme.example", TEST_PASSWORD).api_token
    store = LedgerStore.open(settings.ledger_location)
    app = create_app(settings, remote_tenants, store)
    answers: list[tuple[float, int]] = []

    async def recorded(scope: Any, receive: Any, send: Any) -> None:
        """The API, 20 ms each way away, noting when each request arrived and its status."""
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        await asyncio.sleep(0.02)
        arrived = time.monotonic()

        async def answer(message: Any) -> None:
            if message["type"] == "http.response.start":
                answers.append((arrived, message["status"]))
                await asyncio.sleep(0.02)
            await send(message)

        await app(scope, receive, answer)

    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(recorded, log_config=None, access_log=False, lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield RemoteLedger(f"http://127.0.0.1:{sock.getsockname()[1]}/api/2020-10-01", token, answers)
    server.should_exit = True
    await serving
    store.close()
    db.close()


def calls(count: int, start: int = 0) -> str:
    lines = ["customer_id,call_start,call_end,calling_phone_number,agent_queue_assigned"]
    lines += [f"c-{n},2026-11-20T18:{n:02d}:00Z,2026-11-20T18:{n:02d}:30Z,+1 88855500{n:02d},Sales"
              for n in range(start, start + count)]
    return "\n".join(lines) + "\n"


async def test_the_ledgers_own_limiter_never_refuses_a_paced_remote_feed_across_runs(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, remote_ledger: RemoteLedger,
) -> None:
    settings = ingest_settings.replace(post__rate_limit_requests=5, post__rate_limit_window_seconds=1.0)
    feed = (f'name = "remote"\ntemplate = "calls"\n[mapping]\nkind = "call"\n[destination]\n'
            f'url = "{remote_ledger.base_url}"\ntoken = "{remote_ledger.token}"\n')
    for start in (0, 8):  # two runs in two Ingests, as the daemon and `sftpctl run` would
        ingest = Ingest(settings, state_db, tenants, uploads)
        ingest.feeds.set("acme", feed)
        upload, path = drop(tenants, uploads, "acme", f"in/remote/calls{start}.csv", calls(8, start))
        await ingest.stage(upload, path)
        summary = await ingest.run()
        await ingest.aclose()
        assert summary.ok and summary.files[0].posted == 8
    statuses = [code for _, code in remote_ledger.answers]
    assert statuses == [201] * 16  # not one 429
    arrivals = [at for at, _ in remote_ledger.answers]
    assert all(arrivals[i + 5] - arrivals[i] >= 1.0 for i in range(len(arrivals) - 5))


async def test_two_tenants_posting_with_one_token_side_by_side_share_its_window(
    ingest_settings: Settings, state_db: Database, tenants: TenantStore, uploads: UploadStore,
    tenant: Tenant, remote_ledger: RemoteLedger,
) -> None:
    from tests.conftest import TEST_PASSWORD

    tenants.add("beta", "ops@beta.example", TEST_PASSWORD)
    settings = ingest_settings.replace(post__rate_limit_requests=5, post__rate_limit_window_seconds=1.0)
    ingest = Ingest(settings, state_db, tenants, uploads)
    feed = (f'name = "remote"\ntemplate = "calls"\n[mapping]\nkind = "call"\n[destination]\n'
            f'url = "{remote_ledger.base_url}"\ntoken = "{remote_ledger.token}"\n')
    for name, start in (("acme", 0), ("beta", 20)):
        ingest.feeds.set(name, feed)
        upload, path = drop(tenants, uploads, name, "in/remote/calls.csv", calls(6, start))
        await ingest.stage(upload, path)
    summary = await ingest.run()
    await ingest.aclose()
    assert summary.ok and sorted(item.posted for item in summary.files) == [6, 6]
    assert [code for _, code in remote_ledger.answers] == [201] * 12  # not one 429
    arrivals = [at for at, _ in remote_ledger.answers]
    assert all(arrivals[i + 5] - arrivals[i] >= 1.0 for i in range(len(arrivals) - 5))
