"""The websockets transport beyond 0.2's own tests: how each core decision is carried
out on websockets 17.4 (new asyncio API and legacy API), router.serve(), Protocol
subclasses, subprotocols, failing handlers, and importing without websockets."""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import subprocess
import sys
import textwrap
import warnings

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

import websockets_routes
from tests.transports.websockets.servers import HOST
from websockets_routes import Close, Router

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"websockets\.legacy is deprecated", category=DeprecationWarning
    )
    from websockets.legacy.client import connect as legacy_connect
    from websockets.legacy.exceptions import InvalidStatusCode

pytestmark = pytest.mark.anyio

# The four ways a router is installed in a websockets server that routes during the
# handshake: new API hook, router.serve() (which installs its own hook and handler),
# legacy API hook, legacy Protocol.
INSTALLS = ["new", "serve", "legacy-hook", "legacy-protocol"]


@contextlib.asynccontextmanager
async def router_served(router, **kwargs):
    async with router.serve(HOST, 0, **kwargs) as server:
        yield f"ws://{HOST}:{server.port}"


@pytest.fixture
def serve_routed(start_server, start_legacy_server):
    def start(router, install, **kwargs):
        if install == "serve":
            return router_served(router, **kwargs)
        if install == "new":
            return start_server(router.handle, process_request=router.process_request, **kwargs)
        if install == "legacy-hook":
            return start_legacy_server(
                router.handle, process_request=router.process_request, **kwargs
            )
        return start_legacy_server(router, create_protocol=websockets_routes.Protocol, **kwargs)

    return start


async def rejected_status(url, **kwargs):
    """The HTTP status of a handshake the server must refuse."""
    with pytest.raises(InvalidStatus) as ctx:
        async with connect(url, **kwargs):
            pass
    return ctx.value.response.status_code, bytes(ctx.value.response.body)


async def close_of(url, **kwargs):
    """(code, reason) of a connection the server accepts, then closes at once."""
    async with connect(url, **kwargs) as ws:
        with pytest.raises(ConnectionClosedError) as ctx:
            await ws.recv()
    return ctx.value.rcvd.code, ctx.value.rcvd.reason


def counting_router(**options):
    """A router whose views record every call, and whose hook counts its runs."""
    router = Router(**options)
    calls = {"hook": 0, "views": []}

    @router.route("/item/{id}", name="item")
    class Item:
        async def process_request(self, path, headers):
            calls["hook"] += 1
            kind = path.params["id"]
            if kind == "enum":
                return (http.HTTPStatus.FORBIDDEN, [("X-Why", "enum")], b"forbidden\n")
            if kind == "int":
                return (418, {"X-Why": "int"}, b"teapot\n")
            if kind == "close":
                return Close(4321, "closed by the hook")
            if kind == "boom":
                raise RuntimeError("hook failed")
            path.context["user"] = headers.get("X-User", "anonymous")
            path.context["hook_runs"] = calls["hook"]
            return None

        async def handle(self, ws, path):
            calls["views"].append(str(path))
            await ws.send(f"{path.params['id']} {path.context}")

    return router, calls


@pytest.mark.parametrize("install", INSTALLS)
async def test_hook_context_reaches_handle_and_hook_runs_once(serve_routed, install):
    router, calls = counting_router()
    async with serve_routed(router, install) as url:
        async with connect(f"{url}/item/a%20b", additional_headers={"X-User": "ann"}) as ws:
            assert await ws.recv() == "a b {'user': 'ann', 'hook_runs': 1}"
    assert calls == {"hook": 1, "views": ["/item/a%20b"]}


@pytest.mark.parametrize("install", INSTALLS)
async def test_hook_http_answers(serve_routed, install):
    router, calls = counting_router()
    async with serve_routed(router, install) as url:
        with pytest.raises(InvalidStatus) as ctx:
            async with connect(f"{url}/item/enum"):
                pass
        response = ctx.value.response
        assert (response.status_code, response.headers["X-Why"], response.body) == (
            403,
            "enum",
            b"forbidden\n",
        )
        assert await rejected_status(f"{url}/item/int") == (418, b"teapot\n")
        status, body = await rejected_status(f"{url}/item/boom")
        assert status == 500
    assert calls["views"] == []


@pytest.mark.parametrize("install", INSTALLS)
async def test_hook_close_completes_handshake_then_closes(serve_routed, install):
    router, calls = counting_router()
    async with serve_routed(router, install) as url:
        assert await close_of(f"{url}/item/close") == (4321, "closed by the hook")
    assert calls == {"hook": 1, "views": []}


@pytest.mark.parametrize("install", INSTALLS)
async def test_unknown_path_is_404_before_the_handshake(serve_routed, install):
    router, calls = counting_router()
    async with serve_routed(router, install) as url:
        status, body = await rejected_status(f"{url}/nothing/here")
    assert (status, body) == (404, b"404 Not Found: no route for /nothing/here\n")
    assert calls == {"hook": 0, "views": []}


@pytest.mark.parametrize("install", INSTALLS)
async def test_close_unmatched_router_accepts_then_closes_4040(serve_routed, install):
    router, calls = counting_router(close_unmatched=True)
    async with serve_routed(router, install) as url:
        assert await close_of(f"{url}/nothing/here") == (4040, "no route for this path")
    assert calls == {"hook": 0, "views": []}


@pytest.mark.parametrize("server", ["new", "legacy"])
async def test_unmatched_path_never_calls_a_handler(
    start_server, start_legacy_server, server, caplog
):
    """0.2 closed with 4040, then went on to look up a handler anyway and failed."""
    router, calls = counting_router()

    @router.route("/{anything}")
    async def catch_one_segment(ws, path):
        calls["views"].append(str(path))

    start = start_server if server == "new" else start_legacy_server
    with caplog.at_level(logging.DEBUG):
        async with start(router.handle) as url:
            assert (await close_of(f"{url}/a/b/c"))[0] == 4040
            assert (await close_of(f"{url}/"))[0] == 4040
    assert calls == {"hook": 0, "views": []}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_handler_only_carries_out_hook_answers_as_close_codes(start_server):
    router, calls = counting_router()
    async with start_server(router) as url:
        async with connect(f"{url}/item/ok", additional_headers={"X-User": "bo"}) as ws:
            assert await ws.recv() == "ok {'user': 'bo', 'hook_runs': 1}"
        assert await close_of(f"{url}/item/enum") == (4030, "forbidden")
        assert await close_of(f"{url}/item/int") == (4180, "teapot")
        assert await close_of(f"{url}/item/close") == (4321, "closed by the hook")
    assert calls["views"] == ["/item/ok"]


async def test_route_origins_with_and_without_the_hook(start_server):
    router = Router()

    @router.route("/feed", origins=["https://ok.example"])
    async def feed(ws, path):
        await ws.send("fed")

    async with start_server(router.handle, process_request=router.process_request) as url:
        assert (await rejected_status(f"{url}/feed", origin="https://evil.example"))[0] == 403
        async with connect(f"{url}/feed", origin="https://ok.example") as ws:
            assert await ws.recv() == "fed"
    async with start_server(router.handle) as url:
        assert (await close_of(f"{url}/feed", origin="https://evil.example"))[0] == 4030
    async with router_served(router) as url:
        assert (await rejected_status(f"{url}/feed", origin="https://evil.example"))[0] == 403
        assert (await rejected_status(f"{url}/feed"))[0] == 403  # no Origin, None not allowed
        async with connect(f"{url}/feed", origin="https://ok.example") as ws:
            assert await ws.recv() == "fed"


async def raw_handshake(url, lines):
    """Status line and body of the answer to a hand-written handshake request."""
    host, port = url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head, _, body = (await reader.read()).partition(b"\r\n\r\n")
        return head.split(b"\r\n"), body
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("install", ["new", "serve"])
async def test_malformed_handshakes_get_the_engine_answers(serve_routed, install):
    router, calls = counting_router()
    request = [
        "GET /item/1 HTTP/1.1",
        "Host: x",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    async with serve_routed(router, install) as url:
        head, body = await raw_handshake(url, [line for line in request if "Upgrade" not in line])
        assert head[0] == b"HTTP/1.1 426 Upgrade Required" and b"Upgrade: websocket" in head
        assert body.startswith(b"426 Upgrade Required: this is a WebSocket endpoint")
        head, body = await raw_handshake(url, [*request[:5], "Sec-WebSocket-Version: 8"])
        assert head[0] == b"HTTP/1.1 426 Upgrade Required"
        assert b"Sec-WebSocket-Version: 13" in head
        head, body = await raw_handshake(
            url, [*request[:4], "Sec-WebSocket-Key: short", request[5]]
        )
        assert head[0] == b"HTTP/1.1 400 Bad Request"
        assert body == b"400 Bad Request: Sec-WebSocket-Key must be base64 of 16 bytes\n"
        head, body = await raw_handshake(url, ["GET /nowhere HTTP/1.1", *request[1:]])
        assert head[0] == b"HTTP/1.1 404 Not Found"
    # Rejected before the view: neither its hook nor its handler ran.
    assert calls == {"hook": 0, "views": []}


@pytest.mark.parametrize("install", INSTALLS)
async def test_repeated_header_fields_reach_the_view_hook_in_order(serve_routed, install):
    router = Router()

    @router.route("/tags")
    class Tags:
        async def process_request(self, path, headers):
            path.context["tags"] = (headers.get_all("X-Tag"), headers["x-tag"])

        async def handle(self, ws, path):
            await ws.send(repr(path.context["tags"]))

    async with serve_routed(router, install) as url:
        headers = [("X-Tag", "a"), ("x-tag", "b c")]
        async with connect(f"{url}/tags", additional_headers=headers) as ws:
            assert await ws.recv() == repr((["a", "b c"], "a, b c"))


@pytest.mark.parametrize("install", ["new", "serve", "legacy-protocol"])
async def test_route_subprotocols_take_effect(serve_routed, install):
    router = Router()

    @router.route("/chat", subprotocols=["chat.v2", "chat.v1"])
    async def chat(ws, path):
        await ws.send(f"speaking {ws.subprotocol}")

    @router.route("/plain")
    async def plain(ws, path):
        await ws.send(f"speaking {ws.subprotocol}")

    # A server-wide list, which the route's own list overrides.
    async with serve_routed(router, install, subprotocols=["server.v1"]) as url:
        async with connect(f"{url}/chat", subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"  # the server's preference
            assert await ws.recv() == "speaking chat.v2"
        async with connect(f"{url}/chat", subprotocols=["server.v1"]) as ws:
            assert ws.subprotocol is None  # none of the route's: accepted without one
            assert await ws.recv() == "speaking None"
        async with connect(f"{url}/plain", subprotocols=["server.v1"]) as ws:
            assert await ws.recv() == "speaking server.v1"


class RecordingProtocol(websockets_routes.Protocol):
    """A 0.2-style subclass: its own check first, then the router's via super()."""

    async def process_request(self, path, headers):
        if headers.get("Authorization") != "Bearer good":
            return (http.HTTPStatus.UNAUTHORIZED, [], b"who are you?\n")
        path.context["checked_by"] = type(self).__name__
        return await super().process_request(path, headers)


async def test_protocol_subclass_calls_super(start_legacy_server):
    router, calls = counting_router()
    auth = {"Authorization": "Bearer good"}
    async with start_legacy_server(router, create_protocol=RecordingProtocol) as url:
        assert await rejected_status(f"{url}/item/1") == (401, b"who are you?\n")
        async with connect(f"{url}/item/1", additional_headers=auth) as ws:
            assert await ws.recv() == (
                "1 {'checked_by': 'RecordingProtocol', 'user': 'anonymous', 'hook_runs': 1}"
            )
        assert (await rejected_status(f"{url}/nothing", additional_headers=auth))[0] == 404
        assert (await rejected_status(f"{url}/item/enum", additional_headers=auth))[0] == 403
    assert calls == {"hook": 2, "views": ["/item/1"]}


async def test_protocol_with_a_router_attribute_and_own_handler(start_legacy_server):
    router, calls = counting_router()

    class Routed(websockets_routes.Protocol):
        pass

    Routed.router = router

    async def my_handler(ws):
        # ws.path is the RoutedPath the handshake resolved.
        await ws.send(f"{ws.path.params} {ws.path.context['user']}")

    async with start_legacy_server(my_handler, create_protocol=Routed) as url:
        async with connect(f"{url}/item/9") as ws:
            assert await ws.recv() == "{'id': '9'} anonymous"
        assert (await rejected_status(f"{url}/elsewhere"))[0] == 404


async def test_protocol_needs_a_router():
    async def my_handler(ws):
        pass

    with pytest.raises(TypeError, match="needs the router"):
        websockets_routes.Protocol(my_handler, None)


@pytest.mark.parametrize("server", ["new", "serve", "legacy"])
async def test_failing_handler_closes_1011_and_logs_route_and_peer(
    start_server, start_legacy_server, server, caplog
):
    router = Router()

    @router.route("/fail/{id}", name="failing")
    async def failing(ws, path):
        raise ValueError("view bug")

    @router.route("/ok")
    async def ok(ws, path):
        await ws.send("still serving")

    start = {"new": start_server, "legacy": start_legacy_server}.get(server)
    served = router_served(router) if start is None else start(router.handle)
    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        async with served as url:
            async with connect(f"{url}/fail/1?token=secret") as ws:
                with pytest.raises(ConnectionClosedError) as ctx:
                    await ws.recv()
                local_port = ws.local_address[1]
            assert ctx.value.rcvd.code == 1011
            async with connect(f"{url}/ok") as ws:
                assert await ws.recv() == "still serving"
    [record] = [r for r in caplog.records if r.name.startswith("websockets_routes")]
    message = record.getMessage()
    assert "'failing'" in message and f"127.0.0.1:{local_port}" in message
    assert "secret" not in message
    assert record.exc_info[0] is ValueError


# router.serve()


def serve_router():
    router = Router()

    @router.route("/echo/{word}")
    async def echo(ws, path):
        await ws.send(path.params["word"])

    return router


async def check_served(port):
    async with connect(f"ws://{HOST}:{port}/echo/hi") as ws:
        assert await ws.recv() == "hi"
    assert (await rejected_status(f"ws://{HOST}:{port}/nope"))[0] == 404


async def test_router_serve_awaited():
    server = await serve_router().serve(HOST, 0)
    try:
        assert server.port > 0
        assert server.port == list(server.sockets)[0].getsockname()[1]
        await check_served(server.port)
    finally:
        server.close()
        await server.wait_closed()


async def test_router_serve_async_with_and_options():
    async with serve_router().serve(HOST, 0, compression=None, server_header=None) as server:
        await check_served(server.port)
        async with connect(f"ws://{HOST}:{server.port}/echo/x") as ws:
            assert ws.response.headers.get("Server") is None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            assert await ws.recv() == "x"


def test_router_serve_run_until_complete():
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        start_server = serve_router().serve(HOST, 0)
        server = loop.run_until_complete(start_server)
        loop.run_until_complete(check_served(server.port))
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def test_router_serve_chains_a_user_process_request():
    seen = []

    def health(connection, request):  # a plain function is fine for websockets too
        seen.append(request.path)
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "healthy\n")
        return None

    async with serve_router().serve(HOST, 0, process_request=health) as server:
        url = f"ws://{HOST}:{server.port}"
        assert await rejected_status(f"{url}/healthz") == (200, b"healthy\n")
        await check_served(server.port)
    assert seen == ["/healthz", "/echo/hi", "/nope"]


@pytest.mark.parametrize("install", ["new", "serve"])
async def test_a_router_with_its_own_resolve_is_awaited(serve_routed, install):
    seen = []

    class Audited(Router):
        async def resolve(self, request):
            await asyncio.sleep(0)  # really awaits something
            decision = await super().resolve(request)
            seen.append((request.target, type(decision).__name__))
            return decision

    router = Audited()

    @router.route("/echo/{word}")
    async def echo(ws, path):
        await ws.send(path.params["word"])

    async with serve_routed(router, install) as url:
        async with connect(f"{url}/echo/hi") as ws:
            assert await ws.recv() == "hi"
        assert (await rejected_status(f"{url}/nope"))[0] == 404
    assert seen == [("/echo/hi", "Accept"), ("/nope", "Respond")]


async def test_router_serve_keeps_a_router_class_own_hook_and_handler():
    seen = []

    class Mine(Router):
        async def process_request(self, *args):
            seen.append("hook")
            return await super().process_request(*args)

        async def handle(self, ws, path=None):
            seen.append("handle")
            await super().handle(ws, path)

    router = Mine()

    @router.route("/echo/{word}")
    async def echo(ws, path):
        await ws.send(path.params["word"])

    def user_hook(connection, request):
        seen.append("user hook")

    for options in ({}, {"process_request": user_hook}):
        seen.clear()
        async with router.serve(HOST, 0, **options) as server:
            await check_served(server.port)
        expected = ["hook", "handle", "hook"]
        if options:
            expected = ["user hook", "hook", "handle", "user hook", "hook"]
        assert seen == expected


async def test_router_serve_with_legacy_options_uses_the_legacy_server():
    async with serve_router().serve(HOST, 0, extra_headers={"X-Legacy": "yes"}) as server:
        async with connect(f"ws://{HOST}:{server.port}/echo/old") as ws:
            assert ws.response.headers["X-Legacy"] == "yes"
            assert await ws.recv() == "old"
        with pytest.raises(InvalidStatusCode) as ctx:
            async with legacy_connect(f"ws://{HOST}:{server.port}/nope"):
                pass
        assert ctx.value.status_code == 404


# Without websockets installed


def test_import_without_websockets():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["websockets"] = None  # any import of websockets now fails

        import websockets_routes

        router = websockets_routes.Router()

        @router.route("/a/{x}")
        async def a(ws, path):
            pass

        assert router.match("/a/1").params == {"x": "1"}
        for touch in (lambda: websockets_routes.Protocol, lambda: router.serve("h", 1)):
            try:
                touch()
            except ImportError as exc:
                print(exc)
            else:
                raise SystemExit("no ImportError")
        try:
            from websockets_routes import Protocol
        except ImportError as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert "pip install websockets-routes[websockets]" in line


async def http_exchange(port, request):
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_plain_http_routes_through_the_hook():
    router = serve_router()

    @router.http("/healthz")
    async def health(request):
        return "ok\n"

    async with router.serve(HOST, 0) as server:
        got = await http_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 3" in head
        assert body == b"ok\n"
        # HEAD: the same headers, no body.
        got = await http_exchange(server.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 3" in head
        assert body == b""
        got = await http_exchange(server.port, b"POST /echo/x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n") and b"Allow: GET\r\n" in got


def ws_only_router():
    """A view of (ws) alone, websockets 14+ style: it reads the RoutedPath as ws.path."""
    router = Router()

    @router.route("/room/{name}", name="room")
    async def room(ws):
        path = ws.path
        await ws.send(f"{type(path).__name__} {path} {path.params} {path.name} {path.query}")

    return router


@pytest.mark.parametrize("install", [*INSTALLS, "handler-only"])
async def test_a_view_of_ws_alone_gets_the_routed_path_as_ws_path(
    serve_routed, start_server, install
):
    router = ws_only_router()
    if install == "handler-only":  # no hook: the handler routes after the handshake
        served = start_server(router.handle)
    else:
        served = serve_routed(router, install)
    async with served as url:
        async with connect(f"{url}/room/a%20b?x=1") as ws:
            assert await ws.recv() == "RoutedPath /room/a%20b?x=1 {'name': 'a b'} room x=1"


# Per-route policy (core.policy)


async def test_router_serve_warns_of_route_options_it_cannot_apply():
    from websockets_routes.core.policy import PolicyWarning

    router = Router()

    @router.route("/small", max_size=10, compression=None)
    async def small(ws, path):
        await ws.send("hi")

    with pytest.warns(PolicyWarning, match=r"/small \(max_size, compression\)"):
        async with router_served(router) as uri:
            async with connect(uri + "/small") as ws:  # served with the server's options
                assert await ws.recv() == "hi"


@pytest.mark.parametrize("install", ["new", "serve"])
async def test_converters_and_rate_limits_apply_through_the_hook(serve_routed, install):
    router = Router()

    @router.route("/n/{n}", convert={"n": int}, rate_limit=(1, 30))
    async def number(ws, path):
        await ws.send(repr(path.params["n"]))

    async with serve_routed(router, install) as uri:
        async with connect(uri + "/n/7") as ws:
            assert await ws.recv() == "7"
        with pytest.raises(InvalidStatus) as info:
            async with connect(uri + "/n/7"):
                pass
        assert info.value.response.status_code == 429
        assert int(info.value.response.headers["Retry-After"]) >= 29
        with pytest.raises(InvalidStatus) as info:
            async with connect(uri + "/n/x"):
                pass
        assert info.value.response.status_code == 404


async def test_a_hook_installed_by_hand_logs_route_options_it_cannot_apply(serve_routed, caplog):
    router = Router()

    @router.route("/small", max_queue=4)
    async def small(ws, path):
        await ws.send("hi")

    with caplog.at_level(logging.WARNING, "websockets_routes"):
        async with serve_routed(router, "new") as uri:
            for _ in range(2):
                async with connect(uri + "/small") as ws:
                    assert await ws.recv() == "hi"
    logged = [r.getMessage() for r in caplog.records if "cannot apply" in r.getMessage()]
    assert logged == [
        "the websockets server cannot apply the max_queue set on route '/small': its "
        "connections get the server's options"
    ]
