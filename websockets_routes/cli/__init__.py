"""Command line: ``python -m websockets_routes serve|routes|check|asyncapi``.

Bad arguments, an unimportable module, an attribute that is not a Router, a transport
whose library is not installed or a TLS file that does not load give one clear line
on stderr and exit status 2, never a traceback.

``serve`` stops on the first SIGINT (connections closed with 1001 at once, handlers
given up to ``close_timeout``) or SIGTERM (with the asyncio, trio and anyio
transports: connections closed with 1012 spread over ``--drain`` seconds), and exits
0 either way. While it stops, a SIGTERM is ignored (a drain runs to its end) and a
second SIGINT ends the process at once with status 130 (``StopSignals``).
``serve --workers N`` runs N processes on one port (``workers.py``).

The ``--help`` text is ``DESCRIPTION`` and the parsers' help strings: plain text.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .common import DEFAULT_DRAIN, TRANSPORTS, UsageError, _Parser, load_router
from .inspection import asyncapi_command, build_request, check_command, describe, route_table
from .serving import serve_command

__all__ = ["UsageError", "build_request", "describe", "load_router", "main", "route_table"]

DESCRIPTION = """\
Serve a websockets_routes Router, print its route table or its AsyncAPI document, or
show the decision it takes for one handshake.

  serve MODULE:router    serve the router (serve --help for the options)
  routes MODULE:router   print the route table
  check MODULE:router /path   print the decision for a handshake to /path
  asyncapi MODULE:router      print the AsyncAPI 3.0.0 document of its WebSocket routes

Bad arguments give one line on stderr and exit status 2."""

SERVE_EPILOG = """\
Stopping: the first Ctrl-C (SIGINT) closes every connection with 1001 and gives
handlers up to 10 s to return; a second Ctrl-C quits at once (exit status 130).
SIGTERM closes connections with 1012 spread over --drain seconds; a repeated SIGTERM
is ignored. With --workers, a second Ctrl-C kills the workers, and SIGQUIT (Ctrl-\\)
kills them at once too.

The access log (one line per handshake and per closed connection, on stderr) is on
unless --no-access-log."""


def _make_parser() -> _Parser:
    parser = _Parser(
        prog="python -m websockets_routes",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser(
        "serve",
        help="serve a router",
        description="Serve a websockets_routes Router until SIGINT or SIGTERM.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("router", help="MODULE:ATTRIBUTE of a websockets_routes.Router")
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    serve.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="asyncio",
        help="asyncio (default), trio or anyio: our own servers; websockets: the "
        "websockets library's server",
    )
    serve.add_argument("--uvloop", action="store_true", help="run asyncio on uvloop")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--no-access-log",
        action="store_true",
        help="no access log (by default a line per handshake and per closed connection)",
    )
    serve.add_argument(
        "--certfile", metavar="FILE", help="serve TLS (https, wss) with this certificate (PEM)"
    )
    serve.add_argument(
        "--keyfile",
        metavar="FILE",
        help="the certificate's private key (PEM), unless in --certfile",
    )
    serve.add_argument(
        "--max-size",
        metavar="BYTES",
        help="largest incoming message, after decompression (default 1048576); 0 or none: no limit",
    )
    serve.add_argument(
        "--ping-interval",
        metavar="SECONDS",
        help="a keepalive ping every SECONDS (default 20); 0 or none: no pings",
    )
    serve.add_argument(
        "--ping-timeout",
        metavar="SECONDS",
        help="close with 1011 when no pong comes within SECONDS (default 20); 0 or none: never",
    )
    serve.add_argument(
        "--max-connections",
        metavar="N",
        type=int,
        help="open WebSocket connections per process; past N a new handshake gets "
        "503 with Retry-After (default: no limit)",
    )
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

    routes = commands.add_parser(
        "routes", help="print the route table", description="Print the route table of a Router."
    )
    routes.add_argument("router", help="MODULE:ATTRIBUTE of a websockets_routes.Router")

    asyncapi = commands.add_parser(
        "asyncapi",
        help="print the AsyncAPI 3.0.0 document of the WebSocket routes",
        description="Print the AsyncAPI 3.0.0 document of a Router's WebSocket routes "
        "(JSON; YAML with --yaml when PyYAML is installed).",
    )
    asyncapi.add_argument("router", help="MODULE:ATTRIBUTE of a websockets_routes.Router")
    asyncapi.add_argument("--title", default="WebSocket API")
    asyncapi.add_argument("--version", default="1.0.0", help="the API's version")
    asyncapi.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="URL",
        help="a ws:// or wss:// URL the API is served on (repeatable)",
    )
    asyncapi.add_argument("--yaml", action="store_true", help="YAML instead of JSON")

    check = commands.add_parser(
        "check",
        help="print the decision for a handshake",
        description="Print what a Router decides for one request (a WebSocket handshake "
        "unless --no-upgrade): its process_request hooks and HTTP views run unless "
        "--no-hooks.",
    )
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
    check.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 0 for an accepted handshake (or a plain-HTTP route's 2xx answer), "
        "1 for anything else",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _make_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "routes":
            print(route_table(load_router(args.router)))
            status = 0
        elif args.command == "check":
            status = check_command(args)
        elif args.command == "asyncapi":
            status = asyncapi_command(args)
        else:
            return serve_command(args)
        sys.stdout.flush()  # here, where a closed pipe can still be caught
        return status
    except BrokenPipeError:
        # The reader left (`... | head`): no traceback, and nothing more to write at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
