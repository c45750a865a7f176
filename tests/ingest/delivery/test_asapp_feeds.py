"""The ASAPP kinds end to end, both ways: transcripts and purchases uploaded through the real SFTP
server, a run, and the records in the ledger with their reports in ``out/``.

Two data dirs get the same uploads: one delivers over HTTP to the real embedded API
(``[post] embedded_in_process = false``), one writes its ledger in process. Every row's state,
status and error, every report's rows, and every record in the ledger must be equal.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.db import Database
from core.passwords import PasswordHasher
from core.tenants import TenantStore, open_state
from core.uploads import UploadStore
from ingest.pipeline import Ingest
from ledger.records import ListingQuery
from ledger.server import ApiServer
from ledger.store import LedgerStore
from sftpd.defender import Defender
from sftpd.events import UploadCompleted
from sftpd.hostkeys import load_or_create_host_keys
from sftpd.server import SftpServer
from tests.conftest import TEST_PASSWORD, free_port
from tests.support import postgres
from tests.support.at_rest import stored_csv
from tests.support.clients import asyncssh_sftp

ROOT = Path(__file__).resolve().parents[3]
FEEDS = [ROOT / "etc" / "feeds" / "transcripts.toml", ROOT / "etc" / "feeds" / "purchases.toml"]

CHAT = """conversation_externalId,sender_externalId,sender_role,text,timestamp
c-1,cust-9,customer,My internet is down,2022-03-16T18:42:20.100Z
c-1,6433421,Agent,"Happy to help, one moment please",2022-03-16T18:42:24.488424Z
c-1,bot-1,bot,Choose an option: (A) restart (B) technician,2022-03-16T18:42:30Z
c-1,6433421,agent,"Happy to help, one moment please",2022-03-16T18:42:24.488Z
"""
ORDERS = """transaction_id,transaction_time,external_customer_id,issue_id,external_session_id,product_name,\
product_id,product_quantity,product_value_one_time
t-1,2007-04-05T14:30:05.123Z,34762720001,,s-1,Broadband Gold Package,WI-BBGP,1,60.00
t-1,2007-04-05T14:30:05.123Z,34762720001,,s-1,Modem,WI-MODEM,1,5.25
t-2,2007-04-06T09:00:00Z,,1E10412200CC,s-2,Router,,2,
t-1,2007-04-05T14:30:05.123Z,34762720001,,s-1,Broadband Gold Package,WI-BBGP,1,60.00
"""
# Later: one line the ledger refuses (its quantity), one correction.
CHANGES = """transaction_id,transaction_time,external_customer_id,external_session_id,product_name,product_quantity
t-3,2007-04-07T10:00:00Z,34762720002,s-3,Cable,1000000000000
t-2,2007-04-06T09:00:00Z,34762720001,s-2,Router,3
"""
UPLOADS = {"transcripts/chat.csv": CHAT, "purchases/orders.csv": ORDERS, "purchases/changes.csv": CHANGES}


@dataclass
class Side:
    settings: Settings
    db: Database
    tenants: TenantStore
    ingest: Ingest
    sftp: SftpServer


@pytest.fixture(scope="module")
def host_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = tmp_path_factory.mktemp("host-keys")
    load_or_create_host_keys(keys)
    return keys


async def _side(root: Path, host_keys: Path, **changes: Any) -> Side:
    shutil.copytree(host_keys, root / "keys")
    settings = Settings(data_dir=root / "var").replace(
        server__keys_dir=root / "keys", server__listen_port=0, api__listen_port=free_port(), **changes)
    db = open_state(settings.state_location)
    tenants = TenantStore(db, settings.tenants_dir, PasswordHasher(settings.passwords))
    tenants.add("acme", "ops@acme.example", TEST_PASSWORD)
    uploads = UploadStore(db)
    ingest = Ingest(settings, db, tenants, uploads)
    for feed in FEEDS:
        ingest.feeds.set("acme", feed.read_text())

    def hand_over(event: UploadCompleted) -> None:
        ingest.on_upload(event.upload, event.local_path, event.kept)

    sftp = SftpServer(settings, tenants, uploads, Defender(db, settings.defender), on_upload=hand_over)
    await sftp.start()
    return Side(settings, db, tenants, ingest, sftp)


@pytest.fixture
async def both(
    tmp_path: Path, host_keys: Path, request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Side, Side]]:
    """Two data dirs, each with its own state and ledger: a database of its own each when the
    session runs on PostgreSQL."""
    server = request.getfixturevalue("postgres_server") if postgres.wanted() else None
    urls = [server.create_database() for _ in range(2)] if server is not None else ["", ""]
    http = await _side(tmp_path / "http", host_keys, api__rate_limit_requests=0,
                       post__rate_limit_requests=100_000, post__embedded_in_process=False,
                       database__url=urls[0])
    local = await _side(tmp_path / "local", host_keys, database__url=urls[1])
    api = ApiServer(http.settings, http.tenants)
    await api.start()
    try:
        yield http, local
    finally:
        await api.close()
        for side in (http, local):
            await side.sftp.close()
            await side.ingest.aclose()
            side.db.close()


async def _upload_and_run(side: Side, work: Path) -> None:
    work.mkdir()
    async with asyncssh_sftp(side.sftp.port, "acme", TEST_PASSWORD) as sftp:
        for relative, content in UPLOADS.items():
            local = work / relative.replace("/", "-")
            local.write_text(content)
            folder = f"/in/{relative.split('/')[0]}"
            if not await sftp.exists(folder):
                await sftp.mkdir(folder)
            await sftp.put(str(local), f"/in/{relative}")
    await side.sftp.settled()
    await side.ingest.settled()
    await side.ingest.run()


def _outcomes(side: Side) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in side.db.query(
        "SELECT s.path, o.row_number, o.state, o.status_code, o.error FROM ingest_outbox o"
        " JOIN ingest_staged s ON s.upload_id = o.upload_id ORDER BY s.path, o.row_number")]


def _reports(side: Side) -> dict[str, tuple[dict[str, str], list[list[str]]]]:
    """Each report in out/ by its folder and file stem: the summary and the rows."""
    reports = {}
    out = side.tenants.folders("acme").reports_dir
    for path in sorted(out.rglob("*.csv")):
        lines = stored_csv(path, side.settings)
        blank = lines.index([])
        summary = {key: value for key, value in lines[:blank] if key in ("file", "feed", "result")}
        key = f"{path.parent.name}/{path.name.split('-')[0]}"
        reports[key] = (summary, lines[blank + 2:])
    return reports


def _records(side: Side) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    store = LedgerStore.open(side.settings.ledger_location)
    try:
        return store.asapp.messages("acme", ListingQuery()), store.asapp.purchases("acme", ListingQuery())
    finally:
        store.close()


async def test_uploaded_transcripts_and_purchases_land_in_the_ledger_the_same_both_ways(
    both: tuple[Side, Side], tmp_path: Path,
) -> None:
    http, local = both
    await _upload_and_run(http, tmp_path / "http-client")
    await _upload_and_run(local, tmp_path / "local-client")

    outcomes = _outcomes(local)
    assert outcomes == _outcomes(http)
    assert {(row[0], row[1], row[3]) for row in outcomes} == {
        ("in/transcripts/chat.csv", 2, 201), ("in/transcripts/chat.csv", 3, 201),
        ("in/transcripts/chat.csv", 4, 201), ("in/transcripts/chat.csv", 5, 200),  # the same message
        ("in/purchases/orders.csv", 2, 201), ("in/purchases/orders.csv", 3, 201),
        ("in/purchases/orders.csv", 4, 201), ("in/purchases/orders.csv", 5, 200),  # the same line
        ("in/purchases/changes.csv", 2, 403), ("in/purchases/changes.csv", 3, 200),  # refused, corrected
    }
    refused = next(row for row in outcomes if row[3] == 403)
    assert "product_quantity: must be a whole number" in refused[4]

    reports = _reports(local)
    assert reports == _reports(http)
    summary, rows = reports["transcripts/chat"]
    assert summary == {"file": "in/transcripts/chat.csv", "feed": "transcripts", "result": "posted"}
    assert [row[1] for row in rows] == ["posted"] * 4
    assert reports["purchases/orders"][0]["result"] == "posted"
    assert reports["purchases/changes"][0]["result"] == "partly failed"
    assert [row[1] for row in reports["purchases/changes"][1]] == ["failed", "posted"]

    messages, purchases = _records(local)
    assert (messages, purchases) == _records(http)
    assert [(m["sender_externalId"], m["sender_role"], m["timestamp"]) for m in messages] == [
        ("cust-9", "customer", "2022-03-16T18:42:20.100000Z"),
        ("6433421", "agent", "2022-03-16T18:42:24.488000Z"),
        ("bot-1", "bot", "2022-03-16T18:42:30.000000Z"),
    ]
    assert [(p["transaction_id"], p["product_name"], p["product_quantity"], p["external_customer_id"],
             p["issue_id"]) for p in purchases] == [
        ("t-1", "Broadband Gold Package", 1, "34762720001", None),
        ("t-1", "Modem", 1, "34762720001", None),
        ("t-2", "Router", 3, "34762720001", None),  # replaced whole by the correction
    ]
