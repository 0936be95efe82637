"""Benchmark servers, each run in its own process by ``benchmarks/load.py``.

``python benchmarks/servers.py KIND [--uvloop] [--routes N] [--cprofile FILE]`` binds
127.0.0.1 on a free port, prints ``READY <port>`` on stdout and serves until SIGTERM,
SIGINT or the end of its standard input (so a killed parent leaves no orphan).

Every WebSocket server runs the same handler: send ``"hello"``, then echo each message.
Routed servers register ``--routes`` routes (a mix of static, one-param, two-param and
regex templates) with the route the load generator hits, ``/bench/{room}/user/{user}``,
in the middle of the table, so matching pays for a realistic table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"
HIT_TARGET = "/bench/lobby/user/42"
HELLO = "hello"


@dataclass(frozen=True)
class Kind:
    name: str
    runtime: str  # "asyncio" (uvloop-able) or "trio"
    requires: tuple[str, ...]  # modules that must be importable
    websocket: bool = True  # False: raw TCP echo (echo workloads only)
    note: str = ""


KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        Kind(
            "ours",
            "asyncio",
            ("websockets_routes.transports.asyncio",),
            note="websockets_routes.transports.asyncio.serve, 1000 routes",
        ),
        Kind(
            "ours-uvloop",
            "asyncio",
            ("websockets_routes.transports.asyncio", "uvloop"),
            note="'ours' on uvloop, whatever --uvloop says: both loops in one run",
        ),
        Kind(
            "ours-metrics",
            "asyncio",
            ("websockets_routes.transports.asyncio", "prometheus_client"),
            note="'ours' with websockets_routes.metrics.Metrics on the router",
        ),
        Kind(
            "ours-limited",
            "asyncio",
            ("websockets_routes.transports.asyncio",),
            note="'ours' with Router(rate_limit=...) on every route, never reached:"
            " the cost of counting handshakes",
        ),
        Kind(
            "websockets-router",
            "asyncio",
            ("websockets", "werkzeug"),
            note="websockets.asyncio.router.route, 1000 werkzeug rules",
        ),
        Kind(
            "websockets",
            "asyncio",
            ("websockets",),
            note="websockets.asyncio.server.serve, one handler",
        ),
        Kind("raw", "asyncio", (), websocket=False, note="asyncio TCP echo (ceiling)"),
        Kind(
            "ours-anyio",
            "asyncio",
            ("websockets_routes.transports.anyio",),
            note="websockets_routes.transports.anyio.serve on asyncio, 1000 routes",
        ),
        Kind(
            "ours-hook",
            "asyncio",
            ("websockets_routes.transports.websockets", "websockets"),
            note="router.serve() (websockets hook), 1000 routes",
        ),
        Kind(
            "ours-anyio-trio",
            "trio",
            ("websockets_routes.transports.anyio", "trio"),
            note="websockets_routes.transports.anyio.serve on trio, 1000 routes",
        ),
        Kind(
            "websockets-trio-router",
            "trio",
            ("websockets.trio.router", "werkzeug", "trio"),
            note="websockets.trio.router.route, 1000 werkzeug rules",
        ),
        Kind(
            "trio-websocket",
            "trio",
            ("trio_websocket", "trio"),
            note="trio_websocket.serve_websocket, one handler",
        ),
    ]
}


def missing_modules(kind: Kind) -> list[str]:
    """The modules this server kind needs that cannot be imported here."""
    missing = []
    for module in kind.requires:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(module)
    return missing


def route_table(n: int = 1000) -> list[tuple[str, str]]:
    """``n`` (Routes template, werkzeug rule) pairs; the hit route sits at ``n // 2``."""
    table = []
    for i in range(n - 1):
        kind = i % 4
        if kind == 0:
            table.append((f"/static{i}/health", f"/static{i}/health"))
        elif kind == 1:
            table.append((f"/users{i}/{{id}}", f"/users{i}/<id>"))
        elif kind == 2:
            table.append((f"/rooms{i}/{{room}}/user/{{user}}", f"/rooms{i}/<room>/user/<user>"))
        else:
            table.append((f"/items{i}/{{id:\\d+}}", f"/items{i}/<int:id>"))
    table.insert(n // 2, ("/bench/{room}/user/{user}", "/bench/<room>/user/<user>"))
    return table


# Servers. Each factory is an async context manager yielding the bound port.


def ours_router(routes: int, **options: Any) -> Any:
    from websockets_routes import Router

    router = Router(**options)

    async def view(ws: Any, path: Any) -> None:
        await ws.send(HELLO)
        async for message in ws:
            await ws.send(message)

    for template, _ in route_table(routes):
        router.route(template)(view)
    return router


def werkzeug_map(routes: int, handler: Callable[..., Any]) -> Any:
    from werkzeug.routing import Map, Rule

    return Map([Rule(rule, endpoint=handler) for _, rule in route_table(routes)])


async def websockets_handler(ws: Any, **params: Any) -> None:
    await ws.send(HELLO)
    async for message in ws:
        await ws.send(message)


def bound_port(server: Any) -> int:
    port = getattr(server, "port", None)
    if isinstance(port, int):
        return port
    sockets = getattr(server, "sockets", None) or [
        listener.socket for listener in getattr(server, "listeners", ())
    ]
    return int(sockets[0].getsockname()[1])


@contextlib.asynccontextmanager
async def serve_ours(args: argparse.Namespace) -> Any:
    from websockets_routes.transports.asyncio import serve

    async with serve(ours_router(args.routes), HOST, 0) as server:
        yield server.port


@contextlib.asynccontextmanager
async def serve_ours_limited(args: argparse.Namespace) -> Any:
    from websockets_routes.transports.asyncio import serve

    # Counted per route and client (one client here, 127.0.0.1): a sliding window of
    # one second keeps what is remembered to the handshakes of the last second.
    router = ours_router(args.routes, rate_limit=(10**9, 1.0))
    async with serve(router, HOST, 0) as server:
        yield server.port


@contextlib.asynccontextmanager
async def serve_ours_metrics(args: argparse.Namespace) -> Any:
    from websockets_routes.metrics import Metrics
    from websockets_routes.transports.asyncio import serve

    router = ours_router(args.routes)
    Metrics(router)  # counted, not scraped: what serving costs with metrics on
    async with serve(router, HOST, 0) as server:
        yield server.port


@contextlib.asynccontextmanager
async def serve_ours_anyio(args: argparse.Namespace) -> Any:
    from websockets_routes.transports.anyio import serve

    async with serve(ours_router(args.routes), HOST, 0) as server:
        yield server.port


@contextlib.asynccontextmanager
async def serve_ours_hook(args: argparse.Namespace) -> Any:
    async with ours_router(args.routes).serve(HOST, 0) as server:
        yield bound_port(server)


@contextlib.asynccontextmanager
async def serve_websockets_router(args: argparse.Namespace) -> Any:
    from websockets.asyncio.router import route

    async with route(werkzeug_map(args.routes, websockets_handler), HOST, 0) as server:
        yield bound_port(server)


@contextlib.asynccontextmanager
async def serve_websockets(args: argparse.Namespace) -> Any:
    from websockets.asyncio.server import serve

    async with serve(websockets_handler, HOST, 0) as server:
        yield bound_port(server)


@contextlib.asynccontextmanager
async def serve_raw(args: argparse.Namespace) -> Any:
    import asyncio

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    server = await asyncio.get_running_loop().create_server(Echo, HOST, 0)
    async with server:
        yield bound_port(server)


@contextlib.asynccontextmanager
async def serve_websockets_trio_router(args: argparse.Namespace) -> Any:
    import trio
    from websockets.trio.router import route

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: route(
                werkzeug_map(args.routes, websockets_handler),
                port=0,
                host=HOST,
                task_status=task_status,
            )
        )
        async with server:
            yield bound_port(server)
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def serve_trio_websocket(args: argparse.Namespace) -> Any:
    import trio
    from trio_websocket import ConnectionClosed, serve_websocket

    async def handler(request: Any) -> None:
        ws = await request.accept()
        try:
            await ws.send_message(HELLO)
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, HOST, 0, None)
        yield server.port
        nursery.cancel_scope.cancel()


FACTORIES: dict[str, Callable[[argparse.Namespace], Any]] = {
    "ours": serve_ours,
    "ours-uvloop": serve_ours,
    "ours-metrics": serve_ours_metrics,
    "ours-limited": serve_ours_limited,
    "ours-anyio": serve_ours_anyio,
    "ours-hook": serve_ours_hook,
    "ours-anyio-trio": serve_ours_anyio,
    "websockets-router": serve_websockets_router,
    "websockets": serve_websockets,
    "raw": serve_raw,
    "websockets-trio-router": serve_websockets_trio_router,
    "trio-websocket": serve_trio_websocket,
}


# Process plumbing.


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def watch_stdin() -> None:
    """Stop this process when the parent closes our stdin or dies."""

    def wait() -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside the buffered reader
        # holds its lock and stalls interpreter shutdown.
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="stdin-watch", daemon=True).start()


def announce(port: int) -> None:
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()


async def run_asyncio(args: argparse.Namespace) -> None:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with FACTORIES[args.kind](args) as port:
        announce(port)
        await stop.wait()
        stop_profile(args)
        exit_soon()


async def run_trio(args: argparse.Namespace) -> None:
    import trio

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with FACTORIES[args.kind](args) as port:
            announce(port)
            async for _ in signals:
                break
            stop_profile(args)
            exit_soon()


def exit_soon(delay: float = 3.0) -> None:
    """Leaving the server closes what is still open: bound that, so a stuck peer
    cannot keep the process alive."""
    timer = threading.Timer(delay, os._exit, (0,))
    timer.daemon = True
    timer.start()


_profiler: Any = None


def start_profile(args: argparse.Namespace) -> None:
    global _profiler
    if args.cprofile:
        import cProfile

        _profiler = cProfile.Profile()
        _profiler.enable()


def stop_profile(args: argparse.Namespace) -> None:
    if _profiler is not None:
        _profiler.disable()
        _profiler.dump_stats(args.cprofile)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--uvloop", action="store_true", help="asyncio servers on uvloop")
    parser.add_argument("--routes", type=int, default=1000, help="routes in routed servers")
    parser.add_argument("--cprofile", metavar="FILE", help="cProfile the server into FILE")
    args = parser.parse_args(argv)
    kind = KINDS[args.kind]
    missing = missing_modules(kind)
    if missing:
        parser.exit(3, f"servers.py: {args.kind} needs {', '.join(missing)}\n")

    import logging

    logging.basicConfig(level=logging.WARNING)
    raise_nofile()
    watch_stdin()
    start_profile(args)
    if kind.runtime == "trio":
        import trio

        trio.run(run_trio, args)
    elif args.uvloop or args.kind.endswith("-uvloop"):
        import asyncio

        import uvloop

        if hasattr(asyncio, "Runner"):
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(run_asyncio(args))
        else:  # Python 3.10
            uvloop.install()
            asyncio.run(run_asyncio(args))
    else:
        import asyncio

        asyncio.run(run_asyncio(args))


if __name__ == "__main__":
    main()
