"""What only the anyio transport has to prove, on asyncio and trio: structured
concurrency (no task outlives the server, cancellation tears everything down), the
single keepalive timer task, TLS with concurrent send/receive, and its connection
object's details. Shared behaviour is in tests/transports (parametrized over it)."""

from __future__ import annotations

import gc
import sys
import weakref

import anyio
import pytest

from tests.reliability.support import echo_router
from tests.transports.helpers import RawClient, frame
from websockets_routes import ConnectionClosed, Router
from websockets_routes.transports.anyio import Server, serve
from websockets_routes.transports.anyio import connection as anyio_connection

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.anyio

TIMEOUT = 10


def tasks() -> int:
    return len(anyio.get_running_tasks())


async def test_no_task_outlives_the_server(connect):
    before = tasks()
    with anyio.fail_after(TIMEOUT):
        async with serve(echo_router(), "127.0.0.1", 0) as server:
            async with connect(server) as a, connect(server) as b:
                await a.send("a")
                await b.send("b")
                assert (await a.recv(), await b.recv()) == ("a", "b")
                # Per open connection: its own task and its reader, nothing more
                # (keepalive is one timer task for the whole server).
                assert len(server.connections) == 2
            server.close()
            await server.wait_closed()
            assert tasks() == before
    assert tasks() == before


async def test_cancelling_the_block_tears_everything_down(connect):
    before = tasks()
    started = anyio.Event()
    router = Router()

    @router.route("/hang")
    async def hang(ws, path):
        started.set()
        await anyio.sleep_forever()

    with anyio.fail_after(TIMEOUT):
        with anyio.CancelScope() as scope:
            async with serve(router, "127.0.0.1", 0) as server:
                port = server.port
                raw = await RawClient.connect(port)
                await raw.open("/hang")
                await started.wait()
                scope.cancel()
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        # The handler was cancelled and the peer's connection dropped.
        assert await raw.read_to_eof() == b""
        await raw.stream.aclose()
    assert tasks() == before
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)


async def test_an_error_in_the_block_is_not_wrapped_in_a_group():
    with anyio.fail_after(TIMEOUT):
        with pytest.raises(KeyError, match="mine"):
            async with serve(echo_router(), "127.0.0.1", 0):
                raise KeyError("mine")


class Fatal(BaseException):
    """Not an Exception: a connection's task does not catch it."""


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


async def test_a_base_exception_in_a_handler_ends_the_server_and_comes_out():
    """As a task group does with a failing child: the server stops, its other
    connections are cancelled, and the error reaches the ``async with`` block."""
    before = tasks()
    router = Router()
    other_started = anyio.Event()
    other_cancelled = []

    @router.route("/wait")
    async def wait(ws, path):
        other_started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            other_cancelled.append(True)
            raise

    @router.route("/fatal")
    async def fatal(ws, path):
        raise Fatal("from a handler")

    with anyio.fail_after(TIMEOUT):
        with pytest.raises(BaseException) as caught:
            async with serve(router, "127.0.0.1", 0) as server:
                waiting = await RawClient.connect(server.port)
                await waiting.open("/wait")
                await other_started.wait()
                raw = await RawClient.connect(server.port)
                await raw.open("/fatal")
                await anyio.sleep_forever()
        await waiting.stream.aclose()
        await raw.stream.aclose()
        await server.wait_closed()  # the server ended: nothing left to wait for
    assert [type(error) for error in leaves(caught.value)] == [Fatal]
    assert other_cancelled == [True]
    assert tasks() == before


async def test_a_finished_connection_is_freed_without_the_garbage_collector(connect):
    """Nothing of an ended connection waits for a collection: reference cycles would
    keep its objects (buffers, the request, its task's frames) until one runs, and
    make collections of every generation as frequent as connections."""
    refs: list[weakref.ref] = []
    handled = anyio.Event()
    router = Router()

    @router.route("/echo")
    async def echo(ws, path):
        refs.append(weakref.ref(ws))
        async for message in ws:
            await ws.send(message)
        handled.set()

    gc.collect()
    gc.disable()
    try:
        with anyio.fail_after(TIMEOUT):
            async with serve(router, "127.0.0.1", 0) as server:
                async with connect(server) as ws:
                    await ws.send("x")
                    assert await ws.recv() == "x"
                await handled.wait()
                await anyio.wait_all_tasks_blocked()  # the connection's task has ended
                assert not server.connections
                assert refs and refs[0]() is None
    finally:
        gc.enable()


async def test_serve_forever_returns_after_close_from_another_task(connect):
    with anyio.fail_after(TIMEOUT):
        async with serve(echo_router(), "127.0.0.1", 0) as server:
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve_forever)
                async with connect(server) as ws:
                    await ws.send("x")
                    assert await ws.recv() == "x"
                server.close()
            # serve_forever() returned, so the task group could end.
            assert not server.is_serving()


async def test_one_timer_task_pings_every_connection():
    router = Router()
    seen: list[int] = []

    @router.route("/idle")
    async def idle(ws, path):
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            seen.append(exc.code)

    with anyio.fail_after(TIMEOUT):
        async with serve(router, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=0.1) as server:
            clients = [await RawClient.connect(server.port) for _ in range(5)]
            for raw in clients:
                await raw.open("/idle")
            for raw in clients:
                b0, payload = await raw.read_frame()
                assert b0 == 0x89  # a keepalive ping
                await raw.send(frame(0xA, payload))  # answered: stays open
            for raw in clients:
                assert (await raw.read_frame())[0] == 0x89  # pinged again
            # Now nobody answers: every connection is closed with 1011.
            for raw in clients:
                assert await raw.expect_close() == 1011
                await raw.stream.aclose()
    assert seen == [1011] * 5


async def test_tls_with_concurrent_send_and_receive(connect, tls_contexts):
    server_ctx, client_ctx = tls_contexts
    router = Router()
    count = 200

    @router.route("/duplex")
    async def duplex(ws, path):
        # A task sends while the handler reads: TLS records flow both ways at once.
        async def talk():
            for i in range(count):
                await ws.send(f"s{i}" * 50)

        received = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(talk)
            for _ in range(count):
                received.append(await ws.recv())
        await ws.send(f"got {len(received)}")

    with anyio.fail_after(TIMEOUT):
        async with serve(router, "127.0.0.1", 0, ssl=server_ctx) as server:
            async with connect(server, "/duplex", ssl=client_ctx) as ws:

                async def send_all():
                    for i in range(count):
                        await ws.send(f"c{i}" * 50)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(send_all)
                    for i in range(count):
                        assert await ws.recv() == f"s{i}" * 50
                assert await ws.recv() == f"got {count}"


async def test_tls_connections_are_read_by_a_reader_task_from_the_start(
    connect, tls_contexts, monkeypatch
):
    """A TLS read may write TLS records of its own, so a TLS connection is never read
    in the handler's recv() (which a timeout may cancel half-way): its reader task
    runs from the start, and answers a ping while the handler is busy elsewhere,
    long before a look at the handler would start it."""
    monkeypatch.setattr(anyio_connection, "_READER_AFTER", 5.0)
    server_ctx, client_ctx = tls_contexts
    release = anyio.Event()
    router = Router()

    @router.route("/busy")
    async def busy(ws, path):
        await release.wait()  # not in recv()
        await ws.send("done")

    async with serve(router, "127.0.0.1", 0, ssl=server_ctx) as server:
        async with connect(server, "/busy", ssl=client_ctx, ping_interval=None) as ws:
            with anyio.fail_after(2):  # the pong, from the server's reader task
                pong = await ws.ping()  # a future on asyncio, an Event on trio
                await (pong.wait() if hasattr(pong, "wait") else pong)
            release.set()
            with anyio.fail_after(TIMEOUT):
                assert await ws.recv() == "done"


@pytest.mark.parametrize("poll_for", [0.0005, 0])
async def test_cancelled_recv_loses_no_message(connect, poll_for):
    """recv() under timeouts that keep cancelling it (even before it can wait: 0)
    still gets every message in order."""
    router = Router()

    @router.route("/poll")
    async def poll(ws, path):
        received = []
        while len(received) < 50:
            with anyio.move_on_after(poll_for):
                received.append(await ws.recv())
        await ws.send(",".join(received))

    with anyio.fail_after(TIMEOUT):
        async with serve(router, "127.0.0.1", 0) as server:
            async with connect(server, "/poll") as ws:
                for i in range(50):
                    await ws.send(str(i))
                    await anyio.sleep(0.0003)
                assert await ws.recv() == ",".join(str(i) for i in range(50))


async def test_concurrent_recv_is_an_error(connect):
    router = Router()
    errors: list[BaseException] = []

    @router.route("/two")
    async def two(ws, path):
        got = []

        async def first():
            got.append(await ws.recv())

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await anyio.sleep(0.01)  # the first recv() is waiting: nothing was sent yet
            try:
                await ws.recv()
            except RuntimeError as exc:
                errors.append(exc)
            await ws.send("ready")
        await ws.send(f"done {got[0]}")

    with anyio.fail_after(TIMEOUT):
        async with serve(router, "127.0.0.1", 0) as server:
            async with connect(server, "/two") as ws:
                assert await ws.recv() == "ready"
                await ws.send("one")
                assert await ws.recv() == "done one"
    assert len(errors) == 1


async def test_shutdown_during_a_hanging_hook():
    router = Router()
    entered = anyio.Event()

    @router.route("/slow")
    class Slow:
        async def process_request(self, path, headers):
            entered.set()
            await anyio.sleep_forever()

        async def handle(self, ws, path):  # pragma: no cover - never accepted
            pass

    with anyio.fail_after(TIMEOUT):
        async with serve(router, "127.0.0.1", 0, close_timeout=0.2) as server:
            raw = await RawClient.connect(server.port)
            await raw.send(
                b"GET /slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            await entered.wait()
            server.close()
            await server.wait_closed()
            assert await raw.read_to_eof() == b""  # dropped, no 101
            await raw.stream.aclose()


async def test_request_being_read_at_shutdown_is_dropped():
    with anyio.fail_after(TIMEOUT):
        async with serve(echo_router(), "127.0.0.1", 0, close_timeout=5) as server:
            raw = await RawClient.connect(server.port)
            await raw.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n")  # and nothing more
            await anyio.sleep(0.05)
            server.close()
            with anyio.fail_after(1):  # not close_timeout: dropped at once
                await server.wait_closed()
            assert await raw.read_to_eof() == b""
            await raw.stream.aclose()


async def test_connection_object_surface(connect):
    router = Router()
    report: dict = {}
    closed = anyio.Event()

    @router.route("/look/{x}")
    async def look(ws, path):
        report.update(
            path=str(ws.path),
            x=path.params["x"],
            method=ws.request.method,
            remote=ws.remote_address[0],
            local=ws.local_address[0],
            state=ws.state.name,
            close_code=ws.close_code,
        )
        await ws.send("ok")
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            report["closed"] = (exc.code, ws.close_code, ws.close_reason)
        closed.set()

    with anyio.fail_after(TIMEOUT):
        async with serve(router, "127.0.0.1", 0) as server:
            async with connect(server, "/look/1?q") as ws:
                assert await ws.recv() == "ok"
                close = getattr(ws, "aclose", None) or ws.close  # trio / asyncio client
                await close(4002, "bye")
            await closed.wait()
    assert report == {
        "path": "/look/1?q",
        "x": "1",
        "method": "GET",
        "remote": "127.0.0.1",
        "local": "127.0.0.1",
        "state": "OPEN",
        "close_code": None,
        "closed": (4002, 4002, "bye"),
    }


async def test_port_and_listeners():
    async with serve(echo_router(), "127.0.0.1", 0) as server:
        assert isinstance(server.port, int) and server.port > 0
        assert server.sockets[0].getsockname()[1] == server.port
        assert server.is_serving()
    assert not server.is_serving()


async def test_asyncio_and_trio_run_the_same_connection_code(anyio_backend_name):
    """One connection code for both backends; below it, a plain TCP connection is read
    by what each loop does best through its public API: an asyncio protocol on
    asyncio (LoopStream), the socket and anyio.wait_readable on trio (SocketIO)."""
    seen = []
    router = Router()

    @router.route("/which")
    async def which(ws, path):
        seen.append((type(ws).__name__, type(ws.stream).__name__))

    async with serve(router, "127.0.0.1", 0) as server:
        raw = await RawClient.connect(server.port)
        await raw.open("/which")
        await raw.expect_close()
        await raw.stream.aclose()
    stream = "LoopStream" if anyio_backend_name == "asyncio" else "SocketIO"
    assert seen == [("Connection", stream)]


def test_bad_options():
    with pytest.raises(ValueError, match="compression"):
        serve(echo_router(), "127.0.0.1", 0, compression="br")
    with pytest.raises(TypeError):
        serve(echo_router(), "127.0.0.1", 0, max_sise=10)
    with pytest.raises(ValueError, match="max_queue"):
        serve(echo_router(), "127.0.0.1", 0, max_queue=0)
    with pytest.raises(ValueError, match="ping_interval"):
        serve(echo_router(), "127.0.0.1", 0, ping_interval=-1)
    with pytest.raises(TypeError, match="ssl"):
        serve(echo_router(), "127.0.0.1", 0, ssl=True)
    with pytest.raises(TypeError, match="Router"):
        Server(object(), "127.0.0.1", 0)


@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)
async def test_echo_on_uvloop(anyio_backend, connect):
    import asyncio

    import uvloop

    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    router = Router()

    @router.route("/echo")
    async def echo(ws, path):
        async for message in ws:
            await ws.send(message)

    with anyio.fail_after(TIMEOUT):
        async with serve(router, "127.0.0.1", 0) as server:
            async with connect(server) as ws:
                for message in ["text", b"bytes", b"x" * 300_000]:
                    await ws.send(message)
                    assert await ws.recv() == message


# On trio, anyio's listener is trio's, which retries EMFILE itself (without the
# stdlib accept() patched here); this is our accept loop on asyncio.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_accept_running_out_of_descriptors_is_retried_not_fatal(connect, monkeypatch, caplog):
    """accept() failing with EMFILE (out of descriptors) is logged and retried after
    a pause; the server then accepts the connection that was waiting."""
    import errno
    import socket

    real_accept = socket.socket.accept
    failures = [0]

    def accept(self):
        if failures[0] < 2:
            failures[0] += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_accept(self)

    with anyio.fail_after(TIMEOUT):
        async with serve(echo_router(), "127.0.0.1", 0) as server:
            monkeypatch.setattr(socket.socket, "accept", accept)
            async with connect(server) as ws:
                await ws.send("still serving")
                assert await ws.recv() == "still serving"
            monkeypatch.undo()
    assert failures[0] == 2
    assert caplog.text.count("accept() failed") >= 2
