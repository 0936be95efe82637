"""The anyio transport's TCP details, on asyncio and trio: accepted sockets have
TCP_NODELAY (small frames are not held back by Nagle), and after a closing handshake
the FIN follows the close frame while the handler still runs."""

from __future__ import annotations

import socket

import anyio
import pytest

from tests.transports.helpers import RawClient, close
from websockets_routes import ConnectionClosed, Router
from websockets_routes.transports.anyio import serve

pytestmark = pytest.mark.anyio

TIMEOUT = 10


async def test_accepted_connections_have_tcp_nodelay():
    router = Router()
    seen: list[int] = []

    @router.route("/nodelay")
    async def nodelay(ws, path):
        raw = ws.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        seen.append(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        await ws.send("checked")

    with anyio.fail_after(TIMEOUT):
        async with serve(router, "127.0.0.1", 0) as server:
            async with await RawClient.connect(server.port) as client:
                await client.open("/nodelay")
                b0, payload = await client.read_frame()
                assert (b0, payload) == (0x81, b"checked")
    assert len(seen) == 1 and seen[0] != 0


async def test_fin_follows_the_close_frame_while_the_handler_runs():
    router = Router()
    release = anyio.Event()
    ended = anyio.Event()

    @router.route("/linger")
    async def linger(ws, path):
        try:
            await ws.recv()
        except ConnectionClosed:
            pass
        await release.wait()  # the handler goes on after the close
        ended.set()

    with anyio.fail_after(TIMEOUT):
        async with serve(router, "127.0.0.1", 0) as server:
            async with await RawClient.connect(server.port) as client:
                await client.open("/linger")
                await client.send(close(1000))
                assert await client.expect_close() == 1000
                assert await client.read_to_eof() == b""
                assert not ended.is_set()
            release.set()
            await ended.wait()
