"""``server.close(drain=N)`` on real sockets, on every server that drains: asyncio,
anyio on asyncio and anyio on trio (the ``serve_router`` fixture, conftest.py).

Times are the running loop's clock (``anyio.current_time()``, the clock the servers
use too); the windows are loose, the machine is noisy: a timer never fires early, so
lower bounds are firm, and upper bounds leave room.
"""

from __future__ import annotations

import math
from contextlib import AsyncExitStack
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from websockets.exceptions import ConnectionClosed

from websockets_routes import Router

pytestmark = pytest.mark.anyio

TIMEOUT = 10
DRAIN = 0.6
CLIENTS = 4


def make_router() -> tuple[Router, dict[str, Any]]:
    seen: dict[str, Any] = {
        "cancelled_at": None,
        "started": anyio.Event(),
        "deciding": anyio.Event(),
        "decide": anyio.Event(),
    }
    router = Router()

    @router.route("/slow-hook")
    class SlowHook:
        async def process_request(self, path, headers):
            seen["deciding"].set()
            await seen["decide"].wait()

        async def handle(self, ws, path):
            async for message in ws:
                await ws.send(message)

    @router.route("/echo")
    async def echo(ws, path):
        async for message in ws:
            await ws.send(message)

    @router.route("/until-bye")
    async def until_bye(ws, path):
        await ws.recv()  # returns by itself: close 1000

    @router.route("/stuck")
    async def stuck(ws, path):
        seen["started"].set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            seen["cancelled_at"] = anyio.current_time()
            raise

    return router, seen


async def open_clients(stack: AsyncExitStack, connect: Any, server: Any, count: int) -> list[Any]:
    clients = []
    for i in range(count):
        ws = await stack.enter_async_context(connect(server, "/echo"))
        await ws.send(f"hello {i}")
        assert await ws.recv() == f"hello {i}"
        clients.append(ws)
    return clients


async def closed_at(ws: Any, results: list[tuple[float, int | None]]) -> None:
    """Wait for the server's close: record when, and its code."""
    try:
        await ws.recv()
    except ConnectionClosed as closed:
        results.append((anyio.current_time(), closed.rcvd.code if closed.rcvd else None))
    else:  # pragma: no cover - a failure
        raise AssertionError("a message came instead of the close")


async def refused(port: int, connect: Any) -> None:
    """A new client's TCP connection is refused."""
    with pytest.raises(OSError):
        async with connect(SimpleNamespace(port=port), "/echo", open_timeout=2):
            pass  # pragma: no cover - a failure


async def test_drain_closes_with_1012_spread_over_the_drain(serve_router, connect):
    router, _ = make_router()
    results: list[tuple[float, int | None]] = []
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server, AsyncExitStack() as stack:
            port = server.port
            clients = await open_clients(stack, connect, server, CLIENTS)
            async with anyio.create_task_group() as tg:
                for ws in clients:
                    tg.start_soon(closed_at, ws, results)
                start = anyio.current_time()
                server.close(drain=DRAIN)
                await refused(port, connect)
                await server.wait_closed()
                done = anyio.current_time()
            with pytest.raises(OSError):
                await anyio.connect_tcp("127.0.0.1", port)
    assert [code for _, code in results] == [1012] * CLIENTS
    moments = sorted(at - start for at, _ in results)
    first, last = moments[0], moments[-1]
    assert first >= DRAIN / CLIENTS * 0.9  # the first after N/n, not at once
    assert last - first >= DRAIN / 2  # spread out...
    assert last >= DRAIN * 0.9  # ...to the end of the drain
    assert last < DRAIN + 3.0
    assert done - start >= DRAIN * 0.9  # wait_closed() waited for the last one


async def test_new_connections_are_refused_while_draining(serve_router, connect):
    router, _ = make_router()
    results: list[tuple[float, int | None]] = []
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server, AsyncExitStack() as stack:
            port = server.port
            (ws,) = await open_clients(stack, connect, server, 1)
            server.close(drain=DRAIN)  # one connection: it closes at the drain's end
            await refused(port, connect)
            with pytest.raises(OSError):
                await anyio.connect_tcp("127.0.0.1", port)
            await ws.send("still served")  # the open connection goes on meanwhile
            assert await ws.recv() == "still served"
            await closed_at(ws, results)
            await server.wait_closed()
    assert [code for _, code in results] == [1012]


async def test_close_without_drain_is_1001_to_all_at_once(serve_router, connect):
    router, _ = make_router()
    results: list[tuple[float, int | None]] = []
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server, AsyncExitStack() as stack:
            clients = await open_clients(stack, connect, server, CLIENTS)
            async with anyio.create_task_group() as tg:
                for ws in clients:
                    tg.start_soon(closed_at, ws, results)
                start = anyio.current_time()
                server.close()
                await server.wait_closed()
    assert [code for _, code in results] == [1001] * CLIENTS
    moments = sorted(at - start for at, _ in results)
    assert moments[-1] - moments[0] < DRAIN / 2  # together, not spread


async def test_a_drain_of_zero_is_1012_to_all_at_once(serve_router, connect):
    router, _ = make_router()
    results: list[tuple[float, int | None]] = []
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server, AsyncExitStack() as stack:
            clients = await open_clients(stack, connect, server, CLIENTS)
            async with anyio.create_task_group() as tg:
                for ws in clients:
                    tg.start_soon(closed_at, ws, results)
                server.close(drain=0)
                await server.wait_closed()
    assert [code for _, code in results] == [1012] * CLIENTS
    moments = sorted(at for at, _ in results)
    assert moments[-1] - moments[0] < DRAIN / 2


async def test_a_handler_that_ends_before_its_moment_closes_1000(serve_router, connect):
    router, _ = make_router()
    results: list[tuple[float, int | None]] = []
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server, connect(server, "/until-bye") as ws:
            start = anyio.current_time()
            server.close(drain=DRAIN)
            await ws.send("bye")
            await closed_at(ws, results)
            await server.wait_closed()
    ((at, code),) = results
    assert code == 1000 and at - start < DRAIN


async def test_a_stuck_handler_gets_close_timeout_from_its_close(serve_router, connect):
    router, seen = make_router()
    results: list[tuple[float, int | None]] = []
    close_timeout = 0.2  # twice that is shorter than the drain: no give-up before it ends
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router, close_timeout=close_timeout) as server:
            async with connect(server, "/stuck") as ws:
                await seen["started"].wait()
                start = anyio.current_time()
                server.close(drain=DRAIN)
                await closed_at(ws, results)
                await server.wait_closed()
    ((at, code),) = results
    assert code == 1012 and at - start >= DRAIN * 0.9
    # Cancelled close_timeout after its connection's close, not after the drain began.
    assert seen["cancelled_at"] is not None
    assert seen["cancelled_at"] - start >= (DRAIN + close_timeout) * 0.9


async def test_a_handshake_decided_during_the_drain_is_served_until_its_moment(
    serve_router, connect
):
    router, seen = make_router()
    results: list[tuple[float, int | None]] = []

    async def client(server: Any) -> None:
        async with connect(server, "/slow-hook") as ws:
            await ws.send("in")
            assert await ws.recv() == "in"
            await closed_at(ws, results)

    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server, anyio.create_task_group() as tg:
            tg.start_soon(client, server)
            await seen["deciding"].wait()
            start = anyio.current_time()
            server.close(drain=DRAIN)
            seen["decide"].set()
            await server.wait_closed()
    ((at, code),) = results
    assert code == 1012 and at - start >= DRAIN * 0.9


@pytest.mark.parametrize("drain", [-1, -0.5, math.inf, math.nan])
async def test_a_bad_drain_is_refused_and_the_server_serves_on(
    serve_router, connect, drain
):
    router, _ = make_router()
    with anyio.fail_after(TIMEOUT):
        async with serve_router(router) as server:
            with pytest.raises(ValueError, match="drain must be a finite number of seconds"):
                server.close(drain=drain)
            async with connect(server, "/echo") as ws:
                await ws.send("served")
                assert await ws.recv() == "served"
