"""websockets' own servers, new and legacy, for the websockets transport's tests and the
websockets-routes 0.2 compatibility tests (tests/compat).

Each fixture is a factory, as in 0.2's own tests: ``async with start_server(handler,
**kwargs) as url:`` serves on 127.0.0.1 with a free port and yields ``ws://host:port``;
leaving the block closes the server and waits for every connection handler.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.server import serve

with warnings.catch_warnings():
    # websockets.legacy warns when imported; these tests run 0.2-era code on it.
    warnings.filterwarnings(
        "ignore", message=r"websockets\.legacy is deprecated", category=DeprecationWarning
    )
    from websockets.legacy.server import serve as legacy_serve

HOST = "127.0.0.1"  # not localhost: no IPv6 surprises

StartServer = Callable[..., contextlib.AbstractAsyncContextManager[str]]


def url_of(server: Any) -> str:
    host, port = list(server.sockets)[0].getsockname()[:2]
    return f"ws://{host}:{port}"


@pytest.fixture
def start_server() -> StartServer:
    """websockets' new asyncio server (websockets.asyncio.server.serve)."""

    @contextlib.asynccontextmanager
    async def manager(handler: Any, **kwargs: Any) -> AsyncIterator[str]:
        async with serve(handler, HOST, 0, **kwargs) as server:
            yield url_of(server)

    return manager


@pytest.fixture
def start_legacy_server() -> StartServer:
    """websockets' legacy server (websockets.legacy.server.serve), as 0.2 used it."""

    @contextlib.asynccontextmanager
    async def manager(handler: Any, **kwargs: Any) -> AsyncIterator[str]:
        server = await legacy_serve(handler, HOST, None, **kwargs)
        try:
            yield url_of(server)
        finally:
            server.close()
            await server.wait_closed()

    return manager
