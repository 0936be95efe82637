"""The anyio server: listeners, one task per connection, one timer task, shutdown.

Structured concurrency: one task group per server. It holds one accept loop per
listening socket, one timer task for all connections (a heap of deadlines), one
task per connection (the handshake, then the handler), and a connection's reader
task when it needs one. ``server.close()`` stops accepting and lets each session
decide what shutdown means for its connection (see ``core.session``; with
``drain=N``, each at its moment of the N seconds, see ``core.drain``); handlers get
``close_timeout`` to finish, then are cancelled; ``wait_closed()`` returns when no
task of the server is left. Cancelling the ``async with serve(...)`` block cancels
everything at once; an exception in the block comes out as it is.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import socket
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import sniffio
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from ...core.drain import ServerShutdown, check_drain
from ...core.errors import handler_error_is_close
from ...core.naming import peer_name
from ...core.options import ACCEPT_RETRY_ERRNOS, READ_SIZE
from ...core.server import BaseServer
from .connection import Connection
from .sockets import LoopStream, PlainStream, SocketIO, accept_ready

__all__ = ["Server", "exit_task_group", "serve"]

logger = logging.getLogger("websockets_routes.server")

# Connections taken per wake of a listening socket.
_ACCEPT_BATCH = 100


class _Timers:
    """The deadlines of every connection in one heap, run by one task.

    ``schedule(at, callback)`` returns the entry, a one-item list: setting its item
    to None cancels it (and frees the connection at once, not at its deadline)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, list[Any]]] = []
        self._order = itertools.count()
        self._changed = anyio.Event()

    def schedule(self, at: float, callback: Callable[[float], None]) -> list[Any]:
        entry: list[Any] = [callback]
        if not self._heap or at < self._heap[0][0]:
            self._changed.set()
        heapq.heappush(self._heap, (at, next(self._order), entry))
        return entry

    async def run(self) -> None:
        heap = self._heap
        while True:
            now = self.clock()
            while heap and heap[0][0] <= now:
                callback = heapq.heappop(heap)[2][0]
                if callback is not None:
                    callback(now)
            while heap and heap[0][2][0] is None:
                heapq.heappop(heap)  # cancelled: no wake-up for a connection gone
            changed = self._changed = anyio.Event()
            with anyio.move_on_after(heap[0][0] - now if heap else math.inf):
                await changed.wait()


def _clock() -> Callable[[], float]:
    """The running loop's clock, without anyio's backend lookup per call."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.current_time
    if sniffio.current_async_library() == "asyncio":
        import asyncio

        return asyncio.get_running_loop().time
    return anyio.current_time


class Server(BaseServer):
    """A running server: ``async with serve(...) as server``.

    ``port`` (the bound port, also for ``port=0``), ``listeners``, ``sockets``,
    ``connections`` (the open ones), ``await serve_forever()``, ``close()``,
    ``await wait_closed()``, ``start_stream(stream, remote_address, done)``.
    """

    def __init__(
        self,
        router: Any,
        host: str | None = None,
        port: int | None = None,
        *,
        backlog: int = 1024,
        reuse_port: bool = False,
        on_handler_error: Callable[[Connection, BaseException], None] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(router, host, port, **options)
        self._backlog = backlog
        self._reuse_port = reuse_port
        self._on_handler_error = on_handler_error  # how the TestClient hears of errors
        self.listeners: list[anyio.abc.SocketListener] = []
        self.connections: set[Connection] = set()
        self._all: set[Connection] = set()  # handshakes included
        self._tg: anyio.abc.TaskGroup | None = None
        self._conn_tg: anyio.abc.TaskGroup | None = None
        self._timers: _Timers | None = None
        self._closing = False  # also when closed before it started
        self._read_buffer: memoryview | None = None  # LoopStream's, on asyncio
        self._idle: anyio.Event | None = None
        self._stop: anyio.Event | None = None
        self._closed: anyio.Event | None = None

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.listeners else "not listening"
        return f"<Server {where} {len(self.connections)} open>"

    @property
    def port(self) -> int:
        """The bound port (the first listener's)."""
        if not self.listeners:
            raise RuntimeError("the server is not listening")
        return int(self.listeners[0].extra(SocketAttribute.local_port))

    @property
    def sockets(self) -> list[Any]:
        return [listener.extra(SocketAttribute.raw_socket) for listener in self.listeners]

    def is_serving(self) -> bool:
        return self._tg is not None and not self._closing

    # Lifecycle

    async def __aenter__(self) -> Server:
        if self._tg is not None:
            raise RuntimeError("this server was already started")
        self._idle, self._stop, self._closed = anyio.Event(), anyio.Event(), anyio.Event()
        self._timers = _Timers(_clock())
        if sniffio.current_async_library() == "asyncio":
            # What asyncio reads into for every LoopStream (copied out at once).
            self._read_buffer = memoryview(bytearray(READ_SIZE))
        if self.requested_port is not None:
            multi = await anyio.create_tcp_listener(
                local_host=self.host,
                local_port=self.requested_port,
                backlog=self._backlog,
                reuse_port=self._reuse_port,
            )
            self.listeners = list(multi.listeners)  # type: ignore[arg-type]
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(self._host)
        except BaseException:
            self._closing = True
            await tg.__aexit__(*sys.exc_info())
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        tg = self._tg
        assert tg is not None
        try:
            self.close()
            await self.wait_closed()
        except BaseException:
            # Cancelled while shutting down gracefully: the task group cancels the rest.
            tg.cancel_scope.cancel()
            if exc_info[1] is None:
                return await tg.__aexit__(*sys.exc_info())
        return await exit_task_group(tg, *exc_info)

    async def serve_forever(self) -> None:
        """Serve until ``close()`` is called (from another task) and the server closed."""
        if self._closed is None:
            raise RuntimeError("use serve_forever() inside `async with serve(...)`")
        await self._closed.wait()

    def close(self, *, drain: float | None = None) -> None:
        """Stop accepting, close open connections with 1001, then (after
        ``close_timeout``) cancel the handlers still running. Does not wait.

        ``drain=N`` (seconds): close them with 1012 instead, at moments spread evenly
        over N seconds (see ``core.drain``); each handler's ``close_timeout`` starts
        from its connection's close. ValueError unless N is finite and >= 0. Once
        closing, a second call does nothing."""
        check_drain(drain)
        self._closing = True
        if self._conn_tg is None or self._timers is None:
            return
        plan = self.begin_shutdown(drain, self._timers.clock())
        if plan is not None:
            self._stop_listening()  # connects are refused from now on, not accepted late
            self._conn_tg.start_soon(self._shutdown, plan)

    async def wait_closed(self) -> None:
        """Wait until every connection and task of the server has ended."""
        if self._closed is not None:
            await self._closed.wait()

    # Internals

    async def _host(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        assert self._stop is not None and self._closed is not None
        try:
            async with anyio.create_task_group() as tg:
                self._conn_tg = tg
                for listener in self.listeners:
                    tg.start_soon(self._accept_loop, listener)
                assert self._timers is not None
                tg.start_soon(self._timers.run)
                task_status.started()
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            self._conn_tg = None
            await self._close_listeners()
            self._closed.set()

    def _stop_listening(self) -> None:
        for listener in self.listeners:
            sock = listener.extra(SocketAttribute.raw_socket)
            if sock.fileno() != -1:
                anyio.notify_closing(sock)  # the accept loop waiting on it ends
                sock.close()

    async def _close_listeners(self) -> None:
        self._stop_listening()
        for listener in self.listeners:
            await anyio.aclose_forcefully(listener)

    async def _shutdown(self, plan: ServerShutdown) -> None:
        assert self._idle is not None and self._stop is not None
        await self._close_listeners()
        assert self._timers is not None
        clock = self._timers.clock
        connections = list(self._all)
        sessions = [ws.session for ws in connections]
        for ws, actions in zip(connections, plan.apply(sessions, clock()), strict=True):
            if ws._act(actions):
                ws._spawn(ws._flush)
        if self._all:
            # Each session closes at its moment, gives its handler close_timeout,
            # cancels it, then ends its TCP within close_timeout: past the last
            # moment and twice that, the task group stops them.
            give_up = plan.give_up_at(self.options.close_timeout)
            with anyio.move_on_after(math.inf if give_up is None else give_up - clock()):
                await self._idle.wait()
            if self._all:
                logger.info("cancelling %d connection(s) still open at shutdown", len(self._all))
        self._stop.set()

    async def _accept_loop(self, listener: anyio.abc.SocketListener) -> None:
        assert self._conn_tg is not None
        listening = listener.extra(SocketAttribute.raw_socket)
        while not self._closing:
            try:
                accepted = await accept_ready(listening, _ACCEPT_BATCH)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:
                if self._closing:
                    return
                if exc.errno not in ACCEPT_RETRY_ERRNOS:
                    raise
                # Out of descriptors or memory: wait a little and accept again.
                logger.error("accept() failed (%s); retrying in 1 s", exc)
                await anyio.sleep(1.0)
                continue
            for sock, address in accepted:
                self._conn_tg.start_soon(self._handle_socket, sock, address)

    async def _handle_socket(self, sock: socket.socket, address: Any) -> None:
        stream: anyio.abc.ByteStream
        try:
            if self.options.ssl is not None:
                stream = await anyio.abc.SocketStream.from_socket(sock)
            elif self._read_buffer is not None:  # on asyncio
                stream = await LoopStream.accept(sock, self._read_buffer)
            else:
                stream = SocketIO(sock)
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            # The peer left before its stream was made: that connection only is over.
            logger.info("connection from %s lost at once: %s", peer_name(address), exc)
            return
        await self.handle_stream(stream, address)

    def start_stream(
        self,
        stream: anyio.abc.ByteStream,
        remote_address: Any = None,
        done: anyio.Event | None = None,
    ) -> None:
        """Serve one already-connected byte stream in this server's task group;
        ``done`` is set when the connection has ended."""
        if self._conn_tg is None or self._closing:
            raise RuntimeError("the server is not running")
        self._conn_tg.start_soon(self.handle_stream, stream, remote_address, done)

    async def handle_stream(
        self,
        stream: anyio.abc.ByteStream,
        remote_address: Any = None,
        done: anyio.Event | None = None,
    ) -> None:
        """Serve one connection on ``stream`` until it ends (closing the stream)."""
        closed = False
        try:
            if remote_address is None:
                remote_address = _attribute(stream, SocketAttribute.remote_address)
            local = _attribute(stream, SocketAttribute.local_address)
            closed = await self._serve(stream, remote_address, local)
        except Exception:
            logger.exception("connection from %s failed", peer_name(remote_address))
        finally:
            if not closed:
                await anyio.aclose_forcefully(stream)
            if done is not None:
                done.set()

    async def _serve(self, stream: anyio.abc.ByteStream, remote_address: Any, local: Any) -> bool:
        """Serve one connection; True if its stream is closed."""
        timers = self._timers
        assert timers is not None and self._conn_tg is not None
        # Closing an anyio stream may drop what it has not sent yet (on asyncio):
        # such connections end TCP at the peer's EOF. A socket's close never does.
        linger = not isinstance(stream, PlainStream)
        session, actions = self.new_session(remote_address, timers.clock(), linger=linger)
        tcp = stream
        if self.options.ssl is not None:
            tcp = _SerialSend(stream)
        ws = Connection(
            tcp,
            session,
            clock=timers.clock,
            spawn=self._conn_tg.start_soon,
            schedule=timers.schedule,
            local_address=local,
        )
        self._all.add(ws)
        try:
            ws._act(actions)  # closing already: close it at once
            if self.options.ssl is not None:
                try:
                    tls = await TLSStream.wrap(
                        tcp, server_side=True, ssl_context=self.options.ssl, standard_compatible=False
                    )
                except Exception as exc:
                    logger.info("TLS handshake with %s failed: %s", peer_name(remote_address), exc)
                    return False
                ws._stream, ws._eof_stream = tls, tcp
            while not session.ended and not ws._resolving:
                await ws.read_once()
            if ws._resolving:
                await self._resolve(ws)
            if ws.path is not None:
                self.connections.add(ws)
                await self._run_handler(ws, isinstance(stream, PlainStream))
            await ws.finish()
            return ws.closed_stream(stream)
        finally:
            self._all.discard(ws)
            self.connections.discard(ws)
            if self._closing and not self._all and self._idle is not None:
                self._idle.set()

    async def _resolve(self, ws: Connection) -> None:
        session = ws.session
        decision = session.resolve_now(self.router)
        if decision is None:
            with anyio.CancelScope() as scope:
                ws._task_scope = scope
                decision = await session.resolve(self.router)
            ws._task_scope = None
            if scope.cancelled_caught:
                return  # open_timeout: the session aborted the connection
        if ws._act(session.carry_out(decision, ws._clock(), self.limit)):
            await ws._flush()

    async def _run_handler(self, ws: Connection, on_socket: bool) -> None:
        session = ws.session
        # Only a socket's read can be cancelled without losing anything: a TLS read
        # may be writing TLS records of its own, and a memory stream may have handed
        # over its item already. Those get the reader task at once.
        if on_socket:
            ws.watch_reading()
        else:
            ws._start_reader()
        try:
            with anyio.CancelScope() as scope:
                ws._task_scope = scope
                await ws.path.route.handle(ws, ws.path)
        except Exception as exc:
            actions = session.handler_failed(exc, ws._clock())
            if self._on_handler_error is not None and not handler_error_is_close(exc):
                self._on_handler_error(ws, exc)
        else:
            ws._task_scope = None
            if scope.cancelled_caught:  # CancelHandler: the shutdown grace ran out
                actions = session.handler_cancelled(ws._clock())
            else:
                actions = session.handler_returned(ws._clock())
        if ws._act(actions):
            await ws._flush()


def _attribute(stream: anyio.abc.ByteStream, attribute: Any) -> Any:
    # One lookup: anyio builds the stream's whole table of attributes on each access,
    # and the table must not live as long as the connection.
    getter = stream.extra_attributes.get(attribute)
    return getter() if getter is not None else None


async def exit_task_group(
    tg: anyio.abc.TaskGroup,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool | None:
    """Leave ``tg`` after its block ended with ``exc``: an ``Exception`` from the block
    (an assert, say) comes out as it is, not wrapped in an ExceptionGroup."""
    if isinstance(exc, Exception):
        await tg.__aexit__(None, None, None)
        return None
    return await tg.__aexit__(exc_type, exc, tb)


class _SerialSend(anyio.abc.ByteStream):
    """A TCP stream for a TLS layer whose sends may come from two tasks at once.

    anyio's TLSStream flushes its outgoing records from whichever task needs it
    (the reader, for TLS 1.3 post-handshake messages, as well as the writer); a
    lock keeps those sends one at a time and in the order the records were made.
    """

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._lock = anyio.Lock()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        async with self._lock:
            await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Any:
        return self._stream.extra_attributes


def serve(router: Any, host: str | None = None, port: int = 0, **options: Any) -> Server:
    """Serve ``router`` on ``host``:``port``; use as ``async with serve(...) as server``.

    Runs under asyncio and trio alike (``anyio.run(main, backend="trio")``). Options:
    ``max_size``, ``max_queue``, ``open_timeout``, ``ping_interval``, ``ping_timeout``,
    ``close_timeout``, ``max_header_bytes``, ``compression``, ``ssl``,
    ``max_connections`` (see ``core.options.ServerOptions``), ``backlog``,
    ``reuse_port``.
    """
    return Server(router, host, port, **options)
