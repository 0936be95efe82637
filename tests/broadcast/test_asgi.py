"""Broadcast under ASGI servers: uvicorn with the Redis backend, two servers, one room."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect

from tests.broadcast.conftest import CONNECT_FAILURE_LEAK, room_router
from tests.redis_server import RedisServer
from tests.transports.asgi.servers import run_hypercorn, run_uvicorn
from websockets_routes.broadcast import Broadcast

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(CONNECT_FAILURE_LEAK)]
BACKENDS = ("asyncio",)  # uvicorn runs on asyncio


async def test_uvicorn_and_hypercorn_share_a_room_through_redis(redis: RedisServer) -> None:
    one, two = Broadcast(redis.url), Broadcast(redis.url)
    async with (
        run_uvicorn(room_router(one).asgi, "websockets-sansio") as port_one,
        run_hypercorn(room_router(two).asgi) as port_two,
        connect(f"ws://127.0.0.1:{port_one}/rooms/asgi") as alice,
        connect(f"ws://127.0.0.1:{port_two}/rooms/asgi") as bob,
    ):
        assert await alice.recv() == "joined"
        assert await bob.recv() == "joined"
        await alice.send("from uvicorn")
        assert await bob.recv() == "from uvicorn"
        assert await alice.recv() == "from uvicorn"
        await bob.send(b"from hypercorn")
        assert await alice.recv() == b"from hypercorn"
        assert await bob.recv() == b"from hypercorn"
    await one.aclose()
    await two.aclose()
