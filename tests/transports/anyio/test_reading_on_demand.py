"""Reading on demand in the anyio transport: a handler's recv() reads in its own
task, and a reader task starts only when needed (the handler stays out of recv(),
pings, or a second task needs input). Whatever the handler does, pings are
answered, a peer's close is seen, memory stays bounded and messages keep their
order."""

from __future__ import annotations

import struct

import anyio
import pytest

from tests.transports.helpers import RawClient, close, frame, text
from websockets_routes import ConnectionClosed, ConnectionClosedOK, Router
from websockets_routes.transports.anyio import connection as anyio_connection
from websockets_routes.transports.anyio import serve

pytestmark = pytest.mark.anyio

TIMEOUT = 10


def unmasked_binary(payload: bytes) -> bytes:
    """A client binary frame with a zero mask key: no per-byte masking in Python."""
    return bytes((0x82, 0x80 | 127)) + struct.pack("!Q", len(payload)) + bytes(4) + payload


async def next_frame(raw: RawClient, skip: int = 0x81) -> tuple[int, bytes]:
    """The next server frame that is not a ``skip`` frame (the pusher's messages)."""
    while True:
        b0, payload = await raw.read_frame()
        if b0 != skip:
            return b0, payload


async def test_push_only_handler_answers_pings_and_sees_the_close():
    ended: list[BaseException] = []
    done = anyio.Event()
    router = Router()

    @router.route("/push")
    async def push(ws, path):
        try:
            while True:  # never calls recv()
                await ws.send("tick")
                await anyio.sleep(0.005)
        except ConnectionClosed as exc:
            ended.append(exc)
        finally:
            done.set()

    async with serve(router, "127.0.0.1", 0, ping_interval=None) as server:
        with anyio.fail_after(2):
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/push")
                assert (await raw.read_frame()) == (0x81, b"tick")
                await raw.send(frame(0x9, b"are you there"))
                assert await next_frame(raw) == (0x8A, b"are you there")
                await raw.send(close(1000, "bye"))
                b0, payload = await next_frame(raw)
                assert (b0, payload[:2]) == (0x88, struct.pack("!H", 1000))
                await raw.read_to_eof()  # the server ends TCP
                await done.wait()
    assert len(ended) == 1 and isinstance(ended[0], ConnectionClosedOK)


async def test_a_busy_handler_does_not_let_a_flood_fill_memory():
    total = 600  # 38 MiB: more than the kernel buffers of a loopback connection hold
    release = anyio.Event()
    router = Router()

    @router.route("/busy")
    async def busy(ws, path):
        await release.wait()  # busy elsewhere, not in recv()
        for count in range(total):
            message = await ws.recv()
            assert int.from_bytes(message[:4], "big") == count
        await ws.send(str(total))

    chunk = bytes(65536)
    progress = [0]

    async def flood(raw):
        for i in range(total):
            await raw.send(unmasked_binary(i.to_bytes(4, "big") + chunk))
            progress[0] += 1

    async with serve(router, "127.0.0.1", 0, ping_interval=None, max_queue=16) as server:
        with anyio.fail_after(TIMEOUT):
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/busy")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(flood, raw)
                    last = -1
                    while progress[0] != last or not last:  # until the client is blocked
                        last = progress[0]
                        await anyio.sleep(0.2)
                    # Only kernel buffers and max_queue messages are in flight.
                    assert progress[0] < total // 2
                    release.set()
                b0, payload = await raw.read_frame()
                assert (b0, payload) == (0x81, str(total).encode())
                assert await raw.expect_close() == 1000


async def test_close_from_another_task_while_recv_reads():
    outcome: dict[str, object] = {}
    done = anyio.Event()
    router = Router()

    @router.route("/two")
    async def two(ws, path):
        reading = anyio.Event()

        async def receive():
            reading.set()  # recv() is entered before this task first yields
            try:
                outcome["message"] = await ws.recv()
            except ConnectionClosed as exc:
                outcome["recv"] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            await reading.wait()
            await ws.close(1000, "bye")
            outcome["closed"] = ws.close_code
        done.set()

    # A hang would last close_timeout: longer than fail_after allows.
    async with serve(router, "127.0.0.1", 0, ping_interval=None, close_timeout=5) as server:
        with anyio.fail_after(2):
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/two")
                b0, payload = await raw.read_frame()
                assert (b0, payload) == (0x88, struct.pack("!H", 1000) + b"bye")
                # Answer only once close() waits for it while recv() reads elsewhere.
                await anyio.wait_all_tasks_blocked()
                await raw.send(close(1000, "bye"))
                assert await raw.read_to_eof() == b""  # the server ends TCP
            await done.wait()
    assert isinstance(outcome.get("recv"), ConnectionClosedOK), outcome
    assert outcome["closed"] == 1000


async def test_ping_from_a_handler_that_does_not_read(connect, monkeypatch):
    # A long look interval (2 s): without ping() starting the reader task, the pong
    # would wait for the timer; a pause of the test process cannot make up 1 s.
    monkeypatch.setattr(anyio_connection, "_READER_AFTER", 2.0)
    router = Router()

    @router.route("/ping")
    async def ping(ws, path):
        waiter = await ws.ping(b"hello")
        with anyio.fail_after(2):
            latency = await waiter
        await ws.send(repr(latency))

    async with serve(router, "127.0.0.1", 0, ping_interval=None) as server:
        with anyio.fail_after(TIMEOUT):
            async with connect(server, "/ping", ping_interval=None) as ws:
                latency = float(await ws.recv())
    # The pong was read at once: without ping() starting the reader task, the
    # timer would start it only _READER_AFTER after the handshake (latency >= 2 s).
    assert 0 <= latency < 1.0


async def test_echo_keeps_order_and_recv_in_two_tasks_is_an_error():
    count = 200
    router = Router()

    @router.route("/echo")
    async def echo(ws, path):
        async for message in ws:
            await ws.send(message)

    @router.route("/twice")
    async def twice(ws, path):
        reading = anyio.Event()

        async def first():
            reading.set()  # recv() is entered before this task first yields
            await ws.send("first got " + await ws.recv())

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await reading.wait()
            try:
                await ws.recv()
            except RuntimeError as exc:
                await ws.send(f"second: {type(exc).__name__}")

    async with serve(router, "127.0.0.1", 0, ping_interval=None) as server:
        with anyio.fail_after(TIMEOUT):
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/echo")
                sent = [f"m{i}" for i in range(count)]
                await raw.send(b"".join(text(m) for m in sent))
                received = [(await raw.read_frame())[1].decode() for _ in range(count)]
                assert received == sent
                await raw.send(close(1000))
                assert await raw.expect_close() == 1000
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/twice")
                assert await raw.read_frame() == (0x81, b"second: RuntimeError")
                await raw.send(text("x"))
                assert await raw.read_frame() == (0x81, b"first got x")
                assert await raw.expect_close() == 1000
