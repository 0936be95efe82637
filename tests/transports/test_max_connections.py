"""``max_connections`` on every server of the suite: real sockets on 127.0.0.1."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import pytest
from websockets.exceptions import InvalidStatus

from websockets_routes import Router

from .helpers import RawClient, handshake, random_key

pytestmark = pytest.mark.anyio

TIMEOUT = 10


def make_router() -> Router:
    router = Router()

    @router.route("/echo")
    async def echo(ws, path):
        async for message in ws:
            await ws.send(message)

    @router.http("/health")
    async def health(request):
        return b"ok\n"

    return router


async def refused(connect, server) -> None:
    """A handshake gets 503 with Retry-After and a short body."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(server, "/echo"):
            pass
    response = info.value.response
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert b"too many open connections" in response.body


async def echoes(ws, message: str) -> None:
    await ws.send(message)
    assert await ws.recv() == message


async def test_past_max_connections_a_handshake_gets_503_until_one_closes(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router(), max_connections=2) as server:
            async with connect(server, "/echo") as second:
                async with connect(server, "/echo") as first:
                    await echoes(first, "first")
                    await echoes(second, "second")
                    await refused(connect, server)
                    # The refused connection ends cleanly: the answer, then EOF.
                    async with await RawClient.connect(server.port) as raw:
                        await raw.send(handshake("/echo", key=random_key()))
                        head = await raw.read_head()
                        assert head.startswith("HTTP/1.1 503 ")
                        assert "\r\nretry-after: 1\r\n" in head.lower() + "\r\n"
                        assert (await raw.read_to_eof()).startswith(b"503 Service Unavailable")
                    # Plain-HTTP requests are not counted, nor refused.
                    async with await RawClient.connect(server.port) as raw:
                        await raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                        assert (await raw.read_head()).startswith("HTTP/1.1 200 ")
                        assert await raw.read_to_eof() == b"ok\n"
                # The first client closed: its place was given back at the close.
                async with connect(server, "/echo") as third:
                    await echoes(third, "third")
                    await refused(connect, server)  # full again
                await echoes(second, "still open")
            async with connect(server, "/echo") as ws:  # every one closed: room again
                await echoes(ws, "again")


async def test_no_limit_by_default(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with AsyncExitStack() as stack:
                for _ in range(20):
                    ws = await stack.enter_async_context(connect(server, "/echo"))
                await ws.send("last")
                assert await ws.recv() == "last"


@pytest.mark.parametrize("value", [0, -1, 2.5, "3"])
async def test_max_connections_must_be_a_positive_int(serve_router, value):
    with pytest.raises(ValueError, match="max_connections"):
        serve_router(make_router(), max_connections=value)
