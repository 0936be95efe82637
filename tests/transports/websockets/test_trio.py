"""The router on websockets' trio server (websockets.trio, new in websockets 15):
the same handler and process_request hook as on the asyncio server."""

from __future__ import annotations

import contextlib
import functools
import http
import logging

import pytest
import trio
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.trio.client import connect
from websockets.trio.server import serve

from tests.transports.websockets.servers import HOST
from websockets_routes import Close, Router

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "trio"


@contextlib.asynccontextmanager
async def trio_server(handler, **kwargs):
    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve, handler, 0, host=HOST, **kwargs))
        try:
            port = server.listeners[0].socket.getsockname()[1]
            yield f"ws://{HOST}:{port}"
        finally:
            await server.aclose()


def make_router():
    router = Router()
    calls = []

    @router.route("/room/{name}", subprotocols=["chat"])
    class Room:
        async def process_request(self, path, headers):
            if path.params["name"] == "secret":
                return (http.HTTPStatus.FORBIDDEN, [], b"not this room\n")
            if path.params["name"] == "closed":
                return Close(4004, "room closed")
            path.context["greeting"] = "welcome"
            return None

        async def handle(self, ws, path):
            calls.append(str(path))
            message = await ws.recv()
            await ws.send(f"{path.context.get('greeting')} to {path.params['name']}: {message}")

    @router.route("/fail")
    async def fail(ws, path):
        raise RuntimeError("view bug")

    return router, calls


async def test_trio_server_with_process_request():
    router, calls = make_router()
    async with trio_server(router.handle, process_request=router.process_request) as url:
        async with connect(f"{url}/room/a%2Fb", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hi")
            assert await ws.recv() == "welcome to a/b: hi"
        for target, status in [("/room/secret", 403), ("/nowhere", 404)]:
            with pytest.raises(InvalidStatus) as ctx:
                async with connect(f"{url}{target}"):
                    pass
            assert ctx.value.response.status_code == status
        async with connect(f"{url}/room/closed") as ws:
            with pytest.raises(ConnectionClosedError) as ctx:
                await ws.recv()
            assert (ctx.value.rcvd.code, ctx.value.rcvd.reason) == (4004, "room closed")
    assert calls == ["/room/a%2Fb"]


async def test_trio_server_router_as_handler(caplog):
    router, calls = make_router()
    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        async with trio_server(router) as url:
            async with connect(f"{url}/room/x") as ws:
                await ws.send("yo")
                assert await ws.recv() == "welcome to x: yo"
            for target, code in [("/nowhere", 4040), ("/room/secret", 4030), ("/fail", 1011)]:
                async with connect(f"{url}{target}") as ws:
                    with pytest.raises(ConnectionClosedError) as ctx:
                        await ws.recv()
                    assert ctx.value.rcvd.code == code
    assert calls == ["/room/x"]
    assert [r.getMessage().split(" failed")[0] for r in caplog.records] == [
        "handler of route '/fail'"
    ]


async def test_a_view_of_ws_alone_gets_the_routed_path_as_ws_path():
    router = Router()

    @router.route("/room/{name}", name="room")
    async def room(ws):
        await ws.send(f"{type(ws.path).__name__} {ws.path} {ws.path.params}")

    async with trio_server(router.handle, process_request=router.process_request) as url:
        async with connect(f"{url}/room/a%20b") as ws:
            assert await ws.recv() == "RoutedPath /room/a%20b {'name': 'a b'}"
