"""websockets-routes 0.2's tests and README examples on the new ``websockets`` API.

``websockets.serve`` and ``websockets.connect`` are the new asyncio API since
websockets 14, so 0.2's code, word for word, lands here; only websockets' own
exception for a rejected handshake changed (``InvalidStatus``, status in
``.response.status_code``) and the close code is read from ``.rcvd.code``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus

import websockets_routes
from tests.transports.websockets.servers import HOST, url_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def start_server_02():
    """0.2's own fixture, on websockets.serve as websockets 17 defines it."""

    @contextlib.asynccontextmanager
    async def manager(handler, **kwargs):
        server = await websockets.serve(handler, HOST, port=None, **kwargs)
        yield url_of(server)
        server.close()
        await server.wait_closed()

    return manager


# 0.2's four tests (tests/test_routing.py).


async def test_route(start_server_02):
    router = websockets_routes.Router()

    @router.route("/a")
    async def route_a(ws, path):
        await ws.send("route a")

    @router.route("/b")
    async def route_b(ws, path):
        await ws.send("route b")

    async with start_server_02(router.handle) as url:
        async with websockets.connect(f"{url}/a") as ws:
            received = await ws.recv()
            assert received == "route a"

        async with websockets.connect(f"{url}/b") as ws:
            received = await ws.recv()
            assert received == "route b"


async def test_router_itself_is_the_handler(start_server):
    """0.2's Router.__call__; on websockets 17, 0.2 itself closed this with 1011."""
    router = websockets_routes.Router()

    @router.route("/a")
    async def route_a(ws, path):
        await ws.send(f"route a at {path}")

    async with start_server(router) as url:
        async with connect(f"{url}/a?x=1") as ws:
            assert await ws.recv() == "route a at /a?x=1"


async def test_route_not_found(start_server_02):
    router = websockets_routes.Router()

    @router.route("/")
    async def route_a(ws, path):
        pass

    async with start_server_02(router.handle) as url:
        async with websockets.connect(f"{url}/not-found") as ws:
            with pytest.raises(websockets.ConnectionClosedError) as ctx:
                await ws.recv()
            assert ctx.value.rcvd.code == 4040


async def test_handshake_not_found(start_server_02):
    router = websockets_routes.Router()

    @router.route("/")
    async def route_a(ws, path):
        pass

    async with start_server_02(
        router.handle,
        process_request=router.process_request,
    ) as url:
        with pytest.raises(InvalidStatus) as ctx:
            async with websockets.connect(f"{url}/not-found"):
                pass
        assert ctx.value.response.status_code == 404


async def test_view_process_request(start_server_02):
    router = websockets_routes.Router()

    @router.route("/test/{id}")
    class Endpoint:
        async def process_request(self, path, headers):
            if path.params["id"] != "error-out":
                return None
            return (406, [], b"rejected by view\n")

        async def handle(self, ws, path):
            await ws.send(path.params["id"])

    async with start_server_02(
        router.handle,
        process_request=router.process_request,
    ) as url:
        with pytest.raises(InvalidStatus) as ctx:
            async with websockets.connect(f"{url}/test/error-out"):
                pass
        assert ctx.value.response.status_code == 406
        assert ctx.value.response.body == b"rejected by view\n"

        async with websockets.connect(f"{url}/test/this-works") as ws:
            received = await ws.recv()
            assert received == "this-works"


# 0.2's README examples.


def test_readme_usage_run_until_complete():
    router = websockets_routes.Router()

    @router.route("/thing/")
    async def thing_list(ws, path):
        await ws.send("the things")

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:

        async def start():
            # websockets 17's Server needs a running loop when created.
            return await serve(router.handle, HOST, 0)

        server = loop.run_until_complete(start())

        async def client():
            async with connect(f"{url_of(server)}/thing/") as ws:
                listed = await ws.recv()
            async with connect(f"{url_of(server)}/other/") as ws:
                with pytest.raises(websockets.ConnectionClosedError) as ctx:
                    await ws.recv()
            return listed, ctx.value.rcvd.code

        assert loop.run_until_complete(client()) == ("the things", 4040)
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def test_readme_block_during_handshake(start_server):
    """Both ways the README gave: the process_request hook, and router.serve()."""
    router = websockets_routes.Router()

    @router.route("/thing/")
    async def thing_list(ws, path):
        await ws.send("the things")

    async with start_server(router.handle, process_request=router.process_request) as url:
        await _check_blocked(url)
    async with router.serve(HOST, 0) as server:
        await _check_blocked(url_of(server))


async def _check_blocked(url):
    async with connect(f"{url}/thing/") as ws:
        assert await ws.recv() == "the things"
    with pytest.raises(InvalidStatus) as ctx:
        async with connect(f"{url}/other/"):
            pass
    assert ctx.value.response.status_code == 404


async def test_readme_custom_hook_around_router(start_server):
    """The new-API counterpart of subclassing Protocol: a process_request of your
    own that answers some requests and leaves the rest to the router."""
    router = websockets_routes.Router()

    @router.route("/thing/{id}")
    async def thing_detail(ws, path):
        await ws.send(path.params["id"])

    async def my_process_request(connection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return await router.process_request(connection, request)

    async with start_server(router, process_request=my_process_request) as url:
        async with connect(f"{url}/thing/7") as ws:
            assert await ws.recv() == "7"
        for target, status in [("/healthz", 200), ("/nothing/7", 404)]:
            with pytest.raises(InvalidStatus) as ctx:
                async with connect(f"{url}{target}"):
                    pass
            assert ctx.value.response.status_code == status


async def test_readme_route_parameters(start_server):
    router = websockets_routes.Router()

    @router.route("/thing/{id}")
    async def thing_detail(ws, path):
        # Asumming this is accessed with "/thing/123".
        await ws.send(path)  # This sends a text frame "/thing/123".
        await ws.send(path.params["id"])  # Text frame "123".

    async with start_server(router.handle) as url:
        async with connect(f"{url}/thing/123") as ws:
            assert await ws.recv() == "/thing/123"
            assert await ws.recv() == "123"


THINGS = {"1": "the first thing"}


def get_thing_or_none(thing_id):
    return THINGS.get(thing_id)


def readme_hook_router():
    router = websockets_routes.Router()

    @router.route("/thing/{id}")
    class ThingDetail:
        async def process_request(self, path, headers):
            thing_id = path.params["id"]
            thing = get_thing_or_none(thing_id)
            if thing is not None:
                # Pass additional context to handle().
                path.context["thing"] = thing
                return None
            message = f"thing {thing_id!r} not found\n"
            return (http.HTTPStatus.NOT_FOUND, [], message.encode("utf-8"))

        async def handle(self, ws, path):
            """Now this is only called if thing is found."""
            thing = path.context["thing"]  # Retrieve the context to use.
            await ws.send(thing)

    return router


@pytest.mark.parametrize("install", ["process_request", "router.serve"])
async def test_readme_per_view_hooks(start_server, install):
    router = readme_hook_router()
    if install == "process_request":
        server = start_server(router.handle, process_request=router.process_request)
        async with server as url:
            await _check_readme_hooks(url)
    else:
        async with router.serve(HOST, 0) as started:
            await _check_readme_hooks(url_of(started))


async def test_readme_per_view_hooks_without_process_request(start_server):
    """Only the handler installed: the hook runs after the handshake, so handle()
    still gets its context, and its 404 becomes close code 4040."""
    router = readme_hook_router()
    async with start_server(router.handle) as url:
        async with connect(f"{url}/thing/1") as ws:
            assert await ws.recv() == "the first thing"
        async with connect(f"{url}/thing/2") as ws:
            with pytest.raises(websockets.ConnectionClosedError) as ctx:
                await ws.recv()
        assert ctx.value.rcvd.code == 4040
        assert ctx.value.rcvd.reason == "thing '2' not found"


async def _check_readme_hooks(url):
    async with connect(f"{url}/thing/1") as ws:
        assert await ws.recv() == "the first thing"
    with pytest.raises(InvalidStatus) as ctx:
        async with connect(f"{url}/thing/2"):
            pass
    assert ctx.value.response.status_code == 404
    assert ctx.value.response.body == b"thing '2' not found\n"
