"""Handlers and hooks that fail, hang or return early: each connection ends cleanly,
the server serves on, a log line names the route and the peer; credentials sent by
the client (Authorization, Cookie) never reach the logs.
"""

from __future__ import annotations

import logging
import struct

import anyio
import pytest

from tests.reliability.support import Sock, client_frame, echo_works, request
from websockets_routes import ConnectionClosed, Router

pytestmark = pytest.mark.anyio

TIMEOUT = 10
AUTH = "Bearer SECRET-AUTH-7f3a"
COOKIE = "session=SECRET-COOKIE-91bc"
QUERY_SECRET = "SECRET-QUERY-55e0"
SECRETS = ("SECRET-AUTH-7f3a", "SECRET-COOKIE-91bc")
CREDENTIALS = [("Authorization", AUTH), ("Cookie", COOKIE)]


def failing_router() -> Router:
    router = Router(origins=["https://app.example", None])

    @router.route("/echo", name="echo")
    async def echo(ws, path):
        async for message in ws:
            await ws.send(message)

    @router.route("/boom/{id}", name="boom")
    async def boom(ws, path):
        raise RuntimeError(f"handler failed on {ws.request!r} {path!r}")

    @router.route("/group")
    async def group(ws, path):
        async with anyio.create_task_group() as tg:

            async def fail() -> None:
                raise ValueError("inside a task group")

            tg.start_soon(fail)
            await anyio.sleep_forever()

    @router.route("/bad-hook", name="bad-hook")
    class BadHook:
        async def process_request(self, path, headers):
            raise LookupError(f"hook failed on {path!r}")

        async def handle(self, ws, path):
            raise AssertionError("never accepted")

    @router.route("/returns")
    async def returns(ws, path):
        await ws.send("bye")

    @router.route("/leaves-unread")
    async def leaves_unread(ws, path):
        await ws.recv()  # returns with the peer's other messages still queued

    @router.route("/peer-left")
    async def peer_left(ws, path):
        await ws.recv()  # raises ConnectionClosed: not a failure of the handler

    @router.http("/page")
    async def page(request):
        raise OSError("the HTTP view failed")

    return router


async def answer_close(client: Sock) -> tuple[int | None, str]:
    """Read up to the server's close frame, answer it, read to EOF; its code/reason."""
    code_reason = await client.expect_close()
    await client.send(client_frame(0x8, struct.pack("!H", code_reason[0] or 1000)))
    assert await client.read_to_eof() == b""
    return code_reason


async def close_normally(client: Sock) -> int | None:
    await client.send(client_frame(0x8, struct.pack("!H", 1000)))
    code, _ = await client.expect_close()
    await client.read_to_eof()
    return code


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_handler_exception_closes_1011_logs_route_and_peer(serve_router, server_log):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(failing_router()) as server:
            async with await Sock.connect(server.port) as client:
                await client.open("/boom/1")
                assert await answer_close(client) == (1011, "")
                peer = f"127.0.0.1:{client.port}"
            await echo_works(server.port)
    (record,) = error_records(server_log)
    message = record.getMessage()
    assert "boom" in message and peer in message, message
    assert record.exc_info is not None and "handler failed" in str(record.exc_info[1])


async def test_exception_group_from_a_handler_closes_1011(serve_router, server_log):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(failing_router()) as server:
            async with await Sock.connect(server.port) as client:
                await client.open("/group")
                assert await answer_close(client) == (1011, "")
            await echo_works(server.port)
    assert len(error_records(server_log)) == 1


async def test_hook_exception_is_500_logs_route_and_peer(serve_router, server_log):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(failing_router()) as server:
            async with await Sock.connect(server.port) as client:
                await client.send(request("/bad-hook"))
                assert (await client.read_head()).startswith("HTTP/1.1 500 ")
                await client.read_to_eof()
                port = client.port
            await echo_works(server.port)
    (record,) = error_records(server_log)
    message = record.getMessage()
    assert "bad-hook" in message and "127.0.0.1" in message and str(port) in message, message


async def test_handler_returning_without_closing_closes_1000(serve_router, server_log):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(failing_router()) as server:
            async with await Sock.connect(server.port) as client:
                await client.open("/returns")
                assert await client.read_frame() == (0x81, b"bye")
                assert await answer_close(client) == (1000, "")
    assert not error_records(server_log)


async def test_handler_returning_with_a_full_queue_completes_the_closing_handshake(
    serve_router, server_log
):
    """The handler returns with max_queue messages unread (reading paused): its close
    frame goes out, and the peer's answering close frame must still be read, so the
    closing handshake ends at once rather than being cut at close_timeout."""
    with anyio.fail_after(TIMEOUT):
        async with serve_router(failing_router(), max_queue=4, close_timeout=2) as server:
            async with await Sock.connect(server.port) as client:
                await client.open("/leaves-unread")
                await client.send(client_frame(0x1, b"one") + client_frame(0x1, b"two") * 20)
                assert await client.expect_close() == (1000, "")
                await client.send(client_frame(0x8, struct.pack("!H", 1000)))
                assert await client.eof_within(1.0) < 1.0
    assert not error_records(server_log)


async def test_peer_leaving_is_not_a_handler_failure(serve_router, server_log):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(failing_router()) as server:
            client = await Sock.connect(server.port)
            await client.open("/peer-left")
            client.abort()  # a reset, no close frame
            await echo_works(server.port)
    assert not error_records(server_log)


async def test_handler_that_never_returns_is_cancelled_at_shutdown(serve_router):
    """The peer closes; the handler ignores everything. The connection itself ends
    (closing handshake, TCP closed); server.close() cancels the handler after
    close_timeout and wait_closed() returns."""
    started, cancelled = anyio.Event(), anyio.Event()
    router = Router()

    @router.route("/forever")
    async def forever(ws, path):
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    close_timeout = 0.3
    async with serve_router(router, close_timeout=close_timeout) as server:
        async with await Sock.connect(server.port) as client:
            await client.open("/forever")
            await started.wait()
            with anyio.fail_after(TIMEOUT):
                assert await close_normally(client) == 1000
        assert not cancelled.is_set()
        start = anyio.current_time()
        server.close()
        with anyio.fail_after(close_timeout + 2):
            await server.wait_closed()
        assert cancelled.is_set()
        assert anyio.current_time() - start >= close_timeout * 0.8


async def test_http_view_exception_is_500(serve_router, server_log):
    with anyio.fail_after(TIMEOUT):
        async with serve_router(failing_router()) as server:
            async with await Sock.connect(server.port) as client:
                await client.send(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await client.read_head()).startswith("HTTP/1.1 500 ")
                await client.read_to_eof()
            await echo_works(server.port)
    assert len(error_records(server_log)) == 1


# Credentials never logged


async def test_authorization_and_cookie_values_never_reach_the_logs(serve_router, server_log):
    """Every path that logs (handler and hook failures, HTTP view failure, rejected
    handshakes, timeouts, shutdown), at DEBUG level, with credentials in the request."""
    router = failing_router()

    @router.route("/stuck-hook")
    class StuckHook:
        async def process_request(self, path, headers):
            await anyio.sleep_forever()

        async def handle(self, ws, path):
            pass

    @router.route("/stuck")
    async def stuck(ws, path):
        await anyio.sleep_forever()

    async def exchange(data: bytes, *, read: bool = True) -> None:
        async with await Sock.connect(server.port) as client:
            await client.send(data)
            if read:
                await client.read_to_eof()

    creds = CREDENTIALS
    with anyio.fail_after(TIMEOUT):
        async with serve_router(
            router,
            open_timeout=0.3,
            ping_interval=0.1,
            ping_timeout=0.1,
            close_timeout=0.2,
            max_header_bytes=1024,
        ) as server:
            await exchange(request("/boom/1", creds))  # handler failure, 1011
            await exchange(request("/group", creds))
            await exchange(request("/bad-hook", creds))  # hook failure, 500
            await exchange(request("/nowhere", creds))  # 404
            await exchange(request("/echo", [*creds, ("Origin", "https://evil.example")]))
            await exchange(request("/echo", [*creds, ("Sec-WebSocket-Version", "8")]))
            await exchange(request("/echo", [*creds, ("X-Pad", "p" * 2000)]))  # 431
            await exchange(
                f"GET /page HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
                f"Cookie: {COOKIE}\r\n\r\n".encode()
            )
            await exchange(request("/stuck-hook", creds))  # open_timeout
            await exchange(request("/echo", creds)[:-2] + b"X-Slow: 1")  # open_timeout
            await exchange(request("/echo", creds))  # keepalive timeout, 1011
            async with await Sock.connect(server.port) as client:
                await client.open("/stuck", creds)
                server.close()  # 1001, then the handler is cancelled
                await client.read_to_eof()
            await server.wait_closed()
    assert server_log.records, "nothing was logged at all"
    for record in server_log.records:
        text = record.getMessage() + repr(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            text += repr(record.exc_info[1])
        for secret in SECRETS:
            assert secret not in text, f"{record.name}: {record.getMessage()}"
    for secret in SECRETS:
        assert secret not in server_log.text


async def test_query_string_never_reaches_the_logs(serve_router, server_log):
    """Beyond issue 8's letter (which names Authorization and Cookie): a token in the
    query string is a credential too, and core/session.py's route_name() promises
    "never the query string". Handler, hook and HTTP view failures with ?token=..."""
    with anyio.fail_after(TIMEOUT):
        async with serve_router(failing_router()) as server:
            for target in ("/boom/1", "/bad-hook", "/group"):
                async with await Sock.connect(server.port) as client:
                    await client.send(request(f"{target}?token={QUERY_SECRET}"))
                    head = await client.read_head()
                    if head.startswith("HTTP/1.1 101 "):
                        await answer_close(client)
            async with await Sock.connect(server.port) as client:
                await client.send(
                    f"GET /page?token={QUERY_SECRET} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                )
                await client.read_head()
                await client.read_to_eof()
    assert len(error_records(server_log)) == 4
    for record in server_log.records:
        assert QUERY_SECRET not in record.getMessage(), record.getMessage()


async def test_handler_blocked_in_recv_sees_connection_closed(serve_router):
    """The peer vanishes (reset): the handler's recv() raises ConnectionClosed(1006)."""
    seen: list[int] = []
    done = anyio.Event()
    router = Router()

    @router.route("/wait")
    async def wait(ws, path):
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            seen.append(exc.code)
        finally:
            done.set()

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            client = await Sock.connect(server.port)
            await client.open("/wait")
            client.abort()
            await done.wait()
    assert seen == [1006]
