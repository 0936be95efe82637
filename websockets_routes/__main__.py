"""Command line: ``python -m websockets_routes serve|routes|check``.

Bad arguments, an unimportable module or an attribute that is not a Router give one
clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .core import Accept, Close, Decision, Request, Respond, Router, ServeHTTP
from .core.naming import host_port

TRANSPORTS = ("asyncio", "trio", "anyio", "websockets")
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
    router = load_router(args.router)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"port {args.port} is out of range")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    backend = "trio" if args.transport == "trio" else "asyncio"
    options: dict[str, Any] = {}
    if args.uvloop:
        if backend != "asyncio":
            raise UsageError("--uvloop needs an asyncio transport")
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise UsageError(
                "--uvloop needs uvloop: pip install websockets-routes[uvloop]"
            ) from None
        options["use_uvloop"] = True
    import anyio

    try:
        anyio.run(_run_server, router, args, backend=backend, backend_options=options)
    except ImportError as exc:
        raise UsageError(f"transport {args.transport!r} is not available: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot serve on {host_port(args.host, args.port)}: {exc}") from None
    return 0


async def _run_server(router: Router, args: argparse.Namespace) -> None:
    import anyio

    server_cm = _open_server(router, args.transport, args.host, args.port)
    async with server_cm as server:
        where = host_port(args.host, _bound_port(server))
        print(
            f"Serving {len(router.routes)} routes on http://{where}/ "
            f"(ws://{where}/, transport {args.transport}); Ctrl+C to stop",
            flush=True,
        )
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                logging.getLogger("websockets_routes").info(
                    "%s received: closing connections with 1001", signal.Signals(signum).name
                )
                break
        server.close()
        await server.wait_closed()


def _open_server(router: Router, transport: str, host: str, port: int) -> Any:
    if transport == "asyncio":
        from .transports.asyncio import serve
    elif transport in ("trio", "anyio"):
        from .transports.anyio import serve  # type: ignore[no-redef,assignment]
    else:
        from . import Router as PublicRouter
        from .transports.websockets import serve as serve_websockets

        if not isinstance(router, PublicRouter):
            raise UsageError(
                "--transport websockets needs a websockets_routes.Router "
                "(not a websockets_routes.core.Router)"
            )
        return serve_websockets(router, host, port)
    return serve(router, host, port)


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
