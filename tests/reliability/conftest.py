"""Every reliability test runs on each of our servers: the asyncio transport, the
anyio transport on asyncio and on trio, and ``custom``: examples/custom_transport.py,
the server written on the public core API alone (on asyncio).

``transport`` is the one parameter; ``anyio_backend`` follows it, so the server runs
in the test's own event loop (as in tests/transports), and ``serve_router`` starts
the server of that transport on 127.0.0.1, port 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

TRANSPORTS = ["asyncio", "anyio-asyncio", "anyio-trio", "custom"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(transport: str) -> str:
    return "trio" if transport == "anyio-trio" else "asyncio"


def server_factory(transport: str) -> Callable[..., Any]:
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
def serve_router(transport: str) -> Callable[..., Any]:
    """``async with serve_router(router, **options) as server``."""
    return server_factory(transport)


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog at DEBUG for every logger of the package."""
    caplog.set_level(logging.DEBUG, logger="websockets_routes")
    return caplog


@pytest.fixture
def xfail_on(request: pytest.FixtureRequest, transport: str) -> Callable[..., None]:
    """``xfail_on({"anyio-trio", ...}, "finding Fn: ...")``: a strict xfail for the
    transports where a property is known not to hold (docs/reliability.md)."""

    def mark(transports: set[str] | frozenset[str], reason: str) -> None:
        if transport in transports:
            request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))

    return mark


ANYIO = frozenset({"anyio-asyncio", "anyio-trio"})
