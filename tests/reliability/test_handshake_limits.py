"""The opening handshake under attack: oversized heads, slow clients, cross-site
WebSocket hijacking, a missing Host. Each bad client gets its answer (or is dropped)
within its limit, and the server keeps serving the others.
"""

from __future__ import annotations

import anyio
import pytest

from tests.reliability.support import Sock, echo_router, echo_works, request
from tests.transports.helpers import random_key

pytestmark = pytest.mark.anyio

TIMEOUT = 10
LIMIT = 2048  # max_header_bytes in these tests


def status_of(head: str) -> int:
    return int(head.split(" ", 2)[1])


async def answer(port: int, data: bytes, *, chunk: int | None = None) -> tuple[int, bytes]:
    """Send ``data`` (in ``chunk``-byte writes), return the status and the body, and
    check that the server then ends the connection."""
    async with await Sock.connect(port) as client:
        try:
            if chunk is None:
                await client.send(data)
            else:
                for i in range(0, len(data), chunk):
                    await client.send(data[i : i + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all
        head = await client.read_head()
        body = await client.read_to_eof()
    return status_of(head), body


OVERSIZED = {
    "request-line": (
        b"GET /echo?" + b"q" * (2 * LIMIT) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        (431, 400, 414),
    ),
    "one-huge-header": (request("/echo", [("X-Big", "a" * (2 * LIMIT))]), (431,)),
    "many-small-headers": (
        request("/echo", [(f"X-H{i}", "v") for i in range(LIMIT // 8)]),
        (431,),
    ),
    "endless-header-line": (b"GET /echo HTTP/1.1\r\nX-Endless: " + b"a" * (4 * LIMIT), (431,)),
}


@pytest.mark.parametrize("chunk", [None, 100], ids=["one-write", "100-byte-writes"])
@pytest.mark.parametrize("case", list(OVERSIZED))
async def test_oversized_request_head_is_refused(serve_router, case, chunk):
    data, statuses = OVERSIZED[case]
    with anyio.fail_after(TIMEOUT):
        async with serve_router(echo_router(), max_header_bytes=LIMIT) as server:
            status, body = await answer(server.port, data, chunk=chunk)
            assert status in statuses, (status, body)
            await echo_works(server.port)


async def test_request_head_just_under_the_limit_is_served(serve_router):
    data = request("/echo")
    pad = LIMIT - len(data) - len("X-Pad: \r\n")
    data = request("/echo", [("X-Pad", "p" * pad)])
    assert len(data) == LIMIT
    with anyio.fail_after(TIMEOUT):
        async with serve_router(echo_router(), max_header_bytes=LIMIT) as server:
            async with await Sock.connect(server.port) as client:
                await client.send(data)
                assert (await client.read_head()).startswith("HTTP/1.1 101 ")


# Slow clients and open_timeout

OPEN_TIMEOUT = 0.4


async def _dropped_after_open_timeout(client: Sock) -> None:
    """The server drops the connection at open_timeout: not much before, not long after."""
    start = anyio.current_time()
    with anyio.fail_after(OPEN_TIMEOUT + 3):
        rest = await client.read_to_eof()
    elapsed = anyio.current_time() - start
    assert b"101" not in rest
    assert OPEN_TIMEOUT * 0.8 <= elapsed, elapsed


async def test_silent_client_is_dropped_after_open_timeout(serve_router):
    async with serve_router(echo_router(), open_timeout=OPEN_TIMEOUT) as server:
        async with await Sock.connect(server.port) as client:
            await _dropped_after_open_timeout(client)
        await echo_works(server.port)


async def test_trickling_request_is_dropped_after_open_timeout(serve_router):
    """Slowloris: a byte of request every 20 ms keeps no connection open past the limit."""
    data = request("/echo", [("X-Slow", "s" * 200)])
    async with serve_router(echo_router(), open_timeout=OPEN_TIMEOUT) as server:
        async with await Sock.connect(server.port) as client:
            dropped = anyio.Event()

            async def trickle() -> None:
                try:
                    for byte in data[:-1]:
                        if dropped.is_set():
                            return
                        await client.send(bytes([byte]))
                        await anyio.sleep(0.02)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            async with anyio.create_task_group() as tg:
                tg.start_soon(trickle)
                await _dropped_after_open_timeout(client)
                dropped.set()
        await echo_works(server.port)


async def test_hook_slower_than_open_timeout_drops_the_handshake(serve_router):
    """A process_request hook stuck past open_timeout: the client is dropped, the
    hook cancelled, other clients served meanwhile."""
    from websockets_routes import Router

    started, cancelled = anyio.Event(), anyio.Event()
    router = echo_router()

    @router.route("/stuck-hook")
    class StuckHook:
        async def process_request(self, path, headers):
            started.set()
            try:
                await anyio.sleep_forever()
            finally:
                cancelled.set()

        async def handle(self, ws, path):
            raise AssertionError("never accepted")

    assert isinstance(router, Router)
    async with serve_router(router, open_timeout=OPEN_TIMEOUT) as server:
        async with await Sock.connect(server.port) as client:
            await client.send(request("/stuck-hook"))
            with anyio.fail_after(TIMEOUT):
                await started.wait()
            await echo_works(server.port)  # served while the hook hangs
            await _dropped_after_open_timeout(client)
        with anyio.fail_after(TIMEOUT):
            await cancelled.wait()


# Cross-site WebSocket hijacking and Host


def origin_router():
    from websockets_routes import Router

    router = Router(origins=["https://app.example"])

    @router.route("/default")
    async def default(ws, path):
        await ws.send("in")

    @router.route("/strict", origins=["https://good.example"])
    async def strict(ws, path):
        await ws.send("in")

    @router.route("/non-browser", origins=["https://good.example", None])
    async def non_browser(ws, path):
        await ws.send("in")

    return router


ORIGIN_CASES = [
    ("/strict", "https://good.example", 101),
    ("/strict", "https://evil.example", 403),
    ("/strict", "https://good.example.evil.example", 403),
    ("/strict", "http://good.example", 403),
    ("/strict", "null", 403),
    ("/strict", None, 403),
    ("/strict", "https://app.example", 403),  # the route's list replaces the router's
    ("/default", "https://app.example", 101),
    ("/default", "https://evil.example", 403),
    ("/default", None, 403),
    ("/non-browser", None, 101),
    ("/non-browser", "https://evil.example", 403),
]


async def test_origins_reject_cross_site_handshakes_with_403(serve_router):
    got = {}
    with anyio.fail_after(TIMEOUT):
        async with serve_router(origin_router()) as server:
            for target, origin, _ in ORIGIN_CASES:
                extra = [] if origin is None else [("Origin", origin)]
                async with await Sock.connect(server.port) as client:
                    await client.send(request(target, extra))
                    head = await client.read_head()
                    got[target, origin] = status_of(head)
                    if got[target, origin] == 403:
                        assert b"rigin" in await client.read_to_eof()
    assert got == {(target, origin): status for target, origin, status in ORIGIN_CASES}


def without_host(host_lines: list[str]) -> bytes:
    lines = [
        "GET /echo HTTP/1.1",
        *host_lines,
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {random_key()}",
        "Sec-WebSocket-Version: 13",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    "host_lines",
    [[], ["Host: a.example", "Host: b.example"]],
    ids=["missing-host", "two-hosts"],
)
async def test_host_header_is_required_once(serve_router, host_lines):
    """RFC 6455 4.1 (client requirement 4) and RFC 9112 3.2: no Host, or more than one
    Host line -> 400."""
    with anyio.fail_after(TIMEOUT):
        async with serve_router(echo_router()) as server:
            status, _ = await answer(server.port, without_host(host_lines))
            assert status == 400
            await echo_works(server.port)
