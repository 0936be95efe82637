"""websockets-routes 0.2's tests and README examples, as 0.2 wrote them, on the legacy
``websockets`` API of websockets 17.4 (``websockets.legacy``: server, client and
``InvalidStatusCode``, which 0.2 reached as ``websockets.serve``/``websockets.connect``).

The router code is 0.2's, unchanged; only the names of the websockets entry points
follow websockets' own move of the legacy API into ``websockets.legacy``.
"""

from __future__ import annotations

import asyncio
import http
import warnings

import pytest
import websockets

import websockets_routes

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"websockets\.legacy is deprecated", category=DeprecationWarning
    )
    from websockets.legacy.client import connect
    from websockets.legacy.exceptions import InvalidStatusCode
    from websockets.legacy.server import serve

from tests.transports.websockets.servers import HOST, url_of

pytestmark = [
    pytest.mark.anyio,
    # 0.2's tests read ConnectionClosedError.code, deprecated by websockets 13.1.
    pytest.mark.filterwarnings(
        r"ignore:ConnectionClosed\.code is deprecated:DeprecationWarning:websockets"
    ),
]


# 0.2's four tests (tests/test_routing.py), on the legacy server and client.


async def test_route(start_legacy_server):
    router = websockets_routes.Router()

    @router.route("/a")
    async def route_a(ws, path):
        await ws.send("route a")

    @router.route("/b")
    async def route_b(ws, path):
        await ws.send("route b")

    async with start_legacy_server(router.handle) as url:
        async with connect(f"{url}/a") as ws:
            received = await ws.recv()
            assert received == "route a"

        async with connect(f"{url}/b") as ws:
            received = await ws.recv()
            assert received == "route b"


async def test_route_not_found(start_legacy_server):
    router = websockets_routes.Router()

    @router.route("/")
    async def route_a(ws, path):
        pass

    async with start_legacy_server(router.handle) as url:
        async with connect(f"{url}/not-found") as ws:
            with pytest.raises(websockets.ConnectionClosedError) as ctx:
                await ws.recv()
            assert ctx.value.code == 4040


async def test_handshake_not_found(start_legacy_server):
    router = websockets_routes.Router()

    @router.route("/")
    async def route_a(ws, path):
        pass

    async with start_legacy_server(
        router.handle,
        process_request=router.process_request,
    ) as url:
        with pytest.raises(InvalidStatusCode) as ctx:
            async with connect(f"{url}/not-found"):
                pass
        assert ctx.value.status_code == 404


async def test_handshake_not_found_through_protocol(start_legacy_server):
    router = websockets_routes.Router()

    @router.route("/")
    async def route_a(ws, path):
        pass

    async with start_legacy_server(router, create_protocol=websockets_routes.Protocol) as url:
        with pytest.raises(InvalidStatusCode) as ctx:
            async with connect(f"{url}/not-found"):
                pass
        assert ctx.value.status_code == 404


@pytest.mark.parametrize("install", ["process_request", "create_protocol"])
async def test_view_process_request(start_legacy_server, install):
    router = websockets_routes.Router()

    @router.route("/test/{id}")
    class Endpoint:
        async def process_request(self, path, headers):
            if path.params["id"] != "error-out":
                return None
            return (406, [], b"rejected by view\n")

        async def handle(self, ws, path):
            await ws.send(path.params["id"])

    if install == "process_request":
        server = start_legacy_server(router.handle, process_request=router.process_request)
    else:
        server = start_legacy_server(router, create_protocol=websockets_routes.Protocol)
    async with server as url:
        with pytest.raises(InvalidStatusCode) as ctx:
            async with connect(f"{url}/test/error-out"):
                pass
        assert ctx.value.status_code == 406

        async with connect(f"{url}/test/this-works") as ws:
            received = await ws.recv()
            assert received == "this-works"


# 0.2's README examples.


def test_readme_usage_run_until_complete():
    """ "Decorate your handlers by path, and serve the router", with the loop calls
    the README shows (a fresh loop instead of the deprecated implicit one)."""
    router = websockets_routes.Router()

    @router.route("/thing/")
    async def thing_list(ws, path):
        await ws.send("the things")

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        start_server = serve(router.handle, HOST, 0)
        server = loop.run_until_complete(start_server)

        async def client():
            async with connect(f"{url_of(server)}/thing/") as ws:
                listed = await ws.recv()
            # "By default, connections are closed immediately with 4040 if the URL
            # does not match any of the registered routes."
            async with connect(f"{url_of(server)}/other/") as ws:
                with pytest.raises(websockets.ConnectionClosedError) as ctx:
                    await ws.recv()
            return listed, ctx.value.code

        assert loop.run_until_complete(client()) == ("the things", 4040)
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_readme_router_serve_run_until_complete():
    """ "Block connections during handshake": start_server = router.serve(...)."""
    router = websockets_routes.Router()

    @router.route("/thing/")
    async def thing_list(ws, path):
        await ws.send("the things")

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        start_server = router.serve(HOST, 0)
        server = loop.run_until_complete(start_server)

        async def client():
            async with connect(f"{url_of(server)}/thing/") as ws:
                listed = await ws.recv()
            with pytest.raises(InvalidStatusCode) as ctx:
                async with connect(f"{url_of(server)}/other/"):
                    pass
            return listed, ctx.value.status_code

        assert loop.run_until_complete(client()) == ("the things", 404)
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def test_readme_protocol_subclass(start_legacy_server):
    """ "you can subclass that if you need further customisation"."""
    router = websockets_routes.Router()
    seen = []

    @router.route("/thing/{id}")
    async def thing_detail(ws, path):
        await ws.send(path.params["id"])

    class MyProtocol(websockets_routes.Protocol):
        async def process_request(self, path, headers):
            seen.append(path)
            return await super().process_request(path, headers)

    async with start_legacy_server(router, create_protocol=MyProtocol) as url:
        async with connect(f"{url}/thing/7") as ws:
            assert await ws.recv() == "7"
        with pytest.raises(InvalidStatusCode) as ctx:
            async with connect(f"{url}/nothing/7"):
                pass
        assert ctx.value.status_code == 404
    # 0.2's Protocol handed hooks a RoutedPath: params of the match, None if none.
    assert [(str(p), p.params) for p in seen] == [("/thing/7", {"id": "7"}), ("/nothing/7", None)]


async def test_readme_route_parameters(start_legacy_server):
    router = websockets_routes.Router()

    @router.route("/thing/{id}")
    async def thing_detail(ws, path):
        # Asumming this is accessed with "/thing/123".
        await ws.send(path)  # This sends a text frame "/thing/123".
        await ws.send(path.params["id"])  # Text frame "123".

    async with start_legacy_server(router.handle) as url:
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


@pytest.mark.parametrize("install", ["create_protocol", "process_request", "router.serve"])
async def test_readme_per_view_hooks(start_legacy_server, install):
    router = readme_hook_router()
    if install == "create_protocol":
        server = start_legacy_server(router, create_protocol=websockets_routes.Protocol)
    elif install == "process_request":
        server = start_legacy_server(router.handle, process_request=router.process_request)
    else:
        server = None
    if server is None:
        async with router.serve(HOST, 0) as started:
            await _check_readme_hooks(url_of(started))
    else:
        async with server as url:
            await _check_readme_hooks(url)


async def _check_readme_hooks(url):
    async with connect(f"{url}/thing/1") as ws:
        assert await ws.recv() == "the first thing"
    with pytest.raises(InvalidStatusCode) as ctx:
        async with connect(f"{url}/thing/2"):
            pass
    assert ctx.value.status_code == 404
