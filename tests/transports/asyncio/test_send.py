"""Large messages from the asyncio server arrive as sent, on asyncio's own loop and on
uvloop, over TCP and TLS, with and without permessage-deflate, and a handler that
sends them faster than the client reads waits for it.

On uvloop over TCP, a payload of ``core.frames.SEPARATE_PAYLOAD_FROM`` bytes or more
leaves after its header as a second buffer (``transport.writelines``); these tests
send more than the socket buffers hold, so part of it waits in the loop's transport.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

from websockets_routes import Router
from websockets_routes.core.frames import SEPARATE_PAYLOAD_FROM
from websockets_routes.transports.asyncio import serve

pytestmark = pytest.mark.anyio

LOOPS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
]


def messages() -> list[str | bytes]:
    """Each length class around the split, as bytes and as text, different every time."""
    rng = random.Random(18)
    out: list[str | bytes] = []
    for n in (125, SEPARATE_PAYLOAD_FROM - 1, SEPARATE_PAYLOAD_FROM, 65535, 65536, 300_000):
        out.append(rng.randbytes(n))
        out.append("".join(rng.choices("aé€😀", k=n // 2)))
    return out * 2


MESSAGES = messages()
BEFORE = b"before" * 20_000


def burst_router() -> Router:
    router = Router()

    @router.route("/burst")
    async def burst(ws: Any, path: Any) -> None:
        for message in MESSAGES:
            await ws.send(message)
        buffer = bytearray(BEFORE)
        await ws.send(buffer)
        buffer[:] = b"after!" * 20_000  # the caller's buffer is theirs again at once
        async for _ in ws:
            pass

    return router





@pytest.mark.parametrize("anyio_backend", LOOPS)
@pytest.mark.parametrize("compression", [None, "deflate"])
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_large_messages_arrive_intact(
    anyio_backend: Any, compression: str | None, tls: bool, tls_contexts: Any
) -> None:
    server_ssl, client_ssl = tls_contexts if tls else (None, None)
    scheme = "wss" if tls else "ws"
    with anyio.fail_after(20):
        async with serve(burst_router(), "127.0.0.1", 0, ssl=server_ssl) as server:
            async with connect(
                f"{scheme}://127.0.0.1:{server.port}/burst",
                proxy=None,
                ssl=client_ssl,
                compression=compression,
                max_size=None,
            ) as ws:
                for expected in MESSAGES:
                    assert await ws.recv() == expected
                assert await ws.recv() == BEFORE


@pytest.mark.parametrize("anyio_backend", LOOPS)
async def test_a_sender_waits_for_a_slow_reader(anyio_backend: Any) -> None:
    router = Router()
    message = random.Random(1).randbytes(65536)
    count = 200  # 12.8 MiB: far more than the socket buffers and the client's queue
    backlog: list[int] = []  # bytes the transport still held after each send

    @router.route("/flood")
    async def flood(ws: Any, path: Any) -> None:
        for _ in range(count):
            await ws.send(message)
            backlog.append(ws.transport.get_write_buffer_size())
        async for _ in ws:
            pass

    with anyio.fail_after(20):
        async with serve(router, "127.0.0.1", 0) as server:
            async with connect(
                f"ws://127.0.0.1:{server.port}/flood", proxy=None, max_queue=4
            ) as ws:
                await anyio.wait_all_tasks_blocked()  # the client reads nothing meanwhile
                assert 0 < len(backlog) < count  # the handler waits in send()
                for _ in range(count):
                    assert await ws.recv() == message
    # Past asyncio's high-water mark (64 KiB) a send waits until the transport drains.
    assert len(backlog) == count and max(backlog) <= 65536
