"""Fixtures of the transport behaviour suite.

The server under test comes from ONE fixture, ``serve_router``; the client side from
``connect`` (websockets' client for the running anyio backend) and ``RawClient``
(anyio sockets). Every test that uses ``serve_router`` runs once per server:

- ``asyncio``: ``transports.asyncio`` (the test runs on asyncio),
- ``anyio-asyncio``: ``transports.anyio`` with anyio on asyncio,
- ``anyio-trio``: ``transports.anyio`` with anyio on trio (the test itself runs on
  trio: the websockets trio client and anyio's RawClient, in the same event loop),
- ``custom``: ``examples/custom_transport.py``, the server written on the public core
  API alone (docs/custom-transport.md), on asyncio.

One suite, not three copies: ``pytest_generate_tests`` below parametrizes the pair
(transport, ``anyio_backend``) for those tests; tests that do not take
``serve_router`` (those of one transport, in asyncio/, anyio/, websockets/ and asgi/)
keep their own backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# (id, transport, anyio backend the test and the server run on)
SERVERS = [
    ("asyncio", "asyncio", "asyncio"),
    ("anyio-asyncio", "anyio", "asyncio"),
    ("anyio-trio", "anyio", "trio"),
    ("custom", "custom", "asyncio"),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "serve_router" in metafunc.fixturenames:
        metafunc.parametrize(
            ("transport", "anyio_backend"),
            [(transport, backend) for _, transport, backend in SERVERS],
            ids=[name for name, _, _ in SERVERS],
        )


@pytest.fixture
def serve_router(transport: str) -> Callable[..., Any]:
    """``async with serve_router(router, **options) as server``: a server on
    127.0.0.1, port 0, with ``server.port``, ``server.close()``,
    ``await server.wait_closed()``."""
    if transport == "asyncio":
        from websockets_routes.transports.asyncio import serve
    elif transport == "custom":
        from examples.custom_transport import serve
    else:
        from websockets_routes.transports.anyio import serve

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
