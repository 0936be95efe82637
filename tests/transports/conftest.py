"""Fixtures of the transport behaviour suite.

The server under test comes from ONE fixture, ``serve_router``; the client side from
``connect`` (websockets' client for the running anyio backend) and ``RawClient``
(anyio sockets). To run the suite over another transport or backend, parametrize
these fixtures (and ``anyio_backend``) here; the tests themselves use only anyio.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def serve_router() -> Callable[..., Any]:
    """``async with serve_router(router, **options) as server``: a server on
    127.0.0.1, port 0, with ``server.port``, ``server.close()``,
    ``await server.wait_closed()``."""
    from websockets_routes.transports.asyncio import serve

    def factory(router: Any, **options: Any) -> Any:
        return serve(router, "127.0.0.1", 0, **options)

    return factory


@pytest.fixture
def connect(anyio_backend_name: str) -> Callable[..., Any]:
    """``async with connect(server, "/path", **kw) as ws``: websockets 17.4's client
    (asyncio or trio flavour, matching the backend) on ``ws://127.0.0.1:<port>/path``
    (``wss://`` when ``ssl=`` is given)."""
    if anyio_backend_name == "trio":
        from websockets.trio.client import connect as ws_connect
    else:
        from websockets.asyncio.client import connect as ws_connect

    def factory(server: Any, path: str = "/", **kwargs: Any) -> Any:
        kwargs.setdefault("proxy", None)
        kwargs.setdefault("open_timeout", 5)
        kwargs.setdefault("close_timeout", 5)
        scheme = "wss" if kwargs.get("ssl") is not None else "ws"
        return ws_connect(f"{scheme}://127.0.0.1:{server.port}{path}", **kwargs)

    return factory
