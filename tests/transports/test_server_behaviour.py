"""Behaviour of our WebSocket server on real sockets (127.0.0.1, port 0).

Peers: the ``websockets`` 17.4 client (an independent implementation) and raw sockets
for malformed input. The server comes from the ``serve_router`` fixture and the
websockets client from ``connect`` (see conftest.py), so this suite can run over
every transport and backend; test code uses anyio only.
"""

from __future__ import annotations

import json
import logging
import os
import struct

import anyio
import pytest
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from websockets_routes import Close, ConnectionClosed, Router

from .helpers import RawClient, deflate, frame, handshake, random_key, text

pytestmark = pytest.mark.anyio

TIMEOUT = 10


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
                    "path": str(ws.path),
                    "params": path.params,
                    "query": path.query,
                    "name": path.name,
                    "header": ws.request.headers.get("X-Test"),
                    "peer": list(ws.remote_address)[:2],
                    "subprotocol": ws.subprotocol,
                }
            )
        )
        await ws.recv()

    @router.route("/fail")
    async def fail(ws, path):
        # Fail once the client has spoken, so it can read its own address first
        # (trio's client drops its socket as soon as the close arrives).
        await ws.recv()
        raise RuntimeError("boom")

    @router.route("/return")
    async def returns(ws, path):
        await ws.send("bye")

    @router.route("/guarded")
    class Guarded:
        async def process_request(self, path, headers):
            token = headers.get("X-Token")
            if token == "close":
                return Close(4001, "closed by hook")
            if token == "crash":
                raise ValueError("hook bug")
            if token != "ok":
                return 403, [("X-Reason", "no token")], b"forbidden\n"
            return None

        async def handle(self, ws, path):
            await ws.send("welcome")

    @router.http("/health")
    async def health(request):
        return 200, [("Content-Type", "text/plain")], b"ok\n"

    return router


# Every decision kind


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_echo_text_binary_and_large_messages(serve_router, connect, compression):
    messages = ["hello", b"\x00\x01\x02", "é" * 3000, os.urandom(70_000), os.urandom(2**20)]
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with connect(server, "/echo", compression=compression, max_size=None) as ws:
                for message in messages:
                    await ws.send(message)
                    assert await ws.recv() == message
                extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
                assert (extensions is not None) == (compression == "deflate")


async def test_compression_none_on_the_server(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router(), compression=None) as server:
            async with connect(server, "/echo") as ws:
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
                await ws.send("x" * 1000)
                assert await ws.recv() == "x" * 1000


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(["chat.v1", "chat.v2"], "chat.v2"), (["chat.v1"], "chat.v1"), (None, None)],
)
async def test_subprotocol_in_server_preference_order(serve_router, connect, offered, chosen):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with connect(server, "/echo", subprotocols=offered) as ws:
                assert ws.subprotocol == chosen
                assert ws.response.headers.get("Sec-WebSocket-Protocol") == chosen


async def test_unoffered_subprotocol_accepts_without_one(serve_router):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with await RawClient.connect(server.port) as raw:
                head = await raw.open("/echo", [("Sec-WebSocket-Protocol", "other")])
                assert "sec-websocket-protocol" not in head.lower()


async def test_connection_attributes(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with connect(
                server, "/info/a%20b?x=1", additional_headers={"X-Test": "yes"}
            ) as ws:
                info = json.loads(await ws.recv())
    assert info == {
        "path": "/info/a%20b?x=1",
        "params": {"id": "a b"},
        "query": "x=1",
        "name": "info",
        "header": "yes",
        "peer": ["127.0.0.1", info["peer"][1]],
        "subprotocol": None,
    }


async def test_a_view_of_ws_alone_reads_the_routed_path_as_ws_path(serve_router, connect):
    router = Router()

    @router.route("/room/{name}", name="room")
    async def room(ws):  # websockets 14+ handler style
        path = ws.path
        await ws.send(f"{type(path).__name__} {path} {path.params} {path.name}")

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            async with connect(server, "/room/a%20b?x=1") as ws:
                assert await ws.recv() == "RoutedPath /room/a%20b?x=1 {'name': 'a b'} room"


async def test_an_http_view_returning_a_dict_is_json(serve_router):
    router = Router()
    router.http("/status")(lambda request: {"ok": True, "name": "caf\u00e9"})
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.send(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await raw.read_head()
                assert head.startswith("HTTP/1.1 200 ")
                assert "content-type: application/json" in head.lower()
                assert json.loads(await raw.read_to_eof()) == {"ok": True, "name": "caf\u00e9"}


async def test_unknown_path_is_404(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            with pytest.raises(InvalidStatus) as info:
                async with connect(server, "/nowhere"):
                    pass
    assert info.value.response.status_code == 404
    assert b"no route" in info.value.response.body


async def test_unknown_path_under_close_unmatched_is_4040(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router(close_unmatched=True)) as server:
            async with connect(server, "/nowhere") as ws:
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
    assert info.value.rcvd.code == 4040


async def test_a_router_overriding_resolve_is_asked_for_every_handshake(serve_router, connect):
    """The servers answer a route without a hook in the callback that read the request
    (no await); a Router subclass with its own resolve() must still decide."""
    from websockets_routes.core import Respond

    class Maintenance(Router):
        async def resolve(self, request):
            await anyio.lowlevel.checkpoint()
            if request.headers.get("X-Maintenance"):
                return Respond(503, [("Content-Type", "text/plain")], b"maintenance\n")
            return await super().resolve(request)

    router = Maintenance()

    @router.route("/hello")
    async def hello(ws, path):
        await ws.send("hello")

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            with pytest.raises(InvalidStatus) as info:
                async with connect(server, "/hello", additional_headers={"X-Maintenance": "1"}):
                    pass
            assert info.value.response.status_code == 503
            assert info.value.response.body == b"maintenance\n"
            async with connect(server, "/hello") as ws:
                assert await ws.recv() == "hello"


async def test_hook_status_headers_and_body(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            with pytest.raises(InvalidStatus) as info:
                async with connect(server, "/guarded"):
                    pass
            response = info.value.response
            assert response.status_code == 403
            assert response.headers["X-Reason"] == "no token"
            assert response.body == b"forbidden\n"
            async with connect(server, "/guarded", additional_headers={"X-Token": "ok"}) as ws:
                assert await ws.recv() == "welcome"


async def test_hook_close_completes_handshake_then_closes(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with connect(server, "/guarded", additional_headers={"X-Token": "close"}) as ws:
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "closed by hook")


async def test_hook_exception_is_500_and_server_keeps_serving(serve_router, connect, caplog):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            with pytest.raises(InvalidStatus) as info:
                async with connect(server, "/guarded", additional_headers={"X-Token": "crash"}):
                    pass
            assert info.value.response.status_code == 500
            async with connect(server, "/echo") as ws:
                await ws.send("still here")
                assert await ws.recv() == "still here"
    assert "hook bug" in caplog.text


async def test_http_route_get_and_head(serve_router):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await raw.read_head()
                assert head.startswith("HTTP/1.1 200 ")
                assert "content-length: 3" in head.lower()
                assert await raw.read_to_eof() == b"ok\n"
            async with await RawClient.connect(server.port) as raw:
                await raw.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await raw.read_head()
                assert head.startswith("HTTP/1.1 200 ")
                assert "content-length: 3" in head.lower()
                assert await raw.read_to_eof() == b""  # HEAD: headers only


async def test_plain_get_without_upgrade_is_426(serve_router):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await raw.read_head()
                assert head.startswith("HTTP/1.1 426 ")
                assert "upgrade: websocket" in head.lower()
                assert b"WebSocket" in await raw.read_to_eof()


async def test_garbage_is_400_and_server_keeps_serving(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.send(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n")
                head = await raw.read_head()
                assert head.startswith("HTTP/1.1 400 ")
                await raw.read_to_eof()
            async with connect(server, "/echo") as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"


@pytest.mark.parametrize("in_pieces", [False, True])
async def test_oversized_header_block_is_431(serve_router, in_pieces):
    request = handshake("/echo", extra=[("X-Big", "a" * 4000)])
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router(), max_header_bytes=2048) as server:
            async with await RawClient.connect(server.port) as raw:
                if in_pieces:
                    for i in range(0, len(request), 1000):
                        await raw.send(request[i : i + 1000])
                else:
                    await raw.send(request)
                head = await raw.read_head()
                assert head.startswith("HTTP/1.1 431 ")
                await raw.read_to_eof()


# Messages and limits


async def test_message_over_max_size_is_1009(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router(), max_size=1000) as server:
            async with connect(server, "/echo") as ws:
                await ws.send(b"x" * 1000)
                assert await ws.recv() == b"x" * 1000
                await ws.send(b"x" * 1001)
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
    assert info.value.rcvd.code == 1009


async def test_fragmented_message_over_max_size_is_1009(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router(), max_size=1000) as server:
            async with connect(server, "/echo") as ws:
                await ws.send([b"a" * 400, b"b" * 400])  # fragments: 800 bytes, fine
                assert await ws.recv() == b"a" * 400 + b"b" * 400
                await ws.send([b"a" * 400, b"b" * 400, b"c" * 400])
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
    assert info.value.rcvd.code == 1009


async def test_deflate_bomb_is_1009(serve_router):
    bomb = deflate(b"\x00" * (32 * 2**20))  # 32 MiB of zeros in ~32 KiB
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with await RawClient.connect(server.port) as raw:
                head = await raw.open("/echo", [("Sec-WebSocket-Extensions", "permessage-deflate")])
                assert "permessage-deflate" in head
                await raw.send(frame(0x2, bomb, rsv=0b100))
                assert await raw.expect_close() == 1009
                await raw.read_to_eof()


async def test_invalid_utf8_is_1007(serve_router):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/echo")
                await raw.send(text("fine"))
                assert await raw.read_frame() == (0x81, b"fine")
                await raw.send(frame(0x1, b"caf\xc3"))
                assert await raw.expect_close() == 1007
                await raw.read_to_eof()


@pytest.mark.parametrize(
    "bad",
    [
        frame(0x1, b"unmasked", masked=False),
        frame(0x3, b"reserved opcode"),
        frame(0xC, b""),
        frame(0x1, b"rsv2", rsv=0b010),
        frame(0x1, b"rsv1 without deflate", rsv=0b100),
        frame(0x9, b"x" * 126),
    ],
    ids=["unmasked", "opcode-3", "opcode-C", "rsv2", "rsv1", "big-ping"],
)
async def test_protocol_errors_are_1002(serve_router, bad):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/echo")
                await raw.send(bad)
                assert await raw.expect_close() == 1002
                await raw.read_to_eof()


@pytest.mark.parametrize(
    "bad", [frame(0x5, b"reserved"), frame(0x1, b"\xff"), frame(0x0, b"nothing to continue")]
)
async def test_messages_before_a_protocol_error_are_answered_first(serve_router, bad):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/echo")
                # Both good messages, then the bad frame, in one write (Autobahn 3.2, 5.15).
                await raw.send(text("one") + text("two") + bad + text("never"))
                assert await raw.read_frame() == (0x81, b"one")
                assert await raw.read_frame() == (0x81, b"two")
                assert await raw.expect_close() in (1002, 1007)
                await raw.read_to_eof()


async def test_pending_failure_is_carried_out_for_a_handler_that_does_not_read(serve_router):
    router = Router()

    @router.route("/deaf")
    async def deaf(ws, path):
        await anyio.sleep(30)

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, close_timeout=0.2) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/deaf")
                await raw.send(text("unread") + frame(0x1, b"x", masked=False))
                assert await raw.expect_close() == 1002  # after close_timeout
                await raw.read_to_eof()


async def test_ping_is_answered_and_closing_handshake(serve_router):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/echo")
                await raw.send(frame(0x9, b"are you there"))
                assert await raw.read_frame() == (0x8A, b"are you there")
                await raw.send(frame(0x8, struct.pack("!H", 1000) + b"bye"))
                assert await raw.read_frame() == (0x88, struct.pack("!H", 1000) + b"bye")
                assert await raw.read_to_eof() == b""  # then the server closes TCP


# Handlers


async def test_handler_exception_closes_1011_and_is_logged(serve_router, connect, caplog):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with connect(server, "/fail") as ws:
                port = ws.local_address[1]
                await ws.send("fail now")
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
            assert info.value.rcvd.code == 1011
            async with connect(server, "/echo") as ws:
                await ws.send("still serving")
                assert await ws.recv() == "still serving"
    failures = [
        r for r in caplog.records if r.levelno >= logging.ERROR and "/fail" in r.getMessage()
    ]
    assert len(failures) == 1
    assert f"127.0.0.1:{port}" in failures[0].getMessage()
    assert "boom" in caplog.text


async def test_handler_returning_closes_1000(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with connect(server, "/return") as ws:
                assert await ws.recv() == "bye"
                with pytest.raises(ConnectionClosedOK) as info:
                    await ws.recv()
    assert info.value.rcvd.code == 1000


async def test_peer_vanishing_raises_connection_closed_1006_in_handler(serve_router):
    seen: list[int] = []
    done = anyio.Event()
    router = Router()

    @router.route("/wait")
    async def wait(ws, path):
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            seen.append(exc.code)
            seen.append(ws.close_code)
        done.set()

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/wait")
            await done.wait()
    assert seen == [1006, 1006]


async def test_close_from_handler_with_code_and_reason(serve_router, connect):
    router = Router()

    @router.route("/bye")
    async def bye(ws, path):
        await ws.close(4321, "see you")
        assert ws.close_code == 4321

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            async with connect(server, "/bye") as ws:
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4321, "see you")


async def test_ping_from_handler_measures_latency(serve_router, connect):
    router = Router()

    @router.route("/ping")
    async def ping(ws, path):
        waiter = await ws.ping()
        latency = await waiter
        await ws.send(f"{latency >= 0}")
        await ws.recv()

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            async with connect(server, "/ping") as ws:
                assert await ws.recv() == "True"


# Timeouts and keepalive


async def test_keepalive_ping_timeout_closes_1011(serve_router):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(
            make_router(), ping_interval=0.1, ping_timeout=0.2, close_timeout=0.2
        ) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/echo")
                b0, _ = await raw.read_frame()
                assert b0 == 0x89  # a ping, which we never answer
                assert await raw.expect_close() == 1011
                await raw.read_to_eof()  # then the server drops us


async def test_keepalive_pongs_keep_the_connection_open(serve_router, connect):
    with anyio.fail_after(TIMEOUT):
        # A pong may wait behind a pause of the whole test process (a full garbage
        # collection late in the suite): 0.3 s of ping_timeout absorbs it, and an
        # unanswered ping would still close the connection long before the end.
        async with serve_router(make_router(), ping_interval=0.05, ping_timeout=0.3) as server:
            async with connect(server, "/echo", ping_interval=None) as ws:
                await anyio.sleep(1.0)  # many keepalive rounds, answered by the client
                await ws.send("alive")
                assert await ws.recv() == "alive"


async def test_open_timeout_drops_a_slow_handshake(serve_router):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router(), open_timeout=0.2) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n")  # and nothing more
                assert await raw.read_to_eof() == b""


async def test_close_timeout_cuts_an_unanswered_close(serve_router):
    closed = anyio.Event()
    router = Router()

    @router.route("/closer")
    async def closer(ws, path):
        await ws.close(1000)
        closed.set()

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, close_timeout=0.2) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/closer")
                assert await raw.read_frame() == (0x88, struct.pack("!H", 1000))
                # We never answer the close frame: the server gives up and drops us.
                assert await raw.read_to_eof() == b""
                await closed.wait()


# Shutdown


async def test_graceful_shutdown_sends_1001_and_cancels_stuck_handlers(serve_router, connect):
    cancelled = anyio.Event()
    started = anyio.Event()
    router = make_router()

    @router.route("/stuck")
    async def stuck(ws, path):
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, close_timeout=0.3) as server:
            port = server.port
            async with connect(server, "/echo") as ws, connect(server, "/stuck") as stuck_ws:
                await ws.send("before")
                assert await ws.recv() == "before"
                await started.wait()
                server.close()
                with pytest.raises(ConnectionClosedOK) as info:
                    await ws.recv()
                assert info.value.rcvd.code == 1001
                with pytest.raises(ConnectionClosedOK):
                    await stuck_ws.recv()
                await server.wait_closed()
            assert cancelled.is_set()
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)


# Backpressure


async def test_reading_pauses_when_max_queue_messages_wait(serve_router, connect):
    total = 400  # 25 MiB: more than the kernel buffers of a loopback connection hold
    release = anyio.Event()
    router = Router()

    @router.route("/slow")
    async def slow(ws, path):
        await release.wait()
        for count in range(total):
            message = await ws.recv()
            assert int.from_bytes(message[:4], "big") == count
        await ws.send(str(total))

    chunk = os.urandom(65536)
    progress = [0]

    async def flood(ws):
        for i in range(total):
            await ws.send(i.to_bytes(4, "big") + chunk)
            progress[0] += 1

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, max_queue=4) as server:
            async with connect(server, "/slow", compression=None) as ws:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(flood, ws)
                    last = -1
                    while progress[0] != last or not last:  # until the client is blocked
                        last = progress[0]
                        await anyio.sleep(0.2)
                    # Only kernel buffers and max_queue messages are in flight.
                    assert progress[0] < total
                    release.set()
                assert await ws.recv() == str(total)


async def test_send_waits_while_the_peer_does_not_read(serve_router):
    progress = [0]
    finished = anyio.Event()
    router = Router()

    @router.route("/flood")
    async def flood(ws, path):
        chunk = b"x" * 65536
        try:
            for _ in range(1000):  # 64 MiB if nothing held it back
                await ws.send(chunk)
                progress[0] += 1
        finally:
            finished.set()

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, compression=None, close_timeout=0.2) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.open("/flood")
                # Wait until the handler stops making progress.
                last = -1
                while progress[0] != last or not last:
                    last = progress[0]
                    await anyio.sleep(0.2)
                assert not finished.is_set()
                assert progress[0] < 400
            await finished.wait()  # our disconnect unblocks it


# TLS


async def test_tls(serve_router, connect, tls_contexts):
    server_ctx, client_ctx = tls_contexts
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router(), ssl=server_ctx) as server:
            async with connect(server, "/echo", ssl=client_ctx) as ws:
                await ws.send("secret")
                assert await ws.recv() == "secret"


async def test_handshake_key_variants_are_checked(serve_router):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(make_router()) as server:
            async with await RawClient.connect(server.port) as raw:
                await raw.send(handshake("/echo", key="not-base64"))
                head = await raw.read_head()
                assert head.startswith("HTTP/1.1 400 ")
            async with await RawClient.connect(server.port) as raw:
                key = random_key()
                await raw.send(handshake("/echo", key=key))
                head = await raw.read_head()
                assert head.startswith("HTTP/1.1 101 ")
