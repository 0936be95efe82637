"""``Broadcast`` with the in-memory backend, on every own server and the TestClient."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.broadcast.conftest import room_router
from websockets_routes import Router
from websockets_routes.broadcast import Broadcast, BroadcastError
from websockets_routes.testing import TestClient

pytestmark = pytest.mark.anyio


async def test_every_member_gets_every_message_in_order(serve_router: Any, connect: Any) -> None:
    broadcast = Broadcast()
    async with serve_router(room_router(broadcast)) as server:
        async with (
            connect(server, "/rooms/a") as alice,
            connect(server, "/rooms/a") as bob,
            connect(server, "/rooms/b") as carol,
        ):
            for ws in (alice, bob, carol):
                assert await ws.recv() == "joined"
            for i in range(20):
                await alice.send(f"text {i}")
                await alice.send(f"bytes {i}".encode())
            for ws in (alice, bob):
                received = [await ws.recv() for _ in range(40)]
                expected: list[str | bytes] = []
                for i in range(20):
                    expected += [f"text {i}", f"bytes {i}".encode()]
                assert received == expected  # text stays text, bytes stay bytes
            await carol.send("only b")
            assert await carol.recv() == "only b"
    await broadcast.aclose()


async def test_a_connection_may_join_several_channels(serve_router: Any, connect: Any) -> None:
    broadcast = Broadcast()
    router = Router()

    @router.route("/both")
    async def both(ws: Any, path: Any) -> None:
        async with broadcast.join("x", ws), broadcast.join("y", ws):
            await ws.send("joined")
            await ws.recv()  # until the client says it is done
        await ws.send("left")

    async with serve_router(router) as server, connect(server, "/both") as ws:
        assert await ws.recv() == "joined"
        await broadcast.publish("x", "to x")
        await broadcast.publish("y", b"to y")
        await broadcast.publish("z", "to nobody")
        assert [await ws.recv(), await ws.recv()] == ["to x", b"to y"]
        await ws.send("done")
        assert await ws.recv() == "left"
        await broadcast.publish("x", "after leaving")  # reaches nobody, raises nothing
    await broadcast.aclose()


async def test_subscribe_for_code_that_is_not_a_websocket(anyio_backend: str) -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("news") as messages:
        await broadcast.publish("news", "one")
        await broadcast.publish("news", bytearray(b"two"))
        await broadcast.publish("other", "not for us")
        await broadcast.publish("news", "three")
        got = []
        async for message in messages:
            got.append(message)
            if len(got) == 3:
                break
        assert got == ["one", b"two", "three"]


async def test_a_subscriber_that_falls_behind_gets_broadcast_error(anyio_backend: str) -> None:
    async with Broadcast(max_backlog=1000) as broadcast:
        async with broadcast.subscribe("c") as messages:
            for _ in range(20):
                await broadcast.publish("c", b"x" * 100)  # never waits for the reader
            with pytest.raises(BroadcastError, match="fell more than 1000 bytes behind"):
                async for _ in messages:
                    pass


async def test_testclient_connections_join(anyio_backend: str) -> None:
    broadcast = Broadcast()
    async with TestClient(room_router(broadcast)) as client:
        async with client.connect("/rooms/t") as one, client.connect("/rooms/t") as two:
            assert await one.recv() == "joined"
            assert await two.recv() == "joined"
            await two.send("hello")
            assert await one.recv() == "hello"
            assert await two.recv() == "hello"
    await broadcast.aclose()


def test_bad_arguments_are_refused_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="unsupported broadcast URL 'kafka://x'"):
        Broadcast("kafka://x")
    with pytest.raises(ValueError, match="no host in broadcast URL"):
        Broadcast("redis:///0")
    with pytest.raises(ValueError, match="bad database 'x'"):
        Broadcast("redis://127.0.0.1:6379/x")
    with pytest.raises(ValueError, match="max_backlog"):
        Broadcast(max_backlog=0)


async def test_misuse_of_publish_and_join(anyio_backend: str) -> None:
    async with Broadcast() as broadcast:
        with pytest.raises(TypeError, match="a channel is a non-empty str"):
            await broadcast.publish("", "x")
        with pytest.raises(TypeError, match="a message is str or bytes-like, not int"):
            await broadcast.publish("c", 42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="join\\(\\) takes a WebSocket connection"):
            async with broadcast.join("c", object()):
                pass
    with pytest.raises(BroadcastError, match="closed"):
        await broadcast.publish("c", "after aclose")


async def test_publish_yields_to_the_loop(anyio_backend: str) -> None:
    """A publisher in a loop does not starve the other tasks."""
    ran = anyio.Event()

    async def other() -> None:
        ran.set()

    async with Broadcast() as broadcast, anyio.create_task_group() as tg:
        tg.start_soon(other)
        for _ in range(3):
            await broadcast.publish("c", "x")
        assert ran.is_set()


async def test_a_member_that_never_reads_is_closed_with_1013(
    serve_router: Any, connect: Any
) -> None:
    """The publisher and a reading member go on at full speed; the member that reads
    nothing is closed past max_backlog, after what was already queued for it."""
    from tests.transports.helpers import RawClient

    broadcast = Broadcast(max_backlog=256 * 1024)
    chunk = b"x" * 4096
    batches, batch = 256, 16  # 16 MiB in all: more than loopback's socket buffers
    async with serve_router(room_router(broadcast)) as server:
        async with connect(server, "/rooms/s") as fast, await RawClient.connect(server.port) as slow:
            await slow.open("/rooms/s")
            assert await slow.read_frame() == (0x81, b"joined")
            assert await fast.recv() == "joined"
            assert broadcast.members_here("room:s") == 2
            for n in range(batches):
                for i in range(batch):
                    await broadcast.publish("room:s", chunk[:-2] + bytes([n % 256, i]))
                for i in range(batch):  # the fast member keeps up, batch by batch
                    assert await fast.recv() == chunk[:-2] + bytes([n % 256, i])
            assert broadcast.members_here("room:s") == 1  # the slow one was dropped
            received = 0
            while True:
                b0, payload = await slow.read_frame()
                if b0 == 0x88:
                    assert int.from_bytes(payload[:2], "big") == 1013
                    break
                assert b0 == 0x82 and len(payload) == len(chunk)
                received += 1
            assert 0 < received < batches * batch
    await broadcast.aclose()


async def test_members_with_and_without_compression_get_the_same_message(
    serve_router: Any, connect: Any
) -> None:
    """One frame is shared by the members without compression; a member that
    negotiated permessage-deflate gets the message compressed by its own context."""
    broadcast = Broadcast()
    text = "compressible " * 200
    async with serve_router(room_router(broadcast), compression="deflate") as server:
        async with (
            connect(server, "/rooms/z", compression="deflate") as deflating,
            connect(server, "/rooms/z", compression=None) as plain,
        ):
            assert await deflating.recv() == "joined" and await plain.recv() == "joined"
            assert deflating.protocol.extensions and not plain.protocol.extensions
            for _ in range(3):  # the compression context carries over between messages
                await broadcast.publish("room:z", text)
            for ws in (deflating, plain):
                assert [await ws.recv() for _ in range(3)] == [text] * 3
    await broadcast.aclose()
