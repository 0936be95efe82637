"""Metrics under websockets' servers (transports/websockets.py): what the hook and the
handler see. Handshakes, their time, opens and closes are counted; messages are not
(websockets keeps no counts), so ``websockets_routes_messages_total`` has no samples."""

from __future__ import annotations

import functools
import warnings

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.metrics.support import TIMEOUT, eventually, handshakes, make_router, samples, value
from tests.transports.helpers import RawClient
from tests.transports.websockets.servers import HOST, url_of

pytestmark = pytest.mark.anyio


async def refuse_and_close(url: str) -> None:
    """404, 403, 429 during the handshake, then the hook's Close (4400)."""
    for target, status in [("/nowhere", 404), ("/private", 403), ("/busy/7", 429)]:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(url + target):
                pass
        assert caught.value.response.status_code == status
    async with connect(url + "/shut") as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4400


async def test_router_serve(registry):
    router, _ = make_router(registry)
    with anyio.fail_after(TIMEOUT):
        async with router.serve(HOST, 0) as server:
            url = url_of(server)
            async with connect(url + "/echo/1") as ws:
                await ws.send("a")
                assert await ws.recv() == "a"
                assert value(registry, "websockets_routes_connections", route="echo") == 1
            async with connect(url + "/echo/2") as ws:
                await ws.close(4000)
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/echo/3")
            await eventually(
                lambda: value(registry, "websockets_routes_closes_total", route="echo", code="1006")
                == 1
            )
            async with connect(url + "/bye") as ws:
                assert await ws.recv() == "bye"
                await ws.wait_closed()
            await refuse_and_close(url)
            async with await RawClient.connect(server.port) as raw:  # through the hook
                await raw.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await raw.read_head()).startswith("HTTP/1.1 200 ")
            await eventually(
                lambda: value(registry, "websockets_routes_connections", route="/bye") == 0
            )
    assert handshakes(registry) == {
        ("echo", "accept"): 3,
        ("/bye", "accept"): 1,
        ("", "404"): 1,
        ("/private", "403"): 1,
        ("/busy/{id}", "429"): 1,
        ("shut", "close"): 1,
    }
    assert samples(registry, "websockets_routes_closes_total") == {
        ("1000", "echo"): 1,
        ("4000", "echo"): 1,
        ("1006", "echo"): 1,
        ("1000", "/bye"): 1,
        ("4400", "shut"): 1,
    }
    assert samples(registry, "websockets_routes_connections") == {
        ("echo",): 0,
        ("/bye",): 0,
        ("shut",): 0,
    }
    assert samples(registry, "websockets_routes_messages_total") == {}
    assert value(registry, "websockets_routes_handshake_seconds_count", route="echo") == 3


async def test_handler_without_the_hook(registry):
    """``serve(router.handle)`` alone: the router decides after websockets' handshake,
    so every handshake is an accept or a close, and a 404 is a close with 4040."""
    router, _ = make_router(registry)
    with anyio.fail_after(TIMEOUT):
        async with serve(router.handle, HOST, 0) as server:
            url = url_of(server)
            async with connect(url + "/echo/1") as ws:
                await ws.send("a")
                assert await ws.recv() == "a"
            async with connect(url + "/nowhere") as ws:
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 4040
            await eventually(lambda: len(samples(registry, "websockets_routes_closes_total")) == 2)
    assert handshakes(registry) == {("echo", "accept"): 1, ("", "close"): 1}
    assert samples(registry, "websockets_routes_closes_total") == {
        ("1000", "echo"): 1,
        ("4040", ""): 1,
    }
    assert samples(registry, "websockets_routes_connections") == {("echo",): 0, ("",): 0}
    # The answer was written before the router ran: no time to observe.
    assert samples(registry, "websockets_routes_handshake_seconds_count") == {}


async def test_legacy_protocol(registry):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from websockets.legacy.server import serve as legacy_serve

        from websockets_routes import Protocol

    router, _ = make_router(registry)
    with anyio.fail_after(TIMEOUT), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        server = await legacy_serve(router, HOST, 0, create_protocol=Protocol)
        try:
            url = url_of(server)
            async with connect(url + "/echo/1") as ws:
                await ws.send("a")
                assert await ws.recv() == "a"
            await refuse_and_close(url)
            await eventually(lambda: len(samples(registry, "websockets_routes_closes_total")) == 2)
        finally:
            server.close()
            await server.wait_closed()
    assert handshakes(registry) == {
        ("echo", "accept"): 1,
        ("", "404"): 1,
        ("/private", "403"): 1,
        ("/busy/{id}", "429"): 1,
        ("shut", "close"): 1,
    }
    assert samples(registry, "websockets_routes_closes_total") == {
        ("1000", "echo"): 1,
        ("4400", "shut"): 1,
    }


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_server(registry):
    import trio
    from websockets.trio.client import connect as trio_connect
    from websockets.trio.server import serve as trio_serve

    router, _ = make_router(registry)
    with anyio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            start = functools.partial(
                trio_serve, router.handle, 0, host=HOST, process_request=router.process_request
            )
            server = await nursery.start(start)
            port = server.listeners[0].socket.getsockname()[1]
            async with trio_connect(f"ws://{HOST}:{port}/echo/1") as ws:
                await ws.send("a")
                assert await ws.recv() == "a"
            with pytest.raises(InvalidStatus):
                async with trio_connect(f"ws://{HOST}:{port}/busy/1"):
                    pass
            await eventually(
                lambda: value(registry, "websockets_routes_closes_total", route="echo", code="1000")
                == 1
            )
            await server.aclose()
    assert handshakes(registry) == {("echo", "accept"): 1, ("/busy/{id}", "429"): 1}
    assert samples(registry, "websockets_routes_closes_total") == {("1000", "echo"): 1}
