"""Per-route policy through the TestClient: options, converters and rate limits."""

from __future__ import annotations

import anyio
import pytest

from websockets_routes import ConnectionClosed, Router
from websockets_routes.testing import HandshakeRejected, TestClient

pytestmark = pytest.mark.anyio

TIMEOUT = 10
MiB = 2**20


async def echo(ws, path):
    async for message in ws:
        await ws.send(message)


async def test_route_options_override_the_client_server_options() -> None:
    router = Router()
    router.route("/small", max_size=1024, compression=False)(echo)
    router.route("/big", max_size=2 * MiB)(echo)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(router, max_size=64 * 1024) as client:
            async with client.connect("/big") as big:
                assert big.extensions is not None  # the server's compression
                await big.send(b"\x01" * MiB)
                assert await big.recv() == b"\x01" * MiB
            async with client.connect("/small") as small:
                assert small.extensions is None
                await small.send("x" * 1025)
                with pytest.raises(ConnectionClosed) as info:
                    await small.recv()
                assert info.value.code == 1009


async def test_converters_and_rate_limits() -> None:
    now = [0.0]
    router = Router(clock=lambda: now[0])

    @router.route("/n/{n}", convert={"n": int}, rate_limit=(2, 10))
    async def double(ws, path):
        await ws.send(str(path.params["n"] * 2))

    with anyio.fail_after(TIMEOUT):
        async with TestClient(router) as client:
            for _ in range(2):
                async with client.connect("/n/4") as ws:
                    assert await ws.recv() == "8"
            now[0] = 9.2
            with pytest.raises(HandshakeRejected) as info:
                async with client.connect("/n/4"):
                    pass
            assert info.value.status == 429
            assert dict(info.value.headers)["Retry-After"] == "1"
            with pytest.raises(HandshakeRejected) as info:
                async with client.connect("/n/four"):
                    pass
            assert info.value.status == 404
            now[0] = 10.0
            async with client.connect("/n/5") as ws:
                assert await ws.recv() == "10"
