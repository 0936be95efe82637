"""End to end: the chat example in headless Chromium, two pages in one room, on one
server; then on two servers sharing a real redis-server, one of which drains.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run when missing), driven by
Playwright with its executable_path, so nothing downloads a browser. Without Chromium
the test is skipped, unless REQUIRE_BROWSER=1 (as in CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServer, running_redis
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

                # A bad room name is refused by the view's hook: Close(4400, reason),
                # which the page's script can read (an HTTP 400 would show as 1006).
                bob.fill("#room", "Not A Room!")
                bob.click("#join button")
                bob.wait_for_selector("body[data-state=closed]", timeout=10_000)
                assert "4400" in bob.inner_text("#log")
                assert "use 1-32 of a-z" in bob.inner_text("#log")

                shot = tmp_path / "chat.png"
                alice.screenshot(path=str(shot))
                assert shot.stat().st_size > 1000
            finally:
                browser.close()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    yield from running_redis()


def test_two_servers_share_a_room_and_a_drained_page_moves_over(
    chromium: str, redis: RedisServer, tmp_path: Path
) -> None:
    """Pages on two servers chat through Redis; when one server drains (SIGTERM,
    --drain 1) its page sees 1012 and reconnects by itself to the other one."""
    sync_api = pytest.importorskip("playwright.sync_api")
    env = {"BROADCAST_URL": redis.url}
    with (
        cli_server("examples.chat.app:router", "--drain", "1", env=env) as (base_a, proc_a),
        cli_server("examples.chat.app:router", env=env) as (base_b, _proc_b),
    ):
        host_b = base_b.removeprefix("http://")
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=chromium, args=CHROMIUM_ARGS
            )
            try:
                alice, bob = browser.new_page(), browser.new_page()
                # ?server=: where alice's page goes next, as a load balancer would send it.
                for page, url, name in ((alice, f"{base_a}/?server={host_b}", "alice"),
                                        (bob, base_b + "/", "bob")):
                    page.goto(url)
                    page.fill("#user", name)
                    page.fill("#room", "scale-out")
                    page.click("#join button")
                    page.wait_for_selector("body[data-state=joined]", timeout=10_000)

                alice.fill("#text", "from server a")
                alice.click("#send-button")
                bob.wait_for_selector("#log p:has-text('alice: from server a')", timeout=10_000)
                bob.fill("#text", "from server b")
                bob.click("#send-button")
                alice.wait_for_selector("#log p:has-text('bob: from server b')", timeout=10_000)

                proc_a.send_signal(signal.SIGTERM)
                alice.wait_for_selector(
                    "#log p:has-text('connection closed (1012')", timeout=10_000
                )
                alice.wait_for_selector(
                    f"#log p:has-text('joined scale-out on {host_b}')", timeout=15_000
                )
                alice.wait_for_selector("body[data-state=joined]", timeout=10_000)
                assert proc_a.wait(timeout=15) == 0

                alice.fill("#text", "moved over")
                alice.click("#send-button")
                bob.wait_for_selector("#log p:has-text('alice: moved over')", timeout=10_000)
            finally:
                browser.close()
