"""TestClient: the real handshake and framing over memory, no socket, on asyncio and trio."""

from __future__ import annotations

import json
import sys
import threading

import anyio
import pytest

from websockets_routes import (
    Close,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Router,
)
from websockets_routes.testing import HandshakeRejected, TestClient

pytestmark = pytest.mark.anyio

TIMEOUT = 10

# Sockets created while a test body runs: an audit hook sees every socket CPython
# makes (socket.__new__), whichever module or library asks for it.
_watch = {"on": False, "sockets": 0}


def _audit(event: str, args: tuple) -> None:
    if _watch["on"] and event in ("socket.__new__", "socket.bind", "socket.connect"):
        _watch["sockets"] += 1


sys.addaudithook(_audit)


@pytest.fixture
async def no_sockets(anyio_backend):
    """Fail the test if it creates a socket or a thread (counted inside the running
    event loop: the loop's own wake-up socket pair predates it)."""
    threads = set(threading.enumerate())
    _watch["sockets"] = 0
    _watch["on"] = True
    yield
    _watch["on"] = False
    assert _watch["sockets"] == 0, "a socket was created"
    assert set(threading.enumerate()) <= threads, "a thread was started"


def make_router(**options) -> Router:
    router = Router(**options)

    @router.route("/echo", subprotocols=["chat.v2", "chat.v1"])
    async def echo(ws, path):
        async for message in ws:
            await ws.send(message)

    @router.route("/info/{id}", name="info")
    async def info(ws, path):
        await ws.send(
            json.dumps(
                {
                    "params": path.params,
                    "query": path.query,
                    "name": path.name,
                    "token": ws.request.headers.get("X-Token"),
                    "host": ws.request.headers.get("Host"),
                    "peer": list(ws.remote_address),
                    "subprotocol": ws.subprotocol,
                }
            )
        )

    @router.route("/fail")
    async def fail(ws, path):
        await ws.send("about to fail")
        raise ZeroDivisionError("handler bug")

    @router.route("/guarded")
    class Guarded:
        async def process_request(self, path, headers):
            token = headers.get("X-Token")
            if token == "close":
                return Close(4001, "closed by hook")
            if token != "ok":
                return 403, [("X-Reason", "no token")], b"forbidden\n"
            return None

        async def handle(self, ws, path):
            await ws.send("welcome")

    @router.route("/sites", origins=["https://good.example"])
    async def sites(ws, path):
        await ws.send("same site")

    @router.http("/health")
    async def health(request):
        return 200, [("Content-Type", "text/plain")], b"ok\n"

    return router


async def test_echo_without_any_socket_or_thread(no_sockets):
    messages = ["hello", b"\x00\x01", "é" * 5000, bytes(range(256)) * 1000]
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router()) as client:
            async with client.connect("/echo") as ws:
                for message in messages:
                    await ws.send(message)
                    assert await ws.recv() == message


async def test_audit_hook_does_see_a_socket(no_sockets):
    # The check above can fail: opening a real socket is noticed.
    import socket

    with socket.socket():
        pass
    assert _watch["sockets"] == 1
    _watch["sockets"] = 0


async def test_handshake_details_and_request_as_the_handler_sees_it():
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router()) as client:
            async with client.connect(
                "/info/a%20b?x=1", headers=[("X-Token", "t0k")], compression=None
            ) as ws:
                info = json.loads(await ws.recv())
                assert ws.extensions is None
                names = {name.lower() for name, _ in ws.response_headers}
                assert {"upgrade", "connection", "sec-websocket-accept"} <= names
    assert info["params"] == {"id": "a b"}
    assert info["query"] == "x=1"
    assert info["name"] == "info"
    assert info["token"] == "t0k"
    assert info["host"] == "testserver"
    assert info["peer"][0] == "testclient"


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(["chat.v1", "chat.v2"], "chat.v2"), (["chat.v1"], "chat.v1"), ([], None)],
)
async def test_subprotocol_negotiation(offered, chosen):
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router()) as client:
            async with client.connect("/echo", subprotocols=offered) as ws:
                assert ws.subprotocol == chosen


async def test_permessage_deflate_is_negotiated_and_used():
    big = "compressible " * 10_000
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router()) as client:
            async with client.connect("/echo") as ws:
                assert ws.extensions is not None
                assert ws.extensions.startswith("permessage-deflate")
                await ws.send(big)
                assert await ws.recv() == big
        async with TestClient(make_router(), compression=None) as client:
            async with client.connect("/echo") as ws:
                assert ws.extensions is None


async def test_unknown_path_is_rejected_with_404():
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router()) as client:
            with pytest.raises(HandshakeRejected) as info:
                async with client.connect("/nowhere"):
                    pytest.fail("the handshake should not succeed")
    assert info.value.status == 404
    assert b"no route" in info.value.body
    assert all(isinstance(n, str) and isinstance(v, str) for n, v in info.value.headers)
    assert info.value.header("content-type").startswith("text/plain")


async def test_hook_response_status_headers_and_body():
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router()) as client:
            with pytest.raises(HandshakeRejected) as info:
                async with client.connect("/guarded"):
                    pass
            assert info.value.status == 403
            assert ("X-Reason", "no token") in info.value.headers
            assert info.value.body == b"forbidden\n"
            async with client.connect("/guarded", headers={"X-Token": "ok"}) as ws:
                assert await ws.recv() == "welcome"


async def test_origin_check():
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router()) as client:
            with pytest.raises(HandshakeRejected) as info:
                async with client.connect("/sites", origin="https://evil.example"):
                    pass
            assert info.value.status == 403
            async with client.connect("/sites", origin="https://good.example") as ws:
                assert await ws.recv() == "same site"


async def test_accept_then_close_4040_under_close_unmatched():
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router(close_unmatched=True)) as client:
            async with client.connect("/nowhere") as ws:
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert ws.close_code == 4040
    assert info.value.code == 4040


async def test_hook_close_code():
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router()) as client:
            async with client.connect("/guarded", headers=[("X-Token", "close")]) as ws:
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
    assert (info.value.code, info.value.reason) == (4001, "closed by hook")


async def test_handler_exception_is_raised_in_the_test():
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router()) as client:
            with pytest.raises(ZeroDivisionError, match="handler bug"):
                async with client.connect("/fail") as ws:
                    assert await ws.recv() == "about to fail"
                    with pytest.raises(ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.code == 1011
            # The server keeps serving.
            async with client.connect("/echo") as ws:
                await ws.send("still here")
                assert await ws.recv() == "still here"


async def test_handler_exception_only_closes_1011_when_not_raised(caplog):
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router(), raise_server_exceptions=False) as client:
            async with client.connect("/fail") as ws:
                assert await ws.recv() == "about to fail"
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
    assert info.value.code == 1011
    failures = [r for r in caplog.records if "/fail" in r.getMessage()]
    assert failures and "testclient:" in failures[0].getMessage()


async def test_handler_exception_after_the_block_is_raised_at_client_exit():
    router = Router()
    release = anyio.Event()

    @router.route("/late")
    async def late(ws, path):
        await ws.send("hi")
        await release.wait()
        raise KeyError("late failure")

    with anyio.fail_after(TIMEOUT):
        with pytest.raises(KeyError, match="late failure"):
            async with TestClient(router, close_timeout=0.5) as client:
                async with client.connect("/late") as ws:
                    assert await ws.recv() == "hi"
                    await ws.close()
                release.set()


async def test_handler_return_closes_1000_and_async_for_ends():
    router = Router()

    @router.route("/three")
    async def three(ws, path):
        for i in range(3):
            await ws.send(str(i))

    with anyio.fail_after(TIMEOUT):
        async with TestClient(router) as client:
            async with client.connect("/three") as ws:
                assert [m async for m in ws] == ["0", "1", "2"]
                assert ws.close_code == 1000
                with pytest.raises(ConnectionClosedOK):
                    await ws.recv()


async def test_client_close_code_reaches_the_handler():
    router = Router()
    seen: list[tuple[int, str]] = []

    @router.route("/wait")
    async def wait(ws, path):
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            seen.append((exc.code, exc.reason))

    with anyio.fail_after(TIMEOUT):
        async with TestClient(router) as client:
            async with client.connect("/wait") as ws:
                await ws.close(4000, "test over")
                assert ws.close_code == 4000
    assert seen == [(4000, "test over")]


async def test_pings_both_ways():
    router = Router()

    @router.route("/ping")
    async def ping(ws, path):
        latency = await (await ws.ping())
        await ws.send(f"server latency {latency >= 0}")
        await ws.recv()

    with anyio.fail_after(TIMEOUT):
        async with TestClient(router) as client:
            async with client.connect("/ping") as ws:
                assert await ws.recv() == "server latency True"
                assert await (await ws.ping(b"abc")) >= 0


async def test_server_options_apply():
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router(), max_size=1000) as client:
            async with client.connect("/echo") as ws:
                await ws.send(b"x" * 1000)
                assert await ws.recv() == b"x" * 1000
                await ws.send(b"x" * 1001)
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
    assert info.value.code == 1009


async def test_plain_http_requests(no_sockets):
    with anyio.fail_after(TIMEOUT):
        async with TestClient(make_router()) as client:
            response = await client.get("/health")
            assert (response.status, response.body) == (200, b"ok\n")
            assert response.header("content-type") == "text/plain"
            head = await client.request("HEAD", "/health")
            assert (head.status, head.body) == (200, b"")
            assert head.header("content-length") == "3"
            plain = await client.get("/echo")
            assert plain.status == 426


async def test_a_view_of_ws_alone_and_an_http_view_returning_json(no_sockets):
    router = Router()

    @router.route("/room/{name}", name="room")
    async def room(ws):  # websockets 14+ handler style
        await ws.send(f"{type(ws.path).__name__} {ws.path} {ws.path.params} {ws.path.name}")

    router.http("/items")(lambda request: [1, "caf\u00e9"])
    with anyio.fail_after(TIMEOUT):
        async with TestClient(router) as client:
            async with client.connect("/room/a%20b?x=1") as ws:
                assert await ws.recv() == "RoutedPath /room/a%20b?x=1 {'name': 'a b'} room"
            response = await client.get("/items")
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.body == '[1,"caf\u00e9"]'.encode()


async def test_many_connections_at_once_and_the_server_side_object():
    router = Router()
    members: list = []

    @router.route("/chat")
    async def chat(ws, path):
        members.append(ws)
        try:
            async for message in ws:
                for member in list(members):
                    await member.send(message)
        finally:
            members.remove(ws)

    with anyio.fail_after(TIMEOUT):
        async with TestClient(router) as client:
            async with client.connect("/chat") as alice, client.connect("/chat") as bob:
                assert alice.server is not None and alice.server in members
                await alice.send("hi all")
                assert await alice.recv() == "hi all"
                assert await bob.recv() == "hi all"


async def test_connect_outside_the_client_block_is_an_error():
    client = TestClient(make_router())
    with pytest.raises(RuntimeError, match="async with TestClient"):
        async with client.connect("/echo"):
            pass


async def test_bad_server_option_fails_at_construction():
    with pytest.raises(TypeError):
        TestClient(make_router(), no_such_option=1)
    with pytest.raises(ValueError, match="max_queue"):
        TestClient(make_router(), max_queue=0)


async def test_recv_under_short_timeouts_loses_no_message():
    """A handler polling recv() with timeouts that keep cancelling it still gets
    every message, whole and in order, over the in-memory stream."""
    router = Router()

    @router.route("/poll")
    async def poll(ws, path):
        received: list[str] = []
        while len(received) < 200:
            with anyio.move_on_after(0):
                received.append(await ws.recv())
        await ws.send(",".join(received))

    with anyio.fail_after(TIMEOUT):
        async with TestClient(router) as client:
            async with client.connect("/poll") as ws:
                for i in range(200):
                    await ws.send(str(i) * (1 + i % 7))
                assert await ws.recv() == ",".join(str(i) * (1 + i % 7) for i in range(200))
