"""Real ASGI servers on 127.0.0.1 for the ASGI tests, and a tiny HTTP client."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import h11

# uvicorn's three WebSocket implementations, and hypercorn (wsproto inside).
UVICORN_WS = ["websockets", "wsproto", "websockets-sansio"]
SERVERS = [f"uvicorn-{ws}" for ws in UVICORN_WS] + ["hypercorn"]


@asynccontextmanager
async def run_uvicorn(app: Any, ws: str) -> AsyncIterator[int]:
    """Serve ``app`` with uvicorn on port 0; yield the bound port."""
    import uvicorn

    # log_config=None: leave the test process's logging alone (caplog sees uvicorn's).
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws=ws, lifespan="on", log_config=None, log_level="warning"
    )
    server = uvicorn.Server(config)
    async with _serving(server.serve) as done:
        # uvicorn exposes a flag, not an event: poll it, with a deadline.
        with anyio.fail_after(10):
            while not server.started:
                if done.is_set():
                    raise RuntimeError("uvicorn stopped before it started")
                await anyio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield port
        finally:
            server.should_exit = True
            await _wait_stopped(done)


@asynccontextmanager
async def _serving(serve: Any) -> AsyncIterator[anyio.Event]:
    """Run ``serve()`` in a task; yield an event set when it returns."""
    done = anyio.Event()

    async def run() -> None:
        try:
            await serve()
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        yield done


async def _wait_stopped(done: anyio.Event) -> None:
    # Shielded, so that a failing test still shuts the server down gracefully instead
    # of cancelling it mid-lifespan (which the server would log as an error).
    with anyio.CancelScope(shield=True), anyio.fail_after(15):
        await done.wait()


@asynccontextmanager
async def run_hypercorn(app: Any, backend: str = "asyncio") -> AsyncIterator[int]:
    """Serve ``app`` with hypercorn under ``backend`` (asyncio or trio); yield the port.

    hypercorn binds what ``config.bind`` names and does not report a port-0 bind, so
    bind here and hand hypercorn a duplicate descriptor as ``fd://N``; it owns and
    closes that one.
    """
    from hypercorn.config import Config

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        fd = os.dup(sock.fileno())
    config = Config()
    config.bind = [f"fd://{fd}"]
    config.errorlog = logging.getLogger("hypercorn.error")
    config.accesslog = None
    config.graceful_timeout = 2
    if backend == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve
    stop = anyio.Event()
    async with _serving(lambda: serve(app, config, shutdown_trigger=stop.wait)) as done:
        try:
            yield port
        finally:
            stop.set()
            await _wait_stopped(done)


@asynccontextmanager
async def run_server(kind: str, app: Any) -> AsyncIterator[int]:
    if kind.startswith("uvicorn-"):
        async with run_uvicorn(app, kind.removeprefix("uvicorn-")) as port:
            yield port
    elif kind == "hypercorn":
        async with run_hypercorn(app) as port:
            yield port
    else:
        raise ValueError(kind)


async def http_request(
    port: int, method: str, target: str, headers: list[tuple[str, str]] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a fresh connection: (status, headers, body)."""
    conn = h11.Connection(h11.CLIENT)
    all_headers = [("Host", f"127.0.0.1:{port}"), ("Connection", "close"), *(headers or [])]
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(conn.send(h11.Request(method=method, target=target, headers=all_headers)))
        await stream.send(conn.send(h11.EndOfMessage()))
        response = None
        body = b""
        with anyio.fail_after(10):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        data = await stream.receive()
                    except anyio.EndOfStream:
                        data = b""
                    conn.receive_data(data)
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
    assert response is not None
    found = {name.decode().lower(): value.decode("latin-1") for name, value in response.headers}
    return response.status_code, found, body
