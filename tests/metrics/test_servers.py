"""Metrics on every own server (asyncio, anyio on asyncio and on trio, the custom
transport): real servers on 127.0.0.1, port 0, with websockets' client and raw sockets.
Every value is asserted exactly."""

from __future__ import annotations

import anyio
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.metrics.support import (
    TIMEOUT,
    close,
    eventually,
    handshakes,
    make_router,
    samples,
    value,
)
from tests.transports.helpers import RawClient, handshake, random_key

pytestmark = pytest.mark.anyio


async def test_accepts_messages_closes_and_the_open_gauge(serve_router, connect, registry):
    router, _ = make_router(registry)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            async with connect(server, "/echo/1?token=secret") as ws:
                for message in ["a", "b", b"c"]:
                    await ws.send(message)
                    assert await ws.recv() == message
                # While open: the gauge, and the messages so far (read when scraped).
                assert value(registry, "websockets_routes_connections", route="echo") == 1
                assert samples(registry, "websockets_routes_messages_total") == {
                    ("in", "echo"): 3,
                    ("out", "echo"): 3,
                }
            async with connect(server, "/echo/2") as ws:
                await ws.send("d")
                assert await ws.recv() == "d"
                await close(ws, 4000, "going")  # the peer's close code is the one counted
            async with connect(server, "/bye") as ws:
                assert await ws.recv() == "bye"
                await ws.wait_closed()  # the server closed with 1000
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/echo/3")
            # TCP ended without a close frame from either side: 1006.
            await eventually(
                lambda: value(registry, "websockets_routes_closes_total", route="echo", code="1006")
                == 1
            )
    assert handshakes(registry) == {("echo", "accept"): 3, ("/bye", "accept"): 1}
    assert samples(registry, "websockets_routes_closes_total") == {
        ("1000", "echo"): 1,
        ("4000", "echo"): 1,
        ("1006", "echo"): 1,
        ("1000", "/bye"): 1,
    }
    assert samples(registry, "websockets_routes_connections") == {("echo",): 0, ("/bye",): 0}
    assert samples(registry, "websockets_routes_messages_total") == {
        ("in", "echo"): 4,
        ("out", "echo"): 4,
        ("in", "/bye"): 0,
        ("out", "/bye"): 1,
    }
    assert value(registry, "websockets_routes_handshake_seconds_count", route="echo") == 3
    assert value(registry, "websockets_routes_handshake_seconds_count", route="/bye") == 1
    assert 0 <= value(registry, "websockets_routes_handshake_seconds_sum", route="echo") < 3
    assert "secret" not in str(samples(registry, "websockets_routes_handshakes_total"))


async def test_refusals_count_by_status_and_keep_their_route(serve_router, connect, registry):
    router, _ = make_router(registry)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            for target, status in [("/nowhere", 404), ("/private", 403), ("/busy/7", 429)]:
                with pytest.raises(InvalidStatus) as caught:
                    async with connect(server, target):
                        pass
                assert caught.value.response.status_code == status
            async with connect(server, "/shut") as ws:  # a hook's Close: 101, then 4400
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 4400
            # Plain-HTTP requests are not handshakes, whatever their answer.
            for request in [b"GET /health HTTP/1.1", b"GET /favicon.ico HTTP/1.1"]:
                async with await RawClient.connect(server.port) as raw:
                    await raw.send(request + b"\r\nHost: x\r\n\r\n")
                    await raw.read_head()
                    await raw.read_to_eof()
    assert handshakes(registry) == {
        ("", "404"): 1,
        ("/private", "403"): 1,
        ("/busy/{id}", "429"): 1,
        ("shut", "close"): 1,
    }
    assert samples(registry, "websockets_routes_closes_total") == {("4400", "shut"): 1}
    assert samples(registry, "websockets_routes_connections") == {("shut",): 0}
    assert value(registry, "websockets_routes_handshake_seconds_count", route="/busy/{id}") == 1
    assert value(registry, "websockets_routes_handshake_seconds_count", route="") == 1


async def test_503_past_max_connections_keeps_the_route(serve_router, connect, registry):
    router, _ = make_router(registry)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, max_connections=1) as server:
            async with connect(server, "/echo/1"):
                with pytest.raises(InvalidStatus) as caught:
                    async with connect(server, "/echo/2"):
                        pass
                assert caught.value.response.status_code == 503
    assert handshakes(registry) == {("echo", "accept"): 1, ("echo", "503"): 1}
    assert samples(registry, "websockets_routes_connections") == {("echo",): 0}


async def test_refused_before_routing_counts_with_no_route(serve_router, registry):
    router, _ = make_router(registry)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, max_header_bytes=256, open_timeout=0.3) as server:
            async with await RawClient.connect(server.port) as raw:  # no request line
                await raw.send(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
                assert (await raw.read_head()).startswith("HTTP/1.1 400 ")
                await raw.read_to_eof()
            async with await RawClient.connect(server.port) as raw:  # too long a head
                await raw.send(handshake("/echo/1", key=random_key(), extra=[("X-Big", "x" * 400)]))
                assert (await raw.read_head()).startswith("HTTP/1.1 431 ")
                await raw.read_to_eof()
            async with await RawClient.connect(server.port) as raw:  # too slow a head
                await raw.send(b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n")
                assert await raw.read_to_eof() == b""  # dropped at open_timeout
    assert handshakes(registry) == {("", "400"): 1, ("", "431"): 1, ("", "timeout"): 1}
    # No complete head, or no answer: nothing to time.
    assert samples(registry, "websockets_routes_handshake_seconds_count") == {}


async def test_a_refusal_before_routing_counts_for_its_own_server_only(
    serve_router, transport, registry
):
    """Two servers, each with its router and Metrics: a head that cannot be read is
    counted by the server that got it, and by no other (every server, the custom
    example included, starts its sessions through core.BaseServer, with its router)."""
    from prometheus_client import CollectorRegistry

    other_registry = CollectorRegistry()
    router, _ = make_router(registry)
    other_router, _ = make_router(other_registry)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server, serve_router(other_router):
            async with await RawClient.connect(server.port) as raw:
                await raw.send(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
                assert (await raw.read_head()).startswith("HTTP/1.1 400 ")
                await raw.read_to_eof()
    assert handshakes(registry) == {("", "400"): 1}
    assert handshakes(other_registry) == {}


async def test_metrics_view_serves_the_text_format(serve_router, connect, registry):
    router, _ = make_router(registry)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            async with connect(server, "/echo/1") as ws:
                await ws.send("a")
                assert await ws.recv() == "a"
            await eventually(lambda: value(registry, "websockets_routes_closes_total", route="echo", code="1000") == 1)
            async with await RawClient.connect(server.port) as raw:
                await raw.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await raw.read_head()
                body = await raw.read_to_eof()
    assert head.startswith("HTTP/1.1 200 ")
    assert f"content-type: {CONTENT_TYPE_LATEST}" in head.lower()
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    assert found[("websockets_routes_handshakes_total", (("outcome", "accept"), ("route", "echo")))] == 1
    assert found[("websockets_routes_connections", (("route", "echo"),))] == 0
    assert found[("websockets_routes_messages_total", (("direction", "out"), ("route", "echo")))] == 1
    assert found[("websockets_routes_closes_total", (("code", "1000"), ("route", "echo")))] == 1
    assert found[("websockets_routes_handshake_seconds_count", (("route", "echo"),))] == 1
