"""An echo router for the Autobahn|Testsuite fuzzing client.

``python autobahn/echo_server.py [--transport T] [--port P]`` serves every path on
127.0.0.1 with a view that echoes each message, permessage-deflate on and a 16 MiB
message limit (the 9.* cases send up to 16 MiB). It prints ``READY <port>`` once
listening and runs until SIGTERM/SIGINT or the end of its standard input.

Transports: ``asyncio`` (ours), ``anyio-asyncio``, ``anyio-trio`` (ours on anyio),
``websockets-hook`` (``router.serve()`` on the websockets library), ``websockets``
(a plain websockets 17 echo server, to check the harness against known results) and
``custom`` (examples/custom_transport.py, the server written on the public core API).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from typing import Any

HOST = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_SIZE = 16 * 2**20
TRANSPORTS = ["asyncio", "anyio-asyncio", "anyio-trio", "websockets-hook", "websockets", "custom"]


def echo_router() -> Any:
    from websockets_routes import Router

    router = Router()

    async def echo(ws: Any, path: Any) -> None:
        async for message in ws:
            await ws.send(message)

    router.route("/")(echo)
    router.route("/{rest:.*}")(echo)
    return router


async def plain_echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


def bound_port(server: Any) -> int:
    port = getattr(server, "port", None)
    if isinstance(port, int):
        return port
    return int(server.sockets[0].getsockname()[1])


@contextlib.asynccontextmanager
async def serve(transport: str, port: int) -> Any:
    if transport == "asyncio":
        from websockets_routes.transports.asyncio import serve as serve_asyncio

        async with serve_asyncio(echo_router(), HOST, port, max_size=MAX_SIZE) as server:
            yield server.port
    elif transport in ("anyio-asyncio", "anyio-trio"):
        from websockets_routes.transports.anyio import serve as serve_anyio

        async with serve_anyio(echo_router(), HOST, port, max_size=MAX_SIZE) as server:
            yield server.port
    elif transport == "custom":
        sys.path.insert(0, ROOT)  # examples/ is not installed
        from examples.custom_transport import serve as serve_custom

        async with serve_custom(echo_router(), HOST, port, max_size=MAX_SIZE) as server:
            yield server.port
    elif transport == "websockets-hook":
        async with echo_router().serve(HOST, port, max_size=MAX_SIZE) as server:
            yield bound_port(server)
    else:
        from websockets.asyncio.server import serve as serve_websockets

        async with serve_websockets(plain_echo, HOST, port, max_size=MAX_SIZE) as server:
            yield bound_port(server)


async def main_async(transport: str, port: int) -> None:
    import anyio

    def watch_stdin() -> None:
        # os.read, not sys.stdin: see benchmarks/servers.py (interpreter shutdown).
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with serve(transport, port) as bound:
            sys.stdout.write(f"READY {bound}\n")
            sys.stdout.flush()
            threading.Thread(target=watch_stdin, daemon=True).start()
            async for _ in signals:
                break


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=TRANSPORTS, default="asyncio")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import anyio

    backend = "trio" if args.transport == "anyio-trio" else "asyncio"
    try:
        anyio.run(main_async, args.transport, args.port, backend=backend)
    except ImportError as exc:
        sys.exit(f"echo_server.py: transport {args.transport} is not available: {exc}")


if __name__ == "__main__":
    main()
