"""What only the asyncio transport has: uvloop, sock=/reuse_port, await serve(),
serve_forever() cancellation, and its connection object's asyncio details."""

from __future__ import annotations

import asyncio
import socket

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from tests.reliability.support import echo_router
from websockets_routes import Router
from websockets_routes.transports.asyncio import Server, serve

pytestmark = pytest.mark.anyio


def url(server: Server, path: str = "/echo") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)
async def test_echo_on_uvloop(anyio_backend):
    import uvloop

    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    with anyio.fail_after(10):
        async with serve(echo_router(), "127.0.0.1", 0) as server:
            async with connect(url(server), proxy=None) as ws:
                for message in ["text", b"bytes", b"x" * 200_000]:
                    await ws.send(message)
                    assert await ws.recv() == message


@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)
async def test_rejection_and_shutdown_on_uvloop(anyio_backend):
    from websockets.exceptions import InvalidStatus

    with anyio.fail_after(10):
        server = await serve(echo_router(), "127.0.0.1", 0, close_timeout=0.5)
        with pytest.raises(InvalidStatus):
            async with connect(url(server, "/nowhere"), proxy=None):
                pass
        async with connect(url(server), proxy=None) as ws:
            server.close()
            with pytest.raises(ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1001
        await server.wait_closed()


async def test_await_serve_then_close():
    with anyio.fail_after(10):
        server = await serve(echo_router(), "127.0.0.1", 0)
        port = server.port
        async with connect(url(server), proxy=None) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
        server.close()
        await server.wait_closed()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)


async def test_sock_option():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    with anyio.fail_after(10):
        async with serve(echo_router(), sock=sock) as server:
            assert server.port == port
            async with connect(f"ws://127.0.0.1:{port}/echo", proxy=None) as ws:
                await ws.send("via sock")
                assert await ws.recv() == "via sock"


async def test_reuse_port_option():
    with anyio.fail_after(10):
        async with serve(echo_router(), "127.0.0.1", 0, reuse_port=True) as first:
            async with serve(echo_router(), "127.0.0.1", first.port, reuse_port=True) as second:
                assert second.port == first.port


async def test_serve_forever_cancelled_shuts_down_gracefully():
    with anyio.fail_after(10):
        server = serve(echo_router(), "127.0.0.1", 0)
        task = asyncio.create_task(server.serve_forever())
        await server.start()  # serve_forever() would start it too; we need the port now
        async with connect(url(server), proxy=None) as ws:
            task.cancel()
            with pytest.raises(ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1001
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.wait_closed()


async def test_shutdown_during_a_hanging_hook():
    router = Router()
    entered = asyncio.Event()

    @router.route("/slow")
    class Slow:
        async def process_request(self, path, headers):
            entered.set()
            await asyncio.sleep(3600)

        async def handle(self, ws, path):  # pragma: no cover
            pass

    with anyio.fail_after(10):
        server = await serve(router, "127.0.0.1", 0, close_timeout=0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET /slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await entered.wait()
        server.close()
        await server.wait_closed()
        assert await reader.read() == b""  # dropped, no 101
        writer.close()
        await writer.wait_closed()


async def test_concurrent_recv_is_an_error():
    router = Router()
    errors: list[BaseException] = []

    @router.route("/two")
    async def two(ws, path):
        first = asyncio.create_task(ws.recv())
        await asyncio.sleep(0)
        try:
            await ws.recv()
        except RuntimeError as exc:
            errors.append(exc)
        await ws.send(await first)

    with anyio.fail_after(10):
        async with serve(router, "127.0.0.1", 0) as server:
            async with connect(url(server, "/two"), proxy=None) as ws:
                await ws.send("one")
                assert await ws.recv() == "one"
    assert len(errors) == 1


async def test_cancelled_recv_loses_no_message():
    router = Router()

    @router.route("/poll")
    async def poll(ws, path):
        received = []
        while len(received) < 50:
            try:
                received.append(await asyncio.wait_for(ws.recv(), 0.0005))
            except asyncio.TimeoutError:
                pass
        await ws.send(",".join(received))

    with anyio.fail_after(10):
        async with serve(router, "127.0.0.1", 0) as server:
            async with connect(url(server, "/poll"), proxy=None) as ws:
                for i in range(50):
                    await ws.send(str(i))
                    await asyncio.sleep(0.0003)
                assert await ws.recv() == ",".join(str(i) for i in range(50))


def test_bad_options():
    with pytest.raises(ValueError, match="compression"):
        serve(echo_router(), "127.0.0.1", 0, compression="br")
    with pytest.raises(TypeError):
        serve(echo_router(), "127.0.0.1", 0, max_sise=10)
    with pytest.raises(TypeError, match="Router"):
        serve(object(), "127.0.0.1", 0)


async def test_port_0_on_several_addresses_gives_them_one_port():
    """server.port must reach every address served: asyncio alone binds each to a
    port of its own when asked for port 0."""
    hosts = ["127.0.0.1", "127.0.0.2"]  # both loopback on Linux
    async with serve(echo_router(), hosts, 0) as server:
        assert len(server.sockets) == 2
        assert {sock.getsockname()[1] for sock in server.sockets} == {server.port}
        for host in hosts:
            async with connect(f"ws://{host}:{server.port}/echo", proxy=None) as ws:
                await ws.send(host)
                assert await ws.recv() == host
