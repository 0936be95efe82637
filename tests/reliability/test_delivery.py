"""Nothing accepted is lost: under backpressure both ways every message gets through,
in order, before the close frame; and a TLS client that never finishes its handshake
is dropped at open_timeout like any slow client.
"""

from __future__ import annotations

import ssl
import struct

import anyio
import pytest

from tests.reliability.support import Sock, client_frame, echo_router, request
from websockets_routes import ConnectionClosedOK, Router

pytestmark = pytest.mark.anyio

TIMEOUT = 20
COUNT = 300
SIZE = 16384


async def test_every_message_from_the_client_reaches_the_handler_in_order(serve_router):
    """300 messages and a close frame in one burst, max_queue=2, a handler that is slow
    to read: it gets all 300, in order, then ConnectionClosedOK (1000)."""
    got: list[int] = []
    ended = anyio.Event()
    outcome: list[int] = []
    router = Router()

    @router.route("/sink")
    async def sink(ws, path):
        try:
            while True:
                message = await ws.recv()
                got.append(int.from_bytes(message[:4], "big"))
                if len(got) % 50 == 0:
                    await anyio.sleep(0.01)  # a slow reader: the queue fills, reading pauses
        except ConnectionClosedOK as exc:
            outcome.append(exc.code)
        finally:
            ended.set()

    filler = b"d" * (SIZE - 4)
    burst = b"".join(client_frame(0x2, i.to_bytes(4, "big") + filler) for i in range(COUNT))
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, max_queue=2, compression=None) as server:
            async with await Sock.connect(server.port) as client:
                await client.open("/sink")
                await client.send(burst + client_frame(0x8, struct.pack("!H", 1000)))
                assert await client.expect_close() == (1000, "")
                assert await client.read_to_eof() == b""
            await ended.wait()
    assert got == list(range(COUNT))
    assert outcome == [1000]


async def test_every_message_from_the_handler_reaches_a_slow_client_before_the_close(
    serve_router,
):
    """The handler sends 300 messages to a client with a small receive buffer, then
    returns: the client reads all of them, in order, then the 1000 close frame."""
    router = Router()

    @router.route("/source")
    async def source(ws, path):
        filler = b"s" * (SIZE - 4)
        for i in range(COUNT):
            await ws.send(i.to_bytes(4, "big") + filler)

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, compression=None) as server:
            async with await Sock.connect(server.port, rcvbuf=16384) as client:
                await client.open("/source")
                seen = []
                while True:
                    b0, payload = await client.read_frame()
                    if b0 == 0x88:
                        break
                    assert b0 == 0x82 and len(payload) == SIZE
                    seen.append(int.from_bytes(payload[:4], "big"))
                    if len(seen) % 50 == 0:
                        await anyio.sleep(0.01)
                assert payload == struct.pack("!H", 1000)
                assert seen == list(range(COUNT))
                await client.send(client_frame(0x8, struct.pack("!H", 1000)))
                assert await client.read_to_eof() == b""


# TLS


async def tls_echo_works(port: int, client_context: ssl.SSLContext) -> None:
    stream = await anyio.connect_tcp(
        "127.0.0.1", port, ssl_context=client_context, tls_standard_compatible=False
    )
    async with stream:
        await stream.send(request("/echo") + client_frame(0x1, b"over tls"))
        data = b""
        while not data.endswith(b"\x81\x08over tls"):
            data += await stream.receive()
        assert data.startswith(b"HTTP/1.1 101 ")


@pytest.mark.parametrize(
    "sent", [b"", b"\x16\x03\x01\x00\xa5\x01\x00"], ids=["nothing", "half-hello"]
)
async def test_tls_handshake_never_finished_is_dropped_at_open_timeout(
    serve_router, tls_contexts, sent
):
    open_timeout = 0.3
    server_context, client_context = tls_contexts
    async with serve_router(echo_router(), ssl=server_context, open_timeout=open_timeout) as server:
        async with await Sock.connect(server.port) as client:
            if sent:
                await client.send(sent)
            start = anyio.current_time()
            with anyio.fail_after(open_timeout + 1):
                await client.read_to_eof()
            assert anyio.current_time() - start >= open_timeout * 0.8
        await tls_echo_works(server.port, client_context)
