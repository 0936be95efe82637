"""Broadcast tests run on every own server (the transports suite's ``serve_router``,
asyncio and trio) and, where no server is involved, on both anyio backends."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from tests.redis_server import RedisServer, running_redis
from tests.transports import conftest as transports
from tests.transports.conftest import connect, serve_router
from websockets_routes import Router
from websockets_routes.broadcast import Broadcast

__all__ = ["connect", "serve_router"]

BACKENDS = ("asyncio", "trio")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests with a server: once per server (each on its backend); the others that
    take ``anyio_backend``: on the module's ``BACKENDS`` (asyncio and trio)."""
    if "serve_router" in metafunc.fixturenames:
        transports.pytest_generate_tests(metafunc)
    elif "anyio_backend" in metafunc.fixturenames:
        metafunc.parametrize("anyio_backend", getattr(metafunc.module, "BACKENDS", BACKENDS))


# coredis (6.9) leaves the memory streams of a connection that failed to connect
# unclosed: a ResourceWarning when they are collected, and nothing else. Collected
# here, after each test, so the warning is not charged to a later test.
CONNECT_FAILURE_LEAK = "ignore:Unclosed <MemoryObject:ResourceWarning"


@pytest.fixture(autouse=True)
def collect_failed_redis_connections() -> Iterator[None]:
    yield
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unclosed <MemoryObject", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    """A real redis-server for the module; a test that stops it starts it again."""
    yield from running_redis()


def room_router(broadcast: Broadcast) -> Router:
    """``/rooms/{room}``: join ``room:<room>``, say "joined", publish what comes in."""
    router = Router()

    @router.route("/rooms/{room}")
    async def room(ws: Any, path: Any) -> None:
        channel = f"room:{path.params['room']}"
        async with broadcast.join(channel, ws):
            await ws.send("joined")
            async for message in ws:
                await broadcast.publish(channel, message)

    return router
