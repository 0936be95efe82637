"""Graceful shutdown: ``server.close()`` stops accepting, sends 1001 to every open
connection, cancels handlers still running ``close_timeout`` later, and
``wait_closed()`` returns with every socket closed. Under -W error any "Task was
destroyed" or unclosed-socket warning fails the test (gc.collect() brings them out
inside it).
"""

from __future__ import annotations

import gc
import struct

import anyio
import pytest

from tests.reliability.support import (
    Sock,
    client_frame,
    echo_router,
    gather,
    open_fds,
    request,
    until_stalled,
)
from websockets_routes import ConnectionClosed, Router

pytestmark = pytest.mark.anyio

CLOSE_TIMEOUT = 0.3
SLACK = 2.0


async def refused(port: int) -> bool:
    """True if a new connection is refused, or accepted by the kernel and then
    dropped without a 101."""
    try:
        client = await Sock.connect(port)
    except OSError:
        return True
    async with client:
        try:
            await client.send(request("/echo"))
            return not (await client.read_to_eof()).startswith(b"HTTP/1.1 101")
        except OSError:
            return True


def shutdown_router(stuck_started: anyio.Event, cancelled: list) -> Router:
    router = echo_router()

    @router.route("/stuck")
    async def stuck(ws, path):
        stuck_started.set()
        try:
            await anyio.sleep_forever()
        except BaseException:
            cancelled.append(True)
            raise

    @router.route("/hook")
    class SlowHook:
        async def process_request(self, path, headers):
            await anyio.sleep(0.2)

        async def handle(self, ws, path):
            async for message in ws:
                await ws.send(message)

    return router


async def test_close_sends_1001_everywhere_cancels_handlers_and_wait_closed_returns(
    serve_router,
):
    stuck_started, cancelled = anyio.Event(), []
    baseline = open_fds()
    async with serve_router(
        shutdown_router(stuck_started, cancelled), close_timeout=CLOSE_TIMEOUT
    ) as server:
        port = server.port
        clients = [await Sock.connect(port) for _ in range(12)]
        for client in clients[:10]:
            await client.open("/echo")
        await clients[10].open("/stuck")
        await stuck_started.wait()
        await clients[11].send(request("/echo")[:30])  # a handshake half sent
        deciding = await Sock.connect(port)
        await deciding.send(request("/hook"))  # the hook is still deciding
        start = anyio.current_time()
        server.close()
        assert await refused(port)

        async def answer(client: Sock) -> tuple[int | None, str]:
            code = await client.expect_close()
            await client.send(client_frame(0x8, struct.pack("!H", 1001)))
            await client.read_to_eof()
            return code

        async def half_sent() -> bytes:
            return await clients[11].read_to_eof()

        async def hook_client() -> bytes:
            rest = await deciding.read_to_eof()
            if rest.startswith(b"HTTP/1.1 101"):  # accepted, then told we go away
                assert b"\x88\x02\x03\xe9" in rest
            return b""

        with anyio.fail_after(CLOSE_TIMEOUT + SLACK):
            codes = await gather(
                *(lambda c=c: answer(c) for c in clients[:11]), half_sent, hook_client
            )
            await server.wait_closed()
        elapsed = anyio.current_time() - start
        assert codes[:11] == [(1001, "")] * 11
        assert codes[11] == b""  # no answer to half a request
        assert cancelled == [True]
        assert CLOSE_TIMEOUT * 0.8 <= elapsed < CLOSE_TIMEOUT + SLACK
        for client in (*clients, deciding):
            client.close()
    assert await refused(port)
    gc.collect()
    assert open_fds() == baseline


async def test_wait_closed_returns_with_a_peer_that_never_answers_1001(serve_router):
    async with serve_router(echo_router(), close_timeout=CLOSE_TIMEOUT) as server:
        async with await Sock.connect(server.port) as client:
            await client.open("/echo")
            server.close()
            assert await client.expect_close() == (1001, "")
            start = anyio.current_time()
            with anyio.fail_after(CLOSE_TIMEOUT + SLACK):
                await server.wait_closed()
                await client.read_to_eof()  # cut, since we never answered
            assert anyio.current_time() - start >= CLOSE_TIMEOUT * 0.8
    gc.collect()


async def test_shutdown_with_a_handler_blocked_on_a_peer_that_does_not_read(serve_router):
    progress = [0]
    router = Router()

    @router.route("/firehose")
    async def firehose(ws, path):
        try:
            while True:
                await ws.send(b"x" * 65536)
                progress[0] += 1
        except ConnectionClosed:
            pass

    async with serve_router(router, compression=None, close_timeout=CLOSE_TIMEOUT) as server:
        async with await Sock.connect(server.port, rcvbuf=65536) as client:
            await client.open("/firehose")
            await until_stalled(lambda: progress[0], quiet=0.3)
            start = anyio.current_time()
            server.close()
            with anyio.fail_after(CLOSE_TIMEOUT + SLACK):
                await server.wait_closed()
            assert anyio.current_time() - start >= CLOSE_TIMEOUT * 0.5
    gc.collect()


async def test_shutdown_while_reading_is_paused_by_max_queue(serve_router):
    """A flooding client and a handler that reads nothing: reading is paused when
    close() comes; the 1001 handshake must still complete (our close frame read)."""
    release = anyio.Event()
    router = Router()

    @router.route("/slow")
    async def slow(ws, path):
        await release.wait()

    async with serve_router(router, max_queue=2, close_timeout=5) as server:
        async with await Sock.connect(server.port) as client:
            await client.open("/slow")
            await client.send(client_frame(0x2, b"m" * 1000) * 50)
            server.close()
            assert await client.expect_close() == (1001, "")
            await client.send(client_frame(0x8, struct.pack("!H", 1001)))
            start = anyio.current_time()
            with anyio.fail_after(SLACK):
                await client.read_to_eof()  # at once, not after close_timeout
            assert anyio.current_time() - start < SLACK
        release.set()
        with anyio.fail_after(SLACK):
            await server.wait_closed()
    gc.collect()


async def test_serve_forever_returns_after_close(serve_router):
    async with serve_router(echo_router(), close_timeout=CLOSE_TIMEOUT) as server:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve_forever)
            async with await Sock.connect(server.port) as client:
                await client.open("/echo")
                server.close()
                assert await client.expect_close() == (1001, "")
                await client.send(client_frame(0x8, struct.pack("!H", 1001)))
                await client.read_to_eof()
            with anyio.fail_after(SLACK):
                await server.wait_closed()
    gc.collect()
