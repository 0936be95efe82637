"""Metrics under the TestClient, on asyncio and on trio: the same counts as on a server."""

from __future__ import annotations

import anyio
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from tests.metrics.support import TIMEOUT, handshakes, make_router, samples, value
from websockets_routes import ConnectionClosed
from websockets_routes.testing import HandshakeRejected, TestClient

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_counts_under_the_test_client(registry):
    router, _ = make_router(registry)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(router) as client:
            async with client.connect("/echo/1") as ws:
                for message in ["a", b"b"]:
                    await ws.send(message)
                    assert await ws.recv() == message
                assert value(registry, "websockets_routes_connections", route="echo") == 1
            async with client.connect("/echo/2") as ws:
                await ws.close(4000)
            for target, origin, status in [
                ("/nowhere", None, 404),
                ("/private", "https://elsewhere.example", 403),
                ("/busy/1", None, 429),
            ]:
                with pytest.raises(HandshakeRejected) as caught:
                    async with client.connect(target, origin=origin):
                        pass
                assert caught.value.status == status
            async with client.connect("/shut") as ws:
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
            assert (await client.get("/health")).status == 200
            response = await client.get("/metrics")
    assert response.status == 200
    assert response.header("Content-Type") == CONTENT_TYPE_LATEST
    assert b'websockets_routes_handshakes_total{outcome="accept",route="echo"} 2.0' in response.body
    assert handshakes(registry) == {
        ("echo", "accept"): 2,
        ("", "404"): 1,
        ("/private", "403"): 1,
        ("/busy/{id}", "429"): 1,
        ("shut", "close"): 1,
    }
    assert samples(registry, "websockets_routes_closes_total") == {
        ("1000", "echo"): 1,
        ("4000", "echo"): 1,
        ("4400", "shut"): 1,
    }
    assert samples(registry, "websockets_routes_connections") == {("echo",): 0, ("shut",): 0}
    assert samples(registry, "websockets_routes_messages_total") == {
        ("in", "echo"): 2,
        ("out", "echo"): 2,
        ("in", "shut"): 0,
        ("out", "shut"): 0,
    }
    assert value(registry, "websockets_routes_handshake_seconds_count", route="echo") == 2
