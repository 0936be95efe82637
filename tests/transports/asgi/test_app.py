"""ASGIApp driven directly with fake receive/send callables: no server, no sockets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import anyio
import pytest

from tests.transports.asgi.websockets_routes_test_app import closing_router, router
from websockets_routes import ConnectionClosedError, ConnectionClosedOK, Router
from websockets_routes.transports.asgi import ASGIApp

pytestmark = pytest.mark.anyio

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
DENIAL = {"websocket.http.response": {}}
PEER = ("203.0.113.7", 5555)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def ws_scope(
    raw_path: str,
    query: bytes = b"",
    *,
    extensions: dict[str, Any] | None = DENIAL,
    subprotocols: list[str] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    root_path: str = "",
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("ascii"),
        "query_string": query,
        "root_path": root_path,
        "headers": [
            (b"host", b"example.com"),
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", KEY),
            (b"sec-websocket-version", b"13"),
            *(headers or []),
        ],
        "client": PEER,
        "server": ("127.0.0.1", 8000),
        "subprotocols": subprotocols or [],
    }
    if extensions is not None:
        scope["extensions"] = extensions
    return scope


def http_scope(method: str, raw_path: str, headers: list[tuple[bytes, bytes]] = ()) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("ascii"),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"example.com"), *headers],
        "client": PEER,
        "server": ("127.0.0.1", 8000),
    }


class FakeServer:
    """The server side of one ASGI connection: scripted input, recorded output."""

    def __init__(self) -> None:
        self.to_app, self._from_test = anyio.create_memory_object_stream[dict](100)
        self.sent: list[dict] = []
        self.send_error: BaseException | None = None
        self._grew = anyio.Event()

    def feed(self, *messages: dict) -> None:
        for message in messages:
            self.to_app.send_nowait(message)

    async def receive(self) -> dict:
        return await self._from_test.receive()

    async def send(self, message: dict) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(message)
        self._grew.set()
        self._grew = anyio.Event()

    async def wait_sent(self, count: int) -> None:
        with anyio.fail_after(5):
            while len(self.sent) < count:
                await self._grew.wait()

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]


@asynccontextmanager
async def fake() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    with server.to_app, server._from_test:
        yield server


async def run(app: Any, scope: dict, *messages: dict) -> FakeServer:
    async with fake() as server:
        server.feed(*messages)
        with anyio.fail_after(5):
            await app(scope, server.receive, server.send)
        return server


CONNECT = {"type": "websocket.connect"}


def disconnect(code: int = 1000) -> dict:
    return {"type": "websocket.disconnect", "code": code}


# Rejections


async def test_denial_extension_carries_status_headers_and_body() -> None:
    server = await run(router.asgi, ws_scope("/rooms/closed"), CONNECT)
    start, body = server.sent
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 403
    assert (b"x-why", b"closed room") in start["headers"]
    assert (b"content-length", b"20") in start["headers"]
    assert body == {
        "type": "websocket.http.response.body",
        "body": b"this room is closed\n",
        "more_body": False,
    }


async def test_unknown_path_is_404_through_the_extension() -> None:
    server = await run(router.asgi, ws_scope("/nowhere"), CONNECT)
    assert server.types() == ["websocket.http.response.start", "websocket.http.response.body"]
    assert server.sent[0]["status"] == 404
    assert b"no route for /nowhere" in server.sent[1]["body"]


async def test_without_the_extension_a_rejection_is_a_close_before_accept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="websockets_routes.asgi")
    server = await run(router.asgi, ws_scope("/nowhere", extensions=None), CONNECT)
    assert server.types() == ["websocket.close"]
    assert any("HTTP 404" in r.getMessage() and "403" in r.getMessage() for r in caplog.records)


async def test_client_gone_before_connect_sends_nothing() -> None:
    server = await run(router.asgi, ws_scope("/echo/x"), disconnect(1006))
    assert server.sent == []


# Accepted connections


async def test_accept_echo_then_client_close() -> None:
    async with fake() as server:
        server.feed(
            CONNECT,
            {"type": "websocket.receive", "text": "hi"},
            {"type": "websocket.receive", "bytes": b"\x01", "text": None},  # as hypercorn
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(router.asgi, ws_scope("/echo/a%20b", b"x=1"), server.receive, server.send)
            await server.wait_sent(4)
            server.feed(disconnect(1000))
    accept, *rest = server.sent
    # The server writes Upgrade/Connection/Sec-WebSocket-Accept itself.
    assert accept == {"type": "websocket.accept", "subprotocol": None, "headers": []}
    # The client closed: nothing more is sent, not even a close.
    assert rest == [
        {"type": "websocket.send", "text": "hello a b query=x=1"},
        {"type": "websocket.send", "text": "hi"},
        {"type": "websocket.send", "bytes": b"\x01"},
    ]


async def test_a_view_of_ws_alone_reads_the_routed_path_as_ws_path() -> None:
    app_router = Router()

    @app_router.route("/room/{name}", name="room")
    async def room(ws: Any) -> None:  # websockets 14+ handler style
        path = ws.path
        await ws.send(f"{type(path).__name__} {path} {path.params} {path.name}")

    server = await run(app_router.asgi, ws_scope("/room/a%20b", b"x=1"), CONNECT)
    assert server.sent[1] == {
        "type": "websocket.send",
        "text": "RoutedPath /room/a%20b?x=1 {'name': 'a b'} room",
    }


async def test_messages_before_the_peer_closed_are_still_received() -> None:
    # A handler that reads only after the disconnect arrived still gets the messages.
    got: list[Any] = []
    probe = Router()

    @probe.route("/probe")
    async def late_reader(ws, path):
        await anyio.wait_all_tasks_blocked()  # the reader has seen the disconnect
        assert ws.close_code == 1000
        async for message in ws:  # ends quietly: the client closed with 1000
            got.append(message)
        got.append(ws.close_code)

    await run(
        ASGIApp(probe),
        ws_scope("/probe"),
        CONNECT,
        {"type": "websocket.receive", "text": "a"},
        {"type": "websocket.receive", "text": "b"},
        disconnect(1000),
    )
    assert got == ["a", "b", 1000]


async def test_subprotocol_offered_only_in_scope_subprotocols() -> None:
    # uvicorn's wsproto stack drops Sec-WebSocket-Protocol from the scope headers.
    server = await run(router.asgi, ws_scope("/chat", subprotocols=["chat.v1", "chat.v2"]), CONNECT)
    assert server.sent[0] == {"type": "websocket.accept", "subprotocol": "chat.v2", "headers": []}
    assert server.sent[1] == {"type": "websocket.send", "text": "subprotocol=chat.v2"}
    assert server.sent[-1] == {"type": "websocket.close", "code": 1000, "reason": ""}


async def test_hook_close_is_accept_then_close() -> None:
    server = await run(router.asgi, ws_scope("/rooms/gone"), CONNECT)
    assert server.types() == ["websocket.accept", "websocket.close"]
    assert server.sent[1] == {"type": "websocket.close", "code": 4410, "reason": "room gone"}


async def test_close_unmatched_is_accept_then_4040() -> None:
    server = await run(closing_router.asgi, ws_scope("/nowhere"), CONNECT)
    assert server.types() == ["websocket.accept", "websocket.close"]
    assert server.sent[1]["code"] == 4040


async def test_handler_exception_closes_1011_and_logs_route_and_peer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await run(
        router.asgi, ws_scope("/boom"), CONNECT, {"type": "websocket.receive", "text": "go"}
    )
    assert server.sent[-1] == {"type": "websocket.close", "code": 1011, "reason": ""}
    (record,) = [r for r in caplog.records if r.name == "websockets_routes.asgi"]
    assert "'/boom'" in record.getMessage() and "203.0.113.7:5555" in record.getMessage()


async def test_root_path_is_stripped_before_routing() -> None:
    server = await run(
        router.asgi, ws_scope("/api/echo/x", root_path="/api"), CONNECT, disconnect()
    )
    assert server.sent[1] == {"type": "websocket.send", "text": "hello x query="}


async def test_mounted_under_starlette_routes_relative_to_the_mount() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = Starlette(routes=[Mount("/ws", app=router.asgi)])
    server = await run(app, ws_scope("/ws/rooms/gone"), CONNECT)
    assert server.sent[1] == {"type": "websocket.close", "code": 4410, "reason": "room gone"}
    server = await run(app, ws_scope("/ws/nowhere"), CONNECT)
    assert server.sent[0]["status"] == 404
    assert server.sent[1]["body"].startswith(b"404 Not Found: no route for /nowhere")


# The connection object


async def test_connection_object_surface_and_closed_errors() -> None:
    seen: dict[str, Any] = {}
    probe = Router()

    @probe.route("/probe/{id}")
    async def handler(ws, path):
        seen["attrs"] = (ws.path.params, ws.request.method, ws.remote_address, ws.close_code)
        pong = await ws.ping()
        seen["latency"] = await pong
        with pytest.raises(ValueError):
            await ws.close(1005)
        with pytest.raises(TypeError):
            await ws.send(42)
        seen["first"] = await ws.recv()
        with pytest.raises(ConnectionClosedError) as exc:
            await ws.recv()
        seen["recv_error"] = exc.value.code, exc.value.reason
        with pytest.raises(ConnectionClosedError):
            await ws.send("too late")
        with pytest.raises(ConnectionClosedError):
            await ws.ping()

    await run(
        ASGIApp(probe),
        ws_scope("/probe/7"),
        CONNECT,
        {"type": "websocket.receive", "text": "one"},
        {"type": "websocket.disconnect", "code": 4000, "reason": "bye"},
    )
    assert seen["attrs"] == ({"id": "7"}, "GET", PEER, None)
    assert seen["latency"] == 0.0
    assert seen["first"] == "one"
    assert seen["recv_error"] == (4000, "bye")


async def test_local_close_wakes_a_receiver_in_another_task() -> None:
    seen: dict[str, Any] = {}
    probe = Router()

    @probe.route("/probe")
    async def handler(ws, path):
        async def receiver() -> None:
            try:
                await ws.recv()
            except ConnectionClosedOK as exc:
                seen["receiver"] = exc.code

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.wait_all_tasks_blocked()  # the receiver waits in recv()
            await ws.close(1001, "going away")
        seen["close_code"] = ws.close_code

    async with fake() as server:
        server.feed(CONNECT)
        with anyio.fail_after(5):
            await ASGIApp(probe)(ws_scope("/probe"), server.receive, server.send)
    assert seen == {"receiver": 1001, "close_code": 1001}
    assert server.sent[-1] == {"type": "websocket.close", "code": 1001, "reason": "going away"}
    assert server.types().count("websocket.close") == 1


async def test_send_on_a_connection_the_server_reports_gone() -> None:
    seen: dict[str, Any] = {}
    probe = Router()

    @probe.route("/probe")
    async def handler(ws, path):
        server.send_error = OSError("client disconnected")  # what ASGI 2.4 servers raise
        with pytest.raises(ConnectionClosedError) as exc:
            await ws.send("x")
        seen["code"] = exc.value.code

    async with fake() as server:
        server.feed(CONNECT)
        with anyio.fail_after(5):
            await ASGIApp(probe)(ws_scope("/probe"), server.receive, server.send)
    assert seen == {"code": 1006}


# Plain HTTP and lifespan


async def test_http_route_get_and_head() -> None:
    async with fake() as server:
        await router.asgi(http_scope("GET", "/healthz"), server.receive, server.send)
        await router.asgi(http_scope("HEAD", "/healthz"), server.receive, server.send)
    get_start, get_body, head_start, head_body = server.sent
    assert get_start["status"] == head_start["status"] == 200
    assert get_start["headers"] == head_start["headers"]
    assert (b"content-length", b"3") in head_start["headers"]
    assert get_body["body"] == b"ok\n"
    assert head_body["body"] == b""


async def test_http_get_to_websocket_route_is_426_and_unknown_404() -> None:
    async with fake() as server:
        await router.asgi(http_scope("GET", "/echo/x"), server.receive, server.send)
        await router.asgi(http_scope("GET", "/nope"), server.receive, server.send)
    assert [m.get("status") for m in server.sent] == [426, None, 404, None]
    assert (b"upgrade", b"websocket") in server.sent[0]["headers"]


async def test_upgrade_request_in_an_http_scope_is_501() -> None:
    headers = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", KEY),
        (b"sec-websocket-version", b"13"),
    ]
    async with fake() as server:
        await router.asgi(http_scope("GET", "/echo/x", headers), server.receive, server.send)
    assert server.sent[0]["status"] == 501


async def test_lifespan_startup_and_shutdown_complete() -> None:
    server = await run(
        router.asgi,
        {"type": "lifespan", "asgi": {"version": "3.0"}},
        {"type": "lifespan.startup"},
        {"type": "lifespan.shutdown"},
    )
    assert server.types() == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_unknown_scope_type_raises() -> None:
    async with fake() as server:
        with pytest.raises(ValueError, match="'webtransport'"):
            await router.asgi({"type": "webtransport"}, server.receive, server.send)


def test_router_asgi_is_one_app_per_router() -> None:
    assert router.asgi is router.asgi
    assert isinstance(router.asgi, ASGIApp) and router.asgi.router is router


async def test_connection_closed_escaping_a_handler_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = Router()

    @probe.route("/probe")
    async def handler(ws, path):
        async with anyio.create_task_group() as tg:  # raises an ExceptionGroup
            tg.start_soon(ws.recv)
            await ws.recv()

    server = await run(ASGIApp(probe), ws_scope("/probe"), CONNECT, disconnect(1006))
    assert server.types() == ["websocket.accept"]  # the client is gone: no close sent
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# Per-route policy (core.policy)


async def test_asgi_warns_of_route_options_it_cannot_apply_and_limits_handshakes() -> None:
    from websockets_routes.core.policy import PolicyWarning

    limited = Router()

    @limited.route("/n/{n}", convert={"n": int}, rate_limit=(1, 30), ping_interval=None)
    async def number(ws, path):
        await ws.send(repr(path.params["n"]))

    with pytest.warns(PolicyWarning, match=r"/n/\{n\} \(ping_interval\)"):
        app = ASGIApp(limited)
    server = await run(app, ws_scope("/n/7"), CONNECT, disconnect())
    assert server.sent[0]["type"] == "websocket.accept"
    assert {"type": "websocket.send", "text": "7"} in server.sent
    server = await run(app, ws_scope("/n/7"), CONNECT)
    assert server.sent[0]["status"] == 429
    assert (b"retry-after", b"30") in server.sent[0]["headers"]
