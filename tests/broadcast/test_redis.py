"""The Redis backend against a real redis-server, on asyncio and trio.

Two ``Broadcast`` objects on one Redis stand for two processes: each keeps its own
client, pub/sub connection and members, exactly as a second process would (the CLI's
workers and the browser test run real separate processes).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from tests.broadcast.conftest import CONNECT_FAILURE_LEAK, room_router
from tests.redis_server import RedisServer
from websockets_routes.broadcast import Broadcast, BroadcastError

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(CONNECT_FAILURE_LEAK)]


async def next_message(messages: Any) -> Any:
    with anyio.fail_after(5):
        return await messages.__anext__()


async def test_a_message_crosses_processes_as_sent(anyio_backend: str, redis: RedisServer) -> None:
    async with Broadcast(redis.url) as here, Broadcast(redis.url) as there:
        async with there.subscribe("room") as messages:
            # join/subscribe returned: the subscription is live, no waiting needed
            for i in range(50):
                await here.publish("room", f"text {i}")
                await here.publish("room", bytes([i]))
            got = [await next_message(messages) for _ in range(100)]
        expected: list[str | bytes] = []
        for i in range(50):
            expected += [f"text {i}", bytes([i])]
        assert got == expected


async def test_members_on_two_servers_share_a_room(
    serve_router: Any, connect: Any, redis: RedisServer
) -> None:
    one, two = Broadcast(redis.url), Broadcast(redis.url)
    async with (
        serve_router(room_router(one)) as server_one,
        serve_router(room_router(two)) as server_two,
        connect(server_one, "/rooms/r") as alice,
        connect(server_two, "/rooms/r") as bob,
    ):
        assert await alice.recv() == "joined"
        assert await bob.recv() == "joined"
        await alice.send("hi from one")
        await bob.send(b"hi from two")
        for ws in (alice, bob):
            got = {await ws.recv(), await ws.recv()}
            assert got == {"hi from one", b"hi from two"}
    await one.aclose()
    await two.aclose()


async def test_redis_down_then_back(anyio_backend: str, redis: RedisServer) -> None:
    async with Broadcast(redis.url, timeout=2.0) as here, Broadcast(redis.url) as there:
        async with there.subscribe("c") as messages:
            await here.publish("c", "before")
            assert await next_message(messages) == "before"
            redis.stop()
            try:
                started = time.monotonic()
                with pytest.raises(BroadcastError, match=f"Redis at {redis.url} is unreachable"):
                    await here.publish("c", "lost")
                assert time.monotonic() - started < 5  # within a few seconds, never silent
                with pytest.raises(BroadcastError, match="cannot join channel 'd'"):
                    # the subscriber's side notices the drop, then refuses new joins
                    with anyio.fail_after(5):
                        while True:
                            async with there.subscribe("d"):
                                await anyio.sleep(0.01)
            finally:
                redis.start()
            # Back: the subscriber reconnects and re-subscribes "c" by itself.
            with anyio.fail_after(15):
                while True:
                    try:
                        await here.publish("c", "after")
                    except BroadcastError:
                        pass  # the publisher's pool reconnects too
                    with anyio.move_on_after(0.2):
                        if await messages.__anext__() == "after":
                            break


async def test_unreachable_host_names_the_url(anyio_backend: str) -> None:
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    async with Broadcast(url, timeout=1.0) as broadcast:
        with pytest.raises(BroadcastError, match="Redis at redis://127.0.0.1:1/0 is unreachable"):
            await broadcast.publish("c", "x")
        with pytest.raises(BroadcastError, match="cannot join channel 'c'"):
            async with broadcast.subscribe("c"):
                pass


async def test_joined_connections_stay_open_while_redis_is_down(
    serve_router: Any, connect: Any, redis: RedisServer, anyio_backend_name: str
) -> None:
    broadcast, publisher = Broadcast(redis.url), Broadcast(redis.url, timeout=1.0)
    async with serve_router(room_router(broadcast)) as server, connect(server, "/rooms/o") as ws:
        assert await ws.recv() == "joined"
        redis.stop()
        try:
            with pytest.raises(BroadcastError):
                await publisher.publish("room:o", "lost")
            pong = await ws.ping()
            with anyio.fail_after(5):  # the connection is open and served
                await (pong.wait() if anyio_backend_name == "trio" else pong)
        finally:
            redis.start()
        with anyio.fail_after(15):  # re-subscribed by itself: publishes reach it again
            while True:
                try:
                    await publisher.publish("room:o", "back")
                except BroadcastError:
                    continue
                with anyio.move_on_after(0.2):
                    assert await ws.recv() == "back"
                    break
    await broadcast.aclose()
    await publisher.aclose()
