"""End to end: the chat example in headless Chromium, two pages in one room.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run when missing), driven by
Playwright with its executable_path, so nothing downloads a browser. Without Chromium
the test is skipped, unless REQUIRE_BROWSER=1 (as in CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.serving import cli_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture
def chromium() -> str:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return CHROMIUM


def test_two_pages_chat_in_one_room(chromium: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with cli_server("examples.chat.app:router") as (base, _proc):
        # The page and an unknown path over plain HTTP on the same port.
        with urllib.request.urlopen(base + "/", timeout=10) as page:
            assert page.status == 200
            assert b"<title>websockets-routes chat</title>" in page.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/no/such/page", timeout=10)
        assert missing.value.code == 404

        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=chromium, args=CHROMIUM_ARGS
            )
            try:
                alice, bob = browser.new_page(), browser.new_page()
                for page, name in ((alice, "alice"), (bob, "bob")):
                    page.goto(base + "/")
                    page.fill("#user", name)
                    page.fill("#room", "e2e-room")
                    page.click("#join button")
                    page.wait_for_selector("body[data-state=joined]", timeout=10_000)

                alice.fill("#text", "hello from alice")
                alice.click("#send-button")
                bob.wait_for_selector("#log p:has-text('alice: hello from alice')", timeout=10_000)
                bob.fill("#text", "hi alice")
                bob.click("#send-button")
                alice.wait_for_selector("#log p:has-text('bob: hi alice')", timeout=10_000)
                assert "alice: hello from alice" in alice.inner_text("#log")

                # A bad room name is refused by the view's hook before the handshake.
                bob.fill("#room", "Not A Room!")
                bob.click("#join button")
                bob.wait_for_selector("body[data-state=closed]", timeout=10_000)
                assert "closed (1006)" in bob.inner_text("#log")

                shot = tmp_path / "chat.png"
                alice.screenshot(path=str(shot))
                assert shot.stat().st_size > 1000
            finally:
                browser.close()
