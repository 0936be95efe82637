"""Command line: ``python -m websockets_routes serve|routes|check``.

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
import base64
import importlib
import json
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any, NoReturn

from .core import Accept, Close, Decision, Request, Respond, Router, ServeHTTP
from .core.naming import host_port

TRANSPORTS = ("asyncio", "trio", "anyio", "websockets")
DRAINING = ("asyncio", "trio", "anyio")  # transports whose server has close(drain=)
OWN_SERVERS = DRAINING  # transports served by our own servers (ServerOptions)
DEFAULT_DRAIN = 10.0
DEFAULT_CLOSE_TIMEOUT = 10.0  # ServerOptions.close_timeout: the CLI does not change it
INTERRUPTED = 128 + signal.SIGINT  # exit status after a second SIGINT
BODY_SHOWN = 400
SAMPLE_KEY = base64.b64encode(b"websockets-route").decode()
ACCESS_LOGGER = "websockets_routes.access"
NO_LIMIT = ("0", "none")  # what --max-size, --ping-interval, --ping-timeout take for None

# The library each transport (or --uvloop) needs, and the extra that installs it.
NEEDS = {
    "trio": ("trio", "trio"),
    "websockets": ("websockets.asyncio.server", "websockets"),
    "uvloop": ("uvloop", "uvloop"),
}

DESCRIPTION = """\
Serve a websockets_routes Router, print its route table, or show the decision it
takes for one handshake.

  serve MODULE:router    serve the router (serve --help for the options)
  routes MODULE:router   print the route table
  check MODULE:router /path   print the decision for a handshake to /path

Bad arguments give one line on stderr and exit status 2."""

SERVE_EPILOG = """\
Stopping: the first Ctrl-C (SIGINT) closes every connection with 1001 and gives
handlers up to 10 s to return; a second Ctrl-C quits at once (exit status 130).
SIGTERM closes connections with 1012 spread over --drain seconds; a repeated SIGTERM
is ignored. With --workers, a second Ctrl-C kills the workers, and SIGQUIT (Ctrl-\\)
kills them at once too.

The access log (one line per handshake and per closed connection, on stderr) is on
unless --no-access-log."""


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
    rows = [("TEMPLATE", "NAME", "KIND", "VIEW", "SUBPROTOCOLS", "ORIGINS", "POLICY")]
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
                route.policy.describe() if route.policy is not None else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


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


def _check(args: argparse.Namespace) -> int:
    router = load_router(args.router)
    request = build_request(args.target, args.header, args.method, not args.no_upgrade)
    if args.no_hooks:
        decision = router.decide(request)
    else:
        import anyio

        decision = anyio.run(router.resolve, request)
    print(describe(decision))
    if args.exit_code and not _succeeded(router, decision, args):
        return 1
    return 0


def _succeeded(router: Router, decision: Decision, args: argparse.Namespace) -> bool:
    """``check --exit-code``: an Accept, or the 2xx answer of a plain-HTTP route's view
    (``ServeHTTP`` with --no-hooks, where the view does not run)."""
    if isinstance(decision, (Accept, ServeHTTP)):
        return True
    if not isinstance(decision, Respond) or not 200 <= decision.status < 300:
        return False
    # A 2xx counts when a plain-HTTP route's view gave it, not a hook refusing a handshake.
    again = build_request(args.target, args.header, args.method, not args.no_upgrade)
    return isinstance(router.decide(again), ServeHTTP)


def _serve(args: argparse.Namespace) -> int:
    _check_serve_args(args)
    options = _server_options(args)
    router = load_router(args.router)
    _configure_logging(args)
    if args.workers:
        return _serve_workers(router, args)
    backend = "trio" if args.transport == "trio" else "asyncio"
    backend_options: dict[str, Any] = {"use_uvloop": True} if args.uvloop else {}
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
    # From here to the exit: a second SIGINT quits at once, a SIGTERM repeat is ignored.
    signals = StopSignals(hint=link is None)
    signals.install()
    try:
        anyio.run(
            _run_server,
            router,
            args,
            options,
            signals,
            link,
            sock,
            backend=backend,
            backend_options=backend_options,
        )
    except ImportError as exc:
        signals.uninstall()
        raise UsageError(f"transport {args.transport!r} is not available: {exc}") from None
    except OSError as exc:
        signals.uninstall()
        raise UsageError(f"cannot serve on {host_port(args.host, args.port)}: {exc}") from None
    except BaseException:
        signals.uninstall()
        raise
    return 0


class _AccessLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The access log's handler that the command line installs (and replaces)."""


def _configure_logging(args: argparse.Namespace) -> None:
    """The root logger at ``--log-level``; the access log at INFO on stderr, apart
    from ``--log-level``, unless ``--no-access-log``."""
    fmt = (
        "%(asctime)s %(levelname)s "
        + ("[%(process)d] " if args.workers or args.worker_control is not None else "")
        + "%(name)s: %(message)s"
    )
    logging.basicConfig(level=args.log_level.upper(), format=fmt)
    access = logging.getLogger(ACCESS_LOGGER)
    for handler in list(access.handlers):
        if isinstance(handler, _AccessLogHandler):
            access.removeHandler(handler)
    if args.no_access_log:
        access.setLevel(logging.CRITICAL + 1)  # isEnabledFor(INFO) is False: off the hot path
        return
    handler = _AccessLogHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False  # its own handler: shown whatever --log-level says


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
    if args.max_connections is not None:
        if args.max_connections < 1:
            raise UsageError(f"--max-connections {args.max_connections}: at least 1")
        if args.transport not in OWN_SERVERS:
            raise UsageError(
                f"--max-connections needs one of our own servers ({', '.join(OWN_SERVERS)}), "
                f"not {args.transport}"
            )
    if args.keyfile is not None and args.certfile is None:
        raise UsageError("--keyfile needs --certfile")
    if args.uvloop and args.transport == "trio":
        raise UsageError("--uvloop needs an asyncio transport")
    if args.transport in NEEDS:
        _require(args.transport, f"--transport {args.transport}")
    if args.uvloop:
        _require("uvloop", "--uvloop")


def _require(what: str, flag: str) -> None:
    """One line naming the extra to install when ``what`` (a NEEDS key) is missing."""
    module, extra = NEEDS[what]
    try:
        importlib.import_module(module)
    except ImportError:
        library = module.partition(".")[0]
        raise UsageError(
            f"{flag} needs {library}, which is not installed: "
            f"pip install 'websockets-routes[{extra}]'"
        ) from None


def _parse_limit(flag: str, text: str | None, kind: type[int] | type[float]) -> Any:
    """The value of --max-size or --ping-*: ``kind`` >= 0, None for 0 or ``none``."""
    if text is None:
        return None
    if text.strip().lower() in NO_LIMIT:
        return None
    unit = "bytes" if kind is int else "seconds"
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"{flag} {text}: a number of {unit}, or 0 or none") from None
    if not 0 <= value < math.inf:
        raise UsageError(f"{flag} {text}: a number of {unit}, or 0 or none")
    return value if value else None


def _server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The server options the flags ask for (ServerOptions' names; those of
    ``websockets.asyncio.server.serve`` too), with None for 0 or ``none``."""
    options: dict[str, Any] = {}
    for flag, name, kind in (
        ("--max-size", "max_size", int),
        ("--ping-interval", "ping_interval", float),
        ("--ping-timeout", "ping_timeout", float),
    ):
        text = getattr(args, name)
        if text is not None:
            options[name] = _parse_limit(flag, text, kind)
    if args.max_connections is not None:
        options["max_connections"] = args.max_connections
    if args.certfile is not None:
        options["ssl"] = _ssl_context(args.certfile, args.keyfile)
    return options


class _EncryptedKey(Exception):
    pass


def _no_password() -> NoReturn:
    # Called by OpenSSL for an encrypted key: rather than a prompt in each worker.
    raise _EncryptedKey


def _ssl_context(certfile: str, keyfile: str | None) -> Any:
    """A server SSLContext for ``certfile`` (and ``keyfile``); UsageError when they do
    not load."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_alpn_protocols(["http/1.1"])
    files = certfile + (f" and {keyfile}" if keyfile else "")
    for name in (certfile, keyfile):
        if name is None:
            continue
        try:
            with open(name, "rb"):
                pass
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except _EncryptedKey:
        raise UsageError(
            f"--keyfile {keyfile or certfile}: the key is encrypted; give an unencrypted "
            "copy (openssl pkey -in KEY -out PLAIN_KEY)"
        ) from None
    except ssl.SSLError as exc:
        raise UsageError(
            f"cannot load the TLS certificate and key from {files}: "
            f"{exc.reason or exc} (PEM files of a certificate and its key expected)"
        ) from None
    except OSError as exc:
        name = exc.filename if exc.filename is not None else files
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    return context


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
    for flag in ("certfile", "keyfile", "max_size", "ping_interval", "ping_timeout"):
        if getattr(args, flag) is not None:
            worker_args += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    if args.max_connections is not None:
        worker_args += ["--max-connections", str(args.max_connections)]
    for flag in ("uvloop", "no_access_log"):
        if getattr(args, flag):
            worker_args.append(f"--{flag.replace('_', '-')}")
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
            f"Serving {len(router.routes)} routes on {_urls(args, where)}, "
            f"transport {args.transport}, "
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


class StopSignals:
    """SIGINT and SIGTERM in a serving process, from the start to the exit.

    The first of either starts the stop: ``await next()`` returns it (the handler
    only writes it to a socket pair, which any event loop can wait on). After that a
    SIGTERM is a repeat (a process manager signalling every process, a forwarded copy):
    ``next()`` returns it to be logged, and it changes nothing. A second SIGINT is a
    person asking to quit now: the handler itself writes one line on stderr and ends
    the process with status 130, before any event loop gets a say, so no task is left
    half-cancelled to complain and a busy loop does not delay it.

    Handlers set with ``signal.signal`` before the loop starts also keep asyncio's
    runner and trio from installing their KeyboardInterrupt machinery.
    """

    def __init__(self, *, hint: bool = True) -> None:
        self.hint = hint  # a terminal's Ctrl-C can reach us (not a worker)
        self.first: int | None = None
        self.interrupts = 0
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts >= 2:
                quit_now("SIGINT received again: quitting at once, connections are cut")
        if self.first is None:
            self.first = signum
        try:
            self._writer.send(bytes([signum]))
        except OSError:
            pass  # the buffer is full of signals not yet read: nothing is lost that matters

    async def next(self) -> int:
        """The next signal received (the first one, then the repeats)."""
        import anyio

        while True:
            await anyio.wait_readable(self._reader)
            try:
                data = self._reader.recv(1)
            except BlockingIOError:
                continue
            if data:
                return data[0]


def quit_now(message: str, status: int = INTERRUPTED) -> NoReturn:
    """End the process at once: one log line on stderr, no clean-up, no traceback.

    Safe in a signal handler: no lock is taken (the line goes straight to fd 2)."""
    record = logging.LogRecord("websockets_routes", logging.WARNING, "", 0, message, None, None)
    handlers = logging.getLogger().handlers
    try:
        line = handlers[0].format(record) if handlers else f"websockets_routes: {message}"
    except Exception:
        line = f"websockets_routes: {message}"
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass  # interrupted in the middle of a write: what is buffered may be lost
    try:
        os.write(2, (line + "\n").encode(errors="replace"))
    except OSError:
        pass
    os._exit(status)


async def _run_server(
    router: Router,
    args: argparse.Namespace,
    options: dict[str, Any],
    signals: StopSignals,
    link: Any = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then close as that signal asks and wait."""
    import anyio

    log = logging.getLogger("websockets_routes")
    drain = _drain_of(args)
    reuse_port = link is not None and sock is None
    async with _open_server(router, args, options, reuse_port, sock) as server:
        if link is not None:
            link.ready()
        else:
            where = host_port(args.host, _bound_port(server))
            print(
                f"Serving {len(router.routes)} routes on {_urls(args, where)}, "
                f"transport {args.transport}); Ctrl+C to stop",
                flush=True,
            )
        first = await signals.next()
        name = signal.Signals(first).name
        if args.transport in OWN_SERVERS:
            timeout = getattr(getattr(server, "options", None), "close_timeout", None)
            grace = "as long as they take" if timeout is None else f"up to {timeout:g} s"
            grace = f"handlers get {grace} to return"
        else:
            grace = "waiting for handlers to return"
        again = "; Ctrl+C again quits at once" if signals.hint else ""
        if first == signal.SIGTERM and drain is not None:
            log.info(
                "SIGTERM received: closing connections with 1012 over %g s, %s after "
                "their close; a repeated SIGTERM is ignored",
                drain,
                grace,
            )
            server.close(drain=drain)
        else:
            log.info("%s received: closing connections with 1001, %s%s", name, grace, again)
            server.close()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_log_repeats, signals, name)
            await server.wait_closed()
            tg.cancel_scope.cancel()


async def _log_repeats(signals: StopSignals, first: str) -> None:
    """While the server closes, a SIGTERM changes nothing: a drain runs to its end; a
    first SIGINT after a SIGTERM says how to quit at once (a second one does)."""
    log = logging.getLogger("websockets_routes")
    while True:
        signum = await signals.next()
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and first != name:
            log.warning(
                "SIGINT received while closing after %s: the close goes on%s",
                first,
                "; Ctrl+C again quits at once" if signals.hint else "",
            )
        else:
            log.warning("%s received while closing after %s: ignored", name, first)


def _urls(args: argparse.Namespace, where: str) -> str:
    """``http://HOST:PORT/ (ws://HOST:PORT/`` or the TLS pair, for the Serving line."""
    if args.certfile is not None:
        return f"https://{where}/ (wss://{where}/"
    return f"http://{where}/ (ws://{where}/"


def _open_server(
    router: Router,
    args: argparse.Namespace,
    options: dict[str, Any],
    reuse_port: bool,
    sock: socket.socket | None,
) -> Any:
    transport, host, port = args.transport, args.host, args.port
    if transport == "asyncio":
        from .transports.asyncio import serve

        if sock is not None:
            return serve(router, sock=sock, **options)
        return serve(router, host, port, reuse_port=reuse_port, **options)
    if transport in ("trio", "anyio"):
        from .transports import anyio as anyio_transport

        if sock is not None:
            return _anyio_on_socket(router, host, sock, options)
        return anyio_transport.serve(router, host, port, reuse_port=reuse_port, **options)
    from . import Router as PublicRouter
    from .transports.websockets import serve as serve_websockets

    if not isinstance(router, PublicRouter):
        raise UsageError(
            "--transport websockets needs a websockets_routes.Router "
            "(not a websockets_routes.core.Router)"
        )
    return serve_websockets(router, host, port, **options)


@asynccontextmanager
async def _anyio_on_socket(
    router: Router, host: str, sock: socket.socket, options: dict[str, Any]
) -> AsyncIterator[Any]:
    """The anyio server accepting on a listening socket it is given."""
    import anyio.abc

    from .transports.anyio import Server

    server = Server(router, host, None, **options)
    server.listeners = [await anyio.abc.SocketListener.from_socket(sock)]
    async with server:
        yield server


def _bound_port(server: Any) -> int:
    port = getattr(server, "port", None)
    if port is None:  # a websockets Server
        port = server.sockets[0].getsockname()[1]
    return int(port)


def _asyncapi(args: argparse.Namespace) -> int:
    router = load_router(args.router)
    try:
        document = router.asyncapi(args.title, args.version, args.server or None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.yaml:
        try:
            import yaml
        except ImportError:
            raise UsageError("--yaml needs PyYAML: pip install pyyaml") from None
        print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")
    else:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _make_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "routes":
            print(route_table(load_router(args.router)))
            return 0
        if args.command == "check":
            return _check(args)
        if args.command == "asyncapi":
            return _asyncapi(args)
        return _serve(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
