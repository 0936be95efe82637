"""router.asgi under hypercorn's trio worker: the app uses anyio only, so it runs there.

websockets' clients are asyncio or threads; under trio the test uses its sync client
in a worker thread.
"""

from __future__ import annotations

import anyio
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from tests.transports.asgi.servers import http_request, run_hypercorn
from tests.transports.asgi.websockets_routes_test_app import closing_router, router

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def _echo(port: int) -> list[str | bytes]:
    with connect(f"ws://127.0.0.1:{port}/echo/trio?x=1", open_timeout=10) as ws:
        first = ws.recv(timeout=10)
        ws.send("hi")
        return [first, ws.recv(timeout=10)]


def _status(port: int, path: str) -> tuple[int, bytes]:
    try:
        with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10):
            pass
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.body or b""
    raise AssertionError(f"{path} was accepted")


def _close_code(port: int, path: str, send: str | None = None) -> int | None:
    with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10) as ws:
        if send is not None:
            ws.send(send)
        try:
            ws.recv(timeout=10)
        except ConnectionClosedError as exc:
            return exc.rcvd.code if exc.rcvd else None
    raise AssertionError(f"{path} was not closed")


async def test_hypercorn_trio_worker() -> None:
    async with run_hypercorn(router.asgi, "trio") as port:
        assert await anyio.to_thread.run_sync(_echo, port) == ["hello trio query=x=1", "hi"]
        status, body = await anyio.to_thread.run_sync(_status, port, "/rooms/closed")
        assert (status, body) == (403, b"this room is closed\n")
        assert await anyio.to_thread.run_sync(_close_code, port, "/boom", "go") == 1011
        status, headers, body = await http_request(port, "HEAD", "/healthz")
        assert (status, headers["content-length"], body) == (200, "3", b"")


async def test_hypercorn_trio_close_unmatched() -> None:
    async with run_hypercorn(closing_router.asgi, "trio") as port:
        assert await anyio.to_thread.run_sync(_close_code, port, "/nowhere") == 4040
