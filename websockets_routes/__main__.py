"""Command line: ``python -m websockets_routes serve|routes|check``.

Bad arguments, an unimportable module or an attribute that is not a Router give one
clear line on stderr and exit status 2, never a traceback.

``serve`` stops on SIGINT (connections closed with 1001 at once) and on SIGTERM (with
the asyncio, trio and anyio transports: connections closed with 1012 spread over
``--drain`` seconds), and exits 0 either way; a repeat of either signal while it stops
is ignored. ``serve --workers N`` runs N processes on one port (``workers.py``).
"""

from __future__ import annotations

import argparse
import base64
import importlib
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, NoReturn

from .core import Accept, Close, Decision, Request, Respond, Router, ServeHTTP
from .core.naming import host_port

TRANSPORTS = ("asyncio", "trio", "anyio", "websockets")
DRAINING = ("asyncio", "trio", "anyio")  # transports whose server has close(drain=)
DEFAULT_DRAIN = 10.0
BODY_SHOWN = 400
SAMPLE_KEY = base64.b64encode(b"websockets-route").decode()


class UsageError(Exception):
    """A mistake on the command line; the message is the one line shown."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def load_router(spec: str) -> Router:
    """Import ``package.module:attr`` (dots allowed in attr) and check it is a Router."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:ATTRIBUTE (e.g. app:router), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn: apps in the current directory
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:
        raise UsageError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Router):
        raise UsageError(f"{spec} is a {type(obj).__name__}, not a websockets_routes.Router")
    return obj


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"header {text!r} must look like 'Name: value'")
    return name.strip(), value.strip()


def build_request(
    target: str, header_args: Sequence[str], method: str = "GET", upgrade: bool = True
) -> Request:
    """A handshake request: a valid WebSocket GET unless headers override it."""
    given = [_parse_header(h) for h in header_args]
    names = {name.lower() for name, _ in given}
    defaults = [("Host", "localhost")]
    if upgrade:
        defaults += [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", SAMPLE_KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    headers = [(n, v) for n, v in defaults if n.lower() not in names] + given
    return Request(method, target, headers)


def describe(decision: Decision) -> str:
    """A human-readable account of a decision."""
    lines: list[str] = []
    if isinstance(decision, (Accept, Close, ServeHTTP)) and decision.path is not None:
        path = decision.path
        if path.template is not None:
            lines.append(
                f"route    {path.template}"
                + (f" (name {path.name})" if path.name else "")
                + f" -> {_view_name(path.route)}"
            )
            lines.append(f"params   {path.params}")
    if isinstance(decision, Accept):
        lines.insert(0, "Accept   101 Switching Protocols")
        lines.append(f"subprotocol {decision.subprotocol}")
        lines += [f"  {name}: {value}" for name, value in decision.headers]
    elif isinstance(decision, Close):
        lines.insert(0, f"Close    accept, then close with {decision.code} {decision.reason!r}")
    elif isinstance(decision, ServeHTTP):
        lines.insert(0, "HTTP     plain-HTTP route (its view answers)")
    elif isinstance(decision, Respond):
        lines.append(f"Respond  HTTP {decision.status}")
        lines += [f"  {name}: {value}" for name, value in decision.headers]
        if decision.body:
            text = decision.body[:BODY_SHOWN].decode("utf-8", "replace").rstrip("\n")
            if len(decision.body) > BODY_SHOWN:
                text += f"\n... ({len(decision.body)} bytes in all)"
            lines += ["", text]
    return "\n".join(lines)


def _view_name(view: Any) -> str:
    handle = getattr(view, "handle", None)
    if type(view).__name__ == "FunctionView" and handle is not None:
        return f"{handle.__module__}.{handle.__qualname__}"
    return f"{type(view).__module__}.{type(view).__qualname__}"


def route_table(router: Router) -> str:
    rows = [("TEMPLATE", "NAME", "KIND", "VIEW", "SUBPROTOCOLS", "ORIGINS")]
    for route in router.routes:
        endpoint = route.endpoint
        # What the route inherits from the router counts as much as what it sets.
        subprotocols = route.subprotocols if route.subprotocols is not None else router.subprotocols
        origins = route.origins if route.origins is not None else router.origins
        if route.kind == "http":
            subprotocols = origins = None
        rows.append(
            (
                route.template.source,
                route.name or "-",
                route.kind,
                f"{endpoint.__module__}.{endpoint.__qualname__}",
                ",".join(subprotocols) if subprotocols else "-",
                ",".join(str(o) for o in origins) if origins is not None else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _make_parser() -> _Parser:
    parser = _Parser(prog="python -m websockets_routes", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser("serve", help="serve a router")
    serve.add_argument("router", help="MODULE:ATTRIBUTE of a websockets_routes.Router")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--transport", choices=TRANSPORTS, default="asyncio")
    serve.add_argument("--uvloop", action="store_true", help="run asyncio on uvloop")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run N worker processes on the port (SO_REUSEPORT on Linux); needs a fixed --port",
    )
    serve.add_argument(
        "--drain",
        type=float,
        metavar="SECONDS",
        help=f"on SIGTERM, close connections with 1012 spread over SECONDS "
        f"(default {DEFAULT_DRAIN:g}); SIGINT closes them at once with 1001",
    )
    # How a worker started by --workers hears from its parent (see workers.py).
    serve.add_argument("--worker-control", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker-socket", type=int, help=argparse.SUPPRESS)

    routes = commands.add_parser("routes", help="print the route table")
    routes.add_argument("router", help="MODULE:ATTRIBUTE of a websockets_routes.Router")

    check = commands.add_parser("check", help="print the decision for a handshake")
    check.add_argument("router", help="MODULE:ATTRIBUTE of a websockets_routes.Router")
    check.add_argument("target", help="request target, e.g. /thing/42?x=1")
    check.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    check.add_argument("-X", "--method", default="GET")
    check.add_argument(
        "--no-upgrade", action="store_true", help="leave out the WebSocket upgrade headers"
    )
    check.add_argument(
        "--no-hooks", action="store_true", help="decide() only: do not run process_request"
    )
    return parser


def _check(args: argparse.Namespace) -> int:
    router = load_router(args.router)
    request = build_request(args.target, args.header, args.method, not args.no_upgrade)
    if args.no_hooks:
        decision = router.decide(request)
    else:
        import anyio

        decision = anyio.run(router.resolve, request)
    print(describe(decision))
    return 0


def _serve(args: argparse.Namespace) -> int:
    _check_serve_args(args)
    router = load_router(args.router)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s "
        + ("[%(process)d] " if args.workers or args.worker_control is not None else "")
        + "%(name)s: %(message)s",
    )
    if args.workers:
        return _serve_workers(router, args)
    backend = "trio" if args.transport == "trio" else "asyncio"
    options: dict[str, Any] = {"use_uvloop": True} if args.uvloop else {}
    import anyio

    link = None
    if args.worker_control is not None:
        from .workers import ParentLink

        link = ParentLink(args.worker_control)
        link.start()
    sock = None
    if args.worker_socket is not None:
        sock = socket.socket(fileno=args.worker_socket)
        sock.set_inheritable(False)
    try:
        anyio.run(_run_server, router, args, link, sock, backend=backend, backend_options=options)
        # Closed: a late repeat of the signal must not turn exit status 0 into a kill.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    except ImportError as exc:
        raise UsageError(f"transport {args.transport!r} is not available: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot serve on {host_port(args.host, args.port)}: {exc}") from None
    return 0


def _check_serve_args(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"port {args.port} is out of range")
    if args.drain is not None:
        if not 0 <= args.drain < math.inf:
            raise UsageError(f"--drain {args.drain:g}: the drain is 0 seconds or more")
        if args.transport not in DRAINING:
            raise UsageError(f"--drain needs a transport that can drain ({', '.join(DRAINING)})")
    if args.workers is not None:
        if args.workers < 1:
            raise UsageError(f"--workers {args.workers}: at least 1")
        if args.transport not in DRAINING:
            raise UsageError(
                f"--workers needs a transport that can drain ({', '.join(DRAINING)}), "
                f"not {args.transport}"
            )
        if args.port == 0:
            raise UsageError("--workers needs a fixed --port: every worker listens on it")
        if os.name != "posix":
            raise UsageError("--workers needs a POSIX system")
    if args.uvloop:
        if args.transport == "trio":
            raise UsageError("--uvloop needs an asyncio transport")
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise UsageError(
                "--uvloop needs uvloop: pip install websockets-routes[uvloop]"
            ) from None


def _drain_of(args: argparse.Namespace) -> float | None:
    """Seconds to drain over on SIGTERM; None: the transport closes at once."""
    if args.transport not in DRAINING:
        return None
    return DEFAULT_DRAIN if args.drain is None else float(args.drain)


def _serve_workers(router: Router, args: argparse.Namespace) -> int:
    from . import workers

    drain = _drain_of(args)
    worker_args = ["serve", args.router, "--host", args.host, "--port", str(args.port)]
    worker_args += ["--transport", args.transport, "--log-level", args.log_level]
    worker_args += ["--drain", repr(drain)]
    if args.uvloop:
        worker_args.append("--uvloop")
    where = host_port(args.host, args.port)
    try:
        if workers.REUSE_PORT:
            held, shared = workers.reserve_port(args.host, args.port), None
        else:
            shared = workers.listening_socket(args.host, args.port)
            held = [shared]
    except OSError as exc:
        raise UsageError(f"cannot serve on {where}: {exc}") from None

    def worker_ready(index: int, pid: int) -> None:
        print(f"Worker {index} started (pid {pid})", flush=True)

    def all_ready() -> None:
        print(
            f"Serving {len(router.routes)} routes on http://{where}/ "
            f"(ws://{where}/, transport {args.transport}, "
            f"{args.workers} worker{'s' if args.workers > 1 else ''}); "
            "Ctrl+C to stop",
            flush=True,
        )

    supervisor = workers.Supervisor(
        worker_args,
        args.workers,
        sock=shared,
        drain=drain,
        on_worker_ready=worker_ready,
        on_all_ready=all_ready,
    )
    try:
        status = supervisor.run()
    finally:
        for sock in held:
            sock.close()
    for signum in (signal.SIGINT, signal.SIGTERM):  # as in _serve()
        signal.signal(signum, signal.SIG_IGN)
    return status


async def _run_server(
    router: Router, args: argparse.Namespace, link: Any = None, sock: socket.socket | None = None
) -> None:
    """Serve until SIGINT or SIGTERM, then close as that signal asks and wait."""
    import anyio

    log = logging.getLogger("websockets_routes")
    drain = _drain_of(args)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        reuse_port = link is not None and sock is None
        async with _open_server(router, args, reuse_port, sock) as server:
            if link is not None:
                link.ready()
            else:
                where = host_port(args.host, _bound_port(server))
                print(
                    f"Serving {len(router.routes)} routes on http://{where}/ "
                    f"(ws://{where}/, transport {args.transport}); Ctrl+C to stop",
                    flush=True,
                )
            first = signal.SIGINT
            async for signum in signals:
                first = signum
                break
            name = signal.Signals(first).name
            if first == signal.SIGTERM and drain is not None:
                log.info("%s received: closing connections with 1012 over %g s", name, drain)
                server.close(drain=drain)
            else:
                log.info("%s received: closing connections with 1001", name)
                server.close()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_ignore_repeats, signals, name)
                await server.wait_closed()
                tg.cancel_scope.cancel()


async def _ignore_repeats(signals: AsyncIterator[int], first: str) -> None:
    """While the server closes, a second signal changes nothing: a drain runs to its end."""
    async for signum in signals:
        logging.getLogger("websockets_routes").warning(
            "%s received while closing after %s: ignored", signal.Signals(signum).name, first
        )


def _open_server(
    router: Router, args: argparse.Namespace, reuse_port: bool, sock: socket.socket | None
) -> Any:
    transport, host, port = args.transport, args.host, args.port
    if transport == "asyncio":
        from .transports.asyncio import serve

        if sock is not None:
            return serve(router, sock=sock)
        return serve(router, host, port, reuse_port=reuse_port)
    if transport in ("trio", "anyio"):
        from .transports import anyio as anyio_transport

        if sock is not None:
            return _anyio_on_socket(router, host, sock)
        return anyio_transport.serve(router, host, port, reuse_port=reuse_port)
    from . import Router as PublicRouter
    from .transports.websockets import serve as serve_websockets

    if not isinstance(router, PublicRouter):
        raise UsageError(
            "--transport websockets needs a websockets_routes.Router "
            "(not a websockets_routes.core.Router)"
        )
    return serve_websockets(router, host, port)


@asynccontextmanager
async def _anyio_on_socket(router: Router, host: str, sock: socket.socket) -> AsyncIterator[Any]:
    """The anyio server accepting on a listening socket it is given."""
    import anyio.abc

    from .transports.anyio import Server

    server = Server(router, host, None)
    server.listeners = [await anyio.abc.SocketListener.from_socket(sock)]
    async with server:
        yield server


def _bound_port(server: Any) -> int:
    port = getattr(server, "port", None)
    if port is None:  # a websockets Server
        port = server.sockets[0].getsockname()[1]
    return int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _make_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "routes":
            print(route_table(load_router(args.router)))
            return 0
        if args.command == "check":
            return _check(args)
        return _serve(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
