"""``serve``: one process, or ``--workers N`` of them (``workers.py``), and how it
stops. ``StopSignals`` acts on the first SIGINT (1001) or SIGTERM (1012, drained) and
quits at once on a second SIGINT; a repeated SIGTERM never cuts a drain."""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any, NoReturn

from ..core import Router
from ..core.naming import host_port
from .common import (
    ACCESS_LOGGER,
    DEFAULT_DRAIN,
    DRAINING,
    INTERRUPTED,
    NEEDS,
    NO_LIMIT,
    OWN_SERVERS,
    UsageError,
    load_router,
)


def serve_command(args: argparse.Namespace) -> int:
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
        from ..workers import ParentLink

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
    from .. import workers

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
        from ..transports.asyncio import serve

        if sock is not None:
            return serve(router, sock=sock, **options)
        return serve(router, host, port, reuse_port=reuse_port, **options)
    if transport in ("trio", "anyio"):
        from ..transports import anyio as anyio_transport

        if sock is not None:
            return _anyio_on_socket(router, host, sock, options)
        return anyio_transport.serve(router, host, port, reuse_port=reuse_port, **options)
    from .. import Router as PublicRouter
    from ..transports.websockets import serve as serve_websockets

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

    from ..transports.anyio import Server

    server = Server(router, host, None, **options)
    server.listeners = [await anyio.abc.SocketListener.from_socket(sock)]
    async with server:
        yield server


def _bound_port(server: Any) -> int:
    port = getattr(server, "port", None)
    if port is None:  # a websockets Server
        port = server.sockets[0].getsockname()[1]
    return int(port)
