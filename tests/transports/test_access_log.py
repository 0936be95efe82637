"""The access log (logger ``websockets_routes.access``) on every server of the suite.

Real servers on 127.0.0.1, port 0 (``serve_router``), and real clients. The lines are
read once the server block has ended: the server waits for every connection to end,
so every line has been written by then.
"""

from __future__ import annotations

import logging

import anyio
import pytest
from websockets.exceptions import InvalidStatus

from websockets_routes import Router

from .helpers import RawClient

pytestmark = pytest.mark.anyio

TIMEOUT = 10
LOGGER = "websockets_routes.access"


def make_router() -> Router:
    router = Router()

    @router.route("/rooms/{room}", name="room")
    async def room(ws, path):
        async for message in ws:
            await ws.send(message)

    @router.route("/bye")
    async def bye(ws, path):
        await ws.send("bye")

    @router.http("/health")
    async def health(request):
        return 200, [("Content-Type", "text/plain")], b"ok\n"

    return router


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == LOGGER]


async def test_a_handshake_and_a_close_line(serve_router, connect, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with connect(server, "/rooms/7?token=secret") as ws:
                host, port = ws.local_address[:2]
                for message in ["a", "b", b"c"]:
                    await ws.send(message)
                    assert await ws.recv() == message
                await ws.send("d")  # not echoed before the close: in, not out
    answer, closed = lines(caplog)
    peer = f"{host}:{port}"
    assert answer.levelno == closed.levelno == logging.INFO
    assert answer.getMessage() == f'{peer} - "GET /rooms/7" 101 room'
    assert "secret" not in answer.getMessage()
    assert closed.args[:3] == (peer, "room", 1000)
    seconds, received, sent = closed.args[3:]
    assert 0 <= seconds < TIMEOUT and received == 4 and sent in (3, 4)
    assert closed.getMessage() == (
        f"{peer} - room closed 1000 after {seconds:.3f}s (messages: {received} in, {sent} out)"
    )


async def test_the_close_line_counts_exactly(serve_router, connect, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with connect(server, "/rooms/1") as ws:
                for message in ["a", "b", "c", "d"]:
                    await ws.send(message)
                    assert await ws.recv() == message
            async with connect(server, "/bye") as ws:  # the server closes: 1000 too
                assert await ws.recv() == "bye"
                await ws.wait_closed()
    room_closed, bye_closed = [record for record in lines(caplog) if "closed" in record.msg]
    assert room_closed.args[4:] == (4, 4)
    assert bye_closed.args[1:3] == ("/bye", 1000) and bye_closed.args[4:] == (0, 1)


async def test_a_404_and_a_plain_http_request(serve_router, connect, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            with pytest.raises(InvalidStatus):
                async with connect(server, "/nowhere?x=1"):
                    pass
            async with await RawClient.connect(server.port) as raw:
                await raw.send(b"GET /health?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await raw.read_head()).startswith("HTTP/1.1 200 ")
                await raw.read_to_eof()
            async with await RawClient.connect(server.port) as raw:
                await raw.send(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
                assert (await raw.read_head()).startswith("HTTP/1.1 400 ")
                await raw.read_to_eof()
    messages = [record.getMessage().partition(" - ")[2] for record in lines(caplog)]
    assert messages == ['"GET /nowhere" 404 -', '"GET /health" 200 /health', '"- -" 400 -']
    assert all(record.args[0].startswith("127.0.0.1:") for record in lines(caplog))


async def test_nothing_is_logged_when_the_logger_is_off(serve_router, connect, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with connect(server, "/rooms/1") as ws:
                await ws.send("a")
                assert await ws.recv() == "a"
            with pytest.raises(InvalidStatus):
                async with connect(server, "/nowhere"):
                    pass
    assert lines(caplog) == []
