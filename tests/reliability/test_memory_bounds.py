"""Memory stays bounded whatever the peer does: a client flooding a slow handler
(``max_queue``), a client that never reads (the write buffer's high-water mark), a
client that floods pings without reading the pongs.

What the server holds is found by accounting (see support.py): bytes the client
wrote minus those still in the client's send queue, in the server's kernel receive
queue and consumed by the handler; or, the other way, bytes the server produced
minus those in its kernel send queue, in the client's receive queue and read. The
kernel queues come from ioctl(SIOCOUTQ/SIOCINQ) on both sockets. A bounded server stops reading (its kernel
receive queue fills, then the client's send queue) or stops producing; an unbounded
one shows the difference growing with the flood.
"""

from __future__ import annotations

import anyio
import pytest

from tests.reliability.support import Sock, client_frame, poll, until_stalled
from websockets_routes import ConnectionClosed, Router

pytestmark = pytest.mark.anyio

TIMEOUT = 30
PAYLOAD = 65536
FRAME = PAYLOAD + 14  # masked client frame: 2 + 8 length + 4 key
SERVER_FRAME = PAYLOAD + 10  # unmasked server frame
FLOOD = 48 * 2**20  # more than loopback's autotuned kernel buffers take in
BOUND = 2**20  # what the server may hold for one connection in these tests


async def flood(client: Sock, data: bytes, total: int) -> None:
    try:
        while client.sent < total:
            await client.send(data)
    except OSError:
        pass


async def test_flood_against_a_slow_handler_is_held_to_max_queue(serve_router, record_property):
    """max_queue=4 messages of 64 KiB: the server stops reading; what it holds stays
    under 1 MiB while the client tries to push 48 MiB."""
    consumed = [0]
    release = anyio.Event()
    router = Router()

    @router.route("/slow")
    async def slow(ws, path):
        await ws.recv()
        consumed[0] += FRAME
        await release.wait()
        while True:
            await ws.recv()
            consumed[0] += FRAME

    data = client_frame(0x2, b"m" * PAYLOAD)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, max_queue=4, compression=None) as server:
            async with await Sock.connect(server.port) as client:
                await client.open("/slow")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(flood, client, data, FLOOD)
                    await until_stalled(lambda: client.sent)
                    held = client.server_holds_in(server.port, consumed[0])
                    record_property("held", held)
                    record_property("client_sent", client.sent)
                    assert client.sent < FLOOD, "the server read the whole flood"
                    assert held < BOUND, (held, client.sent)
                    tg.cancel_scope.cancel()
                # Nothing accepted is lost: released, the handler gets every whole
                # message sent (the flood may have stopped inside the last one).
                release.set()
                whole = (client.sent - client.request_bytes) // FRAME * FRAME
                await poll(lambda: consumed[0] == whole)


async def test_client_that_never_reads_blocks_send_at_the_high_water_mark(
    serve_router, record_property
):
    """The handler sends 64 KiB messages to a client reading nothing: send() blocks;
    the server holds at most about a high-water mark plus a message."""
    attempted = [0]
    router = Router()

    @router.route("/firehose")
    async def firehose(ws, path):
        chunk = b"x" * PAYLOAD
        try:
            for _ in range(FLOOD // PAYLOAD):
                attempted[0] += 1
                await ws.send(chunk)
        except ConnectionClosed:
            pass

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, compression=None, close_timeout=0.5) as server:
            async with await Sock.connect(server.port) as client:
                await client.open("/firehose")
                await until_stalled(lambda: attempted[0])
                produced = attempted[0] * SERVER_FRAME
                held = client.server_holds_out(server.port, produced)
                record_property("held", held)
                record_property("produced", produced)
                assert attempted[0] < FLOOD // PAYLOAD, "send() never blocked"
                assert held < BOUND, (held, produced)


async def test_echo_flood_from_a_client_that_never_reads_is_bounded(serve_router, record_property):
    """An echo handler and a client that sends but never reads: send() blocks, so the
    handler stops receiving, so the queue fills, so reading stops. Bounded both ways."""
    echoed = [0]  # messages taken in and being (or having been) echoed
    router = Router()

    @router.route("/echo")
    async def echo(ws, path):
        async for message in ws:
            echoed[0] += 1
            await ws.send(message)

    data = client_frame(0x2, b"e" * PAYLOAD)
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, compression=None, max_queue=4, close_timeout=0.5) as (
            server
        ):
            async with await Sock.connect(server.port) as client:
                await client.open("/echo")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(flood, client, data, FLOOD)
                    await until_stalled(lambda: client.sent + echoed[0])
                    assert client.sent < FLOOD, "the server read the whole flood"
                    # The handler took echoed[0] messages in and wrote them out.
                    held_in = client.server_holds_in(server.port, echoed[0] * FRAME)
                    held_out = client.server_holds_out(server.port, echoed[0] * SERVER_FRAME)
                    record_property("held_in", held_in)
                    record_property("held_out", held_out)
                    record_property("client_sent", client.sent)
                    assert held_in < BOUND, held_in
                    assert held_out < BOUND, held_out
                    tg.cancel_scope.cancel()


async def test_ping_flood_from_a_client_that_never_reads_pongs_is_bounded(
    serve_router, record_property
):
    """Pings of 125 bytes, pongs never read: the server must stop reading once it
    cannot write its pongs, instead of queueing pongs without limit."""
    ping = client_frame(0x9, b"p" * 125)
    pong_size = 127
    data = ping * 512
    total = 24 * 2**20
    router = Router()

    @router.route("/quiet")
    async def quiet(ws, path):
        await ws.wait_closed()

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, compression=None) as server:
            async with await Sock.connect(server.port, rcvbuf=65536) as client:
                await client.open("/quiet")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(flood, client, data, total)
                    await until_stalled(lambda: client.sent)
                    parsed = client.server_holds_in(server.port, 0) // len(ping)
                    held_out = client.server_holds_out(server.port, parsed * pong_size)
                    tg.cancel_scope.cancel()
                record_property("held_out", held_out)
                record_property("client_sent", client.sent)
                assert held_out < BOUND, (held_out, client.sent)
                assert client.sent < total
