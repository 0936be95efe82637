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
    """Two pages chat; a bad room name is refused with 4400 and the page says why in
    words, for good; a server going away (1001), then gone (1006), is shown in words
    and retried."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with cli_server("examples.chat.app:router") as (base, proc):
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
                    # Every input has a label.
                    page.get_by_label("Name").fill(name)
                    page.get_by_label("Room").fill("e2e-room")
                    page.get_by_role("button", name="Join").click()
                    page.wait_for_selector("body[data-state=joined]", timeout=10_000)
                    assert "joined e2e-room on" in page.inner_text("#log")

                alice.get_by_label("Message").fill("hello from alice")
                alice.get_by_role("button", name="Send").click()
                bob.wait_for_selector("#log p:has-text('alice: hello from alice')", timeout=10_000)
                bob.get_by_label("Message").fill("hi alice")
                bob.get_by_role("button", name="Send").click()
                alice.wait_for_selector("#log p:has-text('bob: hi alice')", timeout=10_000)
                assert "alice: hello from alice" in alice.inner_text("#log")

                # A bad room name is refused by the view's hook with Close(4400, reason),
                # which the page's script can read (an HTTP 400 would show as 1006),
                # and shows in words. It is final: no reconnecting.
                bob.get_by_label("Room").fill("Not A Room!")
                bob.get_by_role("button", name="Join").click()
                bob.wait_for_selector("body[data-close-code='4400']", timeout=10_000)
                assert bob.get_attribute("body", "data-state") == "closed"
                refused = (
                    "room name refused: use 1-32 of a-z, 0-9 and -, not 'Not A Room!' "
                    "(code 4400)"
                )
                bob.wait_for_selector(f"#log p:text-is({refused!r})", timeout=10_000)
                bob.wait_for_timeout(1500)  # longer than the first reconnect delay
                log = bob.inner_text("#log")
                assert "reconnecting" not in log and "joined Not A Room!" not in log
                assert bob.get_attribute("body", "data-state") == "closed"
                assert bob.is_disabled("#text")

                shot = tmp_path / "chat.png"
                alice.screenshot(path=str(shot))
                assert shot.stat().st_size > 1000

                # The server stops (SIGINT: 1001 to every connection); the page says
                # so in words, then retries, and says it cannot connect (1006).
                proc.send_signal(signal.SIGINT)
                alice.wait_for_selector(
                    "#log p:has-text('server going away (code 1001): reconnecting in')",
                    timeout=10_000,
                )
                assert alice.get_attribute("body", "data-state") == "reconnecting"
                alice.wait_for_selector(
                    "#log p:has-text('could not connect (code 1006): reconnecting in')",
                    timeout=15_000,
                )
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
                    "#log p:has-text('server restarting (code 1012): reconnecting in')",
                    timeout=10_000,
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
