"""Per-route policy (``core.policy``) on every server of the suite, with websockets'
client: options that override the server's, converters and handshake rate limits."""

from __future__ import annotations

import time

import anyio
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from websockets_routes import Router

pytestmark = pytest.mark.anyio

TIMEOUT = 10
MiB = 2**20


async def echo(ws, path):
    async for message in ws:
        await ws.send(message)


async def test_a_small_route_closes_with_1009_while_a_big_one_echoes_1_mib(serve_router, connect):
    router = Router()
    router.route("/small", max_size=1024)(echo)
    router.route("/big", max_size=2 * MiB)(echo)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, max_size=64 * 1024) as server:
            async with connect(server, "/big", max_size=None) as big:
                async with connect(server, "/small") as small:
                    await small.send("x" * 1024)  # at the limit: fine
                    assert await small.recv() == "x" * 1024
                    await small.send(b"\x00" * 1025)
                    with pytest.raises(ConnectionClosedError) as info:
                        await small.recv()
                    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
                payload = bytes(range(256)) * (MiB // 256)
                await big.send(payload)
                assert await big.recv() == payload


async def test_no_deflate_on_a_compression_false_route(serve_router, connect):
    router = Router()
    router.route("/plain", compression=False)(echo)
    router.route("/none", compression=None)(echo)
    router.route("/default")(echo)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, compression="deflate") as server:
            for target in ("/plain", "/none"):
                async with connect(server, target) as ws:
                    assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
                    await ws.send("a" * 4096)
                    assert await ws.recv() == "a" * 4096
            async with connect(server, "/default") as ws:
                extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
                assert extensions is not None and "permessage-deflate" in extensions
                await ws.send("a" * 4096)
                assert await ws.recv() == "a" * 4096


async def test_converted_params_reach_the_view(serve_router, connect):
    router = Router()

    @router.route("/n/{n}", convert={"n": int})
    async def double(ws, path):
        await ws.send(repr(path.params["n"] * 2))

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            async with connect(server, "/n/21") as ws:
                assert await ws.recv() == "42"
            with pytest.raises(InvalidStatus) as info:
                async with connect(server, "/n/x"):
                    pass
            assert info.value.response.status_code == 404


async def test_the_third_handshake_in_the_window_gets_429_then_the_route_opens(
    serve_router, connect
):
    window = 1.0
    router = Router()
    router.route("/limited", rate_limit=(2, window))(echo)
    router.route("/free")(echo)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            started = time.monotonic()
            for _ in range(2):
                async with connect(server, "/limited") as ws:
                    await ws.send("hi")
                    assert await ws.recv() == "hi"
            with pytest.raises(InvalidStatus) as info:
                async with connect(server, "/limited"):
                    pass
            assert time.monotonic() - started < window, "the machine is too slow for this"
            response = info.value.response
            assert response.status_code == 429
            assert response.headers["Retry-After"] == "1"
            async with connect(server, "/free") as ws:  # other routes are not limited
                await ws.send("free")
                assert await ws.recv() == "free"
            deadline = time.monotonic() + 5 * window
            while True:  # the window passes: the route opens again
                try:
                    async with connect(server, "/limited") as ws:
                        await ws.send("again")
                        assert await ws.recv() == "again"
                        break
                except InvalidStatus as exc:
                    assert exc.response.status_code == 429
                    assert time.monotonic() < deadline
                    await anyio.sleep(0.05)
            assert time.monotonic() - started >= window
