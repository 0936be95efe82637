"""Decisions and compatibility details found while building the transports."""

from __future__ import annotations

import base64
import logging

import pytest

from websockets_routes import Router
from websockets_routes.core import Headers, Request, Respond, RoutedPath

KEY = base64.b64encode(b"0123456789abcdef").decode()
WS = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def test_escape_that_is_not_utf8_is_a_bad_request_not_a_miss() -> None:
    router = Router()

    @router.route("/thing/{id}")
    async def thing(ws, path):  # pragma: no cover - never connected
        pass

    decision = router.decide(Request("GET", "/thing/%FF", WS))
    assert isinstance(decision, Respond) and decision.status == 400
    assert b"not UTF-8" in decision.body
    assert router.decide(Request("GET", "/other/%C3%A9", WS)).status == 404


def test_several_origin_headers_are_refused_with_a_clear_reason() -> None:
    router = Router(origins=["https://a.example"])

    @router.route("/x")
    async def x(ws, path):  # pragma: no cover - never connected
        pass

    headers = [*WS, ("Origin", "https://a.example"), ("Origin", "https://b.example")]
    decision = router.decide(Request("GET", "/x", headers))
    assert decision.status == 403
    assert b"several Origin headers" in decision.body


@pytest.mark.anyio
async def test_view_init_failure_is_500_and_logged_without_query(caplog) -> None:
    router = Router()

    @router.route("/broken/{id}")
    class Broken:
        def __init__(self) -> None:
            raise RuntimeError("no database")

        async def handle(self, ws, path):  # pragma: no cover - never made
            pass

    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        decision = await router.resolve(
            Request("GET", "/broken/1?token=s3cret", WS, remote_address=("127.0.0.1", 5000))
        )
    assert isinstance(decision, Respond) and decision.status == 500
    assert "/broken/1" in caplog.text and "127.0.0.1:5000" in caplog.text
    assert "s3cret" not in caplog.text


@pytest.mark.anyio
async def test_hook_failure_log_leaves_out_the_query(caplog) -> None:
    router = Router()

    @router.route("/room/{room}", name="room")
    class Room:
        async def process_request(self, path, headers):
            raise ValueError("boom")

        async def handle(self, ws, path):  # pragma: no cover - never run
            pass

    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        decision = await router.resolve(Request("GET", "/room/a?session=s3cret", WS))
    assert decision.status == 500
    assert "'room'" in caplog.text and "/room/a" in caplog.text
    assert "s3cret" not in caplog.text


def test_0_2_compatibility_helpers() -> None:
    headers = Headers([("X-A", "1"), ("x-a", "2")])
    assert headers.raw_items() == [("X-A", "1"), ("x-a", "2")]
    path = RoutedPath.create("/thing/1?q", object(), {"id": "1"})
    assert str(path) == "/thing/1?q" and path.params == {"id": "1"} and path.query == "q"
    assert path.context == {}
