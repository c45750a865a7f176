"""The status page: escaped as it is rendered, and as a real headless Chromium shows it."""

from __future__ import annotations

import shutil
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from core.config import DefenderSettings, Settings
from core.tenants import open_state
from service.admin.figures import Figures
from service.admin.hostkeys import HostKeyFingerprint
from service.admin.page import render
from service.admin.snapshot import LockoutState, OutboxItemState, Snapshot, TenantState
from sftpd.defender import Defender
from tests.service.admin.conftest import AdminDaemon

HOSTILE = '<img src=x onerror="alert(1)">&amp;.csv'
PHONE = (390, 844)


def test_everything_from_the_database_is_escaped(settings: Settings) -> None:
    now = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
    snapshot = Snapshot(
        taken_at=now,
        outbox_oldest=OutboxItemState("acme", f"in/{HOSTILE}", "2026-11-30T17:00:00.000Z"),
        lockouts=(LockoutState("pair", HOSTILE, "10.0.0.1", "2026-11-30T19:00:00.000Z"),),
        tenants=(TenantState("acme", True, True, None, "2026-11-30T17:00:00.000Z", None, 2, 5,
                             {"report_days": 7}),),
    )
    snapshot.outbox_pending["acme"] = 5
    figures = Figures(snapshot, {}, {}, 0, {}, 10 * 2**30, now)
    html = render(settings, figures, [HostKeyFingerprint("ssh-ed25519", "SHA256:abc+/x")],
                  {"SSH/SFTP": "127.0.0.1:2222"})
    assert "<img" not in html and HOSTILE not in html
    assert html.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;amp;.csv") == 2
    # Times in the schedule's zone (Pacific by default), next run included.
    assert "2026-11-30 09:00 PST" in html and "2026-11-30 10:00 PST" in html
    assert "SHA256:abc+/x" in html and "10.0 GiB" in html
    assert "<td>30/<b>7*</b>/30</td>" in html  # the tenant's own report_days, the others the installation's


@pytest.fixture
def chromium() -> Iterator[webdriver.Chrome]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail("Debian's chromium and chromium-driver are needed (scripts/test.sh installs them)")
    options = Options()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    # A phone's screen, as Chrome's device mode shows it (a desktop window has a minimum width).
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": {
        "width": PHONE[0], "height": PHONE[1], "pixelRatio": 1}})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    session.set_page_load_timeout(10)
    try:
        yield session
    finally:
        session.quit()


def test_the_page_in_a_headless_browser(admin_daemon: AdminDaemon, chromium: webdriver.Chrome,
                                        tmp_path: Path) -> None:
    root = admin_daemon.config.parent
    # A guesser's user name is whatever they typed: lock one that is HTML, from another process.
    db = open_state(admin_daemon.state)
    try:
        defender = Defender(db, DefenderSettings())
        for _ in range(DefenderSettings().account_max_failures):
            defender.record_failure(HOSTILE, "192.0.2.7")
    finally:
        db.close()
    key = asyncssh.read_public_key(root / "keys" / "ssh_host_ed25519_key.pub")
    assert admin_daemon.sftpctl("tenant", "retention", "demo", "--upload-days", "3").returncode == 0

    chromium.get(admin_daemon.admin_url + "/")
    text = chromium.find_element(By.TAG_NAME, "body").text
    assert "sftp-inbox" in chromium.title
    assert "demo" in text and "may log in" in text and "3*/90/30" in text
    assert "last whole pass" in text and "file(s) deleted" in text  # the daemon pruned as it started
    assert key.get_fingerprint("sha256") in text
    assert HOSTILE in text  # shown as text, never as markup
    assert chromium.find_elements(By.TAG_NAME, "img") == []
    assert chromium.find_elements(By.TAG_NAME, "script") == []
    # Readable on a phone: nothing wider than the screen but the tables' own scroll boxes.
    assert chromium.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    errors = [entry for entry in chromium.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []

    screenshot = tmp_path / "status.png"
    assert chromium.save_screenshot(str(screenshot))
    width, height, distinct = png_summary(screenshot.read_bytes())
    assert width >= 300 and height >= 300
    assert distinct > 20, "the screenshot is blank"


def png_summary(data: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct byte values of the image data: a blank page is a
    handful (one colour and the row filters), a page of text and boxes far more."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks = list(_chunks(data[8:]))
    kind, header = chunks[0]
    assert kind == b"IHDR"
    width, height = struct.unpack(">II", header[:8])
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    return width, height, len(Counter(pixels))


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        yield data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        offset += 12 + length
