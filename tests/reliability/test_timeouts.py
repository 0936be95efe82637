"""Peers that go silent after the handshake: keepalive pings nobody answers, closing
handshakes nobody finishes, a peer that stops reading altogether. Each connection
ends within its timeouts, and the handler learns of it.
"""

from __future__ import annotations

import struct

import anyio
import pytest

from tests.reliability.support import (
    Sock,
    client_frame,
    echo_router,
    echo_works,
    until_stalled,
)
from websockets_routes import ConnectionClosed, Router

pytestmark = pytest.mark.anyio

PING_INTERVAL = 0.1
PING_TIMEOUT = 0.2
CLOSE_TIMEOUT = 0.2
SLACK = 1.5  # scheduling on a loaded 2-core machine


def since(start: float) -> float:
    return anyio.current_time() - start


async def test_peer_that_never_answers_pings_is_closed_after_ping_timeout(serve_router):
    """Ping at ping_interval, close 1011 ping_timeout later, TCP cut close_timeout
    after that (the peer answers nothing, not even the close)."""
    async with serve_router(
        echo_router(),
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        close_timeout=CLOSE_TIMEOUT,
    ) as server:
        async with await Sock.connect(server.port) as client:
            await client.open("/echo")
            start = anyio.current_time()
            with anyio.fail_after(PING_INTERVAL + SLACK):
                b0, _ = await client.read_frame()
            assert b0 == 0x89
            pinged = since(start)
            assert pinged >= PING_INTERVAL * 0.8
            with anyio.fail_after(PING_TIMEOUT + SLACK):
                code, reason = await client.expect_close()
            assert (code, reason) == (1011, "keepalive ping timeout")
            assert since(start) - pinged >= PING_TIMEOUT * 0.8
            closed = anyio.current_time()
            with anyio.fail_after(CLOSE_TIMEOUT + SLACK):
                assert await client.read_to_eof() == b""
            assert since(closed) >= CLOSE_TIMEOUT * 0.8
        await echo_works(server.port)


def closer_router(done: anyio.Event, result: list) -> Router:
    router = echo_router()

    @router.route("/closer")
    async def closer(ws, path):
        await ws.close(1000, "bye")  # waits for the closing handshake
        result.append(ws.close_code)
        done.set()

    return router


@pytest.mark.parametrize("peer", ["silent", "keeps-sending"])
async def test_unfinished_closing_handshake_is_cut_after_close_timeout(serve_router, peer):
    """The handler closes; the peer never sends its close frame (silent, or sending
    messages as if nothing happened): TCP is cut after close_timeout and the
    handler's close() returns."""
    done, result = anyio.Event(), []
    async with serve_router(closer_router(done, result), close_timeout=CLOSE_TIMEOUT) as server:
        async with await Sock.connect(server.port) as client:
            await client.open("/closer")
            with anyio.fail_after(SLACK):
                assert await client.read_frame() == (0x88, struct.pack("!H", 1000) + b"bye")
            start = anyio.current_time()
            async with anyio.create_task_group() as tg:
                if peer == "keeps-sending":

                    async def chatter() -> None:
                        try:
                            while True:
                                await client.send(client_frame(0x1, b"la la la"))
                                await anyio.sleep(0.02)
                        except OSError:
                            pass

                    tg.start_soon(chatter)
                with anyio.fail_after(CLOSE_TIMEOUT + SLACK):
                    await client.read_to_eof()
                tg.cancel_scope.cancel()
            assert since(start) >= CLOSE_TIMEOUT * 0.8
        with anyio.fail_after(SLACK):
            await done.wait()
        await echo_works(server.port)


async def test_peer_holding_tcp_after_a_protocol_error_is_cut_after_close_timeout(serve_router):
    """The server failed the connection (1002) and half-closed; the peer neither
    answers nor closes: the server closes TCP after close_timeout."""
    async with serve_router(echo_router(), close_timeout=CLOSE_TIMEOUT) as server:
        async with await Sock.connect(server.port) as client:
            await client.open("/echo")
            await client.send(client_frame(0x3, b""))
            assert (await client.expect_close())[0] == 1002
            await client.eof_within(SLACK)  # half-close: our side may still send
            start = anyio.current_time()
            with anyio.fail_after(CLOSE_TIMEOUT + SLACK):
                while True:  # the server's socket is gone once writing fails
                    try:
                        await client.send(b"x")
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    await anyio.sleep(0.02)
            assert since(start) >= CLOSE_TIMEOUT * 0.5


async def test_server_closes_tcp_first_after_the_closing_handshake(serve_router):
    """RFC 6455 7.1.1: once the close frames are exchanged the server closes TCP at
    once; it does not wait for the client to do it (or for close_timeout)."""
    async with serve_router(echo_router(), close_timeout=10) as server:
        async with await Sock.connect(server.port) as client:
            await client.open("/echo")
            await client.send(client_frame(0x8, struct.pack("!H", 1000)))
            assert await client.expect_close() == (1000, "")
            assert await client.eof_within(SLACK) < SLACK


async def test_peer_that_stops_reading_is_closed_by_keepalive(serve_router):
    """A peer that stops reading cannot answer pings: even with the handler stuck in
    send() (the write buffer full), the connection ends after ping_interval +
    ping_timeout + close_timeout, and that send() raises ConnectionClosed."""
    outcome: list[BaseException] = []
    done = anyio.Event()
    router = Router()

    @router.route("/firehose")
    async def firehose(ws, path):
        chunk = b"x" * 65536
        try:
            while True:
                await ws.send(chunk)
        except ConnectionClosed as exc:
            outcome.append(exc)
        finally:
            done.set()

    async with serve_router(
        router,
        compression=None,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        close_timeout=CLOSE_TIMEOUT,
    ) as server:
        async with await Sock.connect(server.port, rcvbuf=65536) as client:
            await client.open("/firehose")
            # We read nothing more; the server must give up on us by itself.
            with anyio.fail_after(PING_INTERVAL + PING_TIMEOUT + CLOSE_TIMEOUT + SLACK):
                await done.wait()
        assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosed)


async def test_close_with_a_peer_that_does_not_read_returns_after_close_timeout(serve_router):
    """The handler's send() is blocked (the peer reads nothing); close() from another
    task must still end the connection within close_timeout, not wait forever."""
    progress = [0]
    stalled, closed = anyio.Event(), anyio.Event()
    router = Router()

    @router.route("/fill")
    async def fill(ws, path):
        async def flood() -> None:
            try:
                while True:
                    await ws.send(b"x" * 65536)
                    progress[0] += 1
            except ConnectionClosed:
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            await stalled.wait()
            await ws.close(1000)
            closed.set()

    async with serve_router(router, compression=None, close_timeout=CLOSE_TIMEOUT) as server:
        async with await Sock.connect(server.port, rcvbuf=65536) as client:
            await client.open("/fill")
            await until_stalled(lambda: progress[0], quiet=0.3)
            stalled.set()
            with anyio.fail_after(CLOSE_TIMEOUT + SLACK):
                await closed.wait()
