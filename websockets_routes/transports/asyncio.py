"""Our asyncio WebSocket server: an ``asyncio.BufferedProtocol`` that carries out
what ``core.session.Session`` decides.

```python
from websockets_routes.transports.asyncio import serve

async with serve(router, "127.0.0.1", 8765) as server:
    await server.serve_forever()
```

The protocol object is also the connection handlers get (``WebSocket``): ``send``,
``recv``, ``async for``, ``close``, ``ping``, ``wait_closed``, ``path``, ``request``,
``subprotocol``, ``remote_address``, ``close_code``. Everything is callback-driven:
one task per connection (the handler), one loop timer per connection, no task per
message. The session decides every rule (deadlines, back-pressure, how TCP ends,
shutdown); this module moves bytes, keeps time and runs handlers. Works on uvloop.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
from collections.abc import Generator
from typing import Any

from ..core import actions as kinds
from ..core.actions import WAKE_ONLY, Actions
from ..core.connection import State
from ..core.drain import ServerShutdown, check_drain
from ..core.options import READ_SIZE
from ..core.paths import RoutedPath
from ..core.server import BaseServer
from ..core.session import Session
from ..core.websocket import SessionAttributes

__all__ = ["serve", "Server", "WebSocket"]

# Attempts at one port for all addresses of the host (see Server._create_server).
_PORT_TRIES = 20
# Reads this large go to the session as a view of that buffer: the core copies only
# what it keeps (a partial frame), not every byte once more.
_COPY_UNDER = 2048


class WebSocket(SessionAttributes, asyncio.BufferedProtocol):
    """One server connection: the asyncio protocol and the handler's ``ws`` object."""

    __slots__ = (
        "_server",
        "_loop",
        "transport",
        "session",
        "path",
        "_recv_waiter",
        "_write_paused",
        "_drain_waiters",
        "_done",
        "_task",
        "_timer",
        "__weakref__",
    )

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = server._loop
        self.transport: Any = None
        self.session: Session = None  # type: ignore[assignment]
        self.path: RoutedPath | None = None
        self._recv_waiter: asyncio.Future[Any] | None = None
        self._write_paused = False
        # Made when first needed: an idle connection carries neither.
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._done: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        if self.session is None:
            return "<WebSocket>"
        return f"<WebSocket {self.remote_address!r} {self.session.state.name}>"

    # asyncio.Protocol callbacks

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        server = self._server
        peer = transport.get_extra_info("peername")
        self.session, actions = server.new_session(peer, self._loop.time())
        server._connections.add(self)
        deadline = self.session.next_deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)
        self._carry_out(actions)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._server._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        view = self._server._read_buffer[:nbytes]
        # Small reads: a copy is cheaper than slicing views.
        data = bytes(view) if nbytes < _COPY_UNDER else view
        now = self._loop.time()
        actions = self.session.receive_data(data, now)
        if actions is WAKE_ONLY:  # a message, nothing else: the common case
            waiter = self._recv_waiter
            if waiter is not None and not waiter.done():
                self._hand_over(waiter, now)
        elif self._carry_out(actions) and self._write_paused:
            # Our answers (pongs) wait for a peer that does not read them.
            self._carry_out(self.session.replies_blocked())

    def eof_received(self) -> bool:
        self._carry_out(self.session.receive_eof(self._loop.time()))
        return True  # the session says when TCP ends

    def connection_lost(self, exc: Exception | None) -> None:
        self._carry_out(self.session.receive_eof(self._loop.time()))
        if self._timer is not None and self.session.next_deadline() is None:
            self._timer.cancel()  # else a handler's shutdown grace still runs
        self._wake_writers()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
        self._server._connection_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()
        self._carry_out(self.session.writes_resumed())

    # Carrying out the session's actions

    def _carry_out(self, actions: Actions) -> bool:
        """Do what the session said, in order; True if something was written."""
        wrote = False
        for action in actions:
            kind = type(action)
            if kind is kinds.WakeReceiver:
                waiter = self._recv_waiter
                if waiter is not None and not waiter.done():
                    self._hand_over(waiter, self._loop.time())
            elif kind is kinds.Write:
                self.transport.write(action.data)  # type: ignore[attr-defined]
                wrote = True
            elif kind is kinds.ArmTimer:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self._loop.call_at(action.at, self._on_timer)  # type: ignore[attr-defined]
            elif kind is kinds.Resolve:
                self._resolve()
            elif kind is kinds.StartHandler:
                self.path = action.path  # type: ignore[attr-defined]
                if asyncio.current_task() is not self._task or self._task is None:
                    self._task = self._server._spawn(self._handle(), self)
            elif kind is kinds.PauseReading:
                self.transport.pause_reading()
            elif kind is kinds.ResumeReading:
                if not self.transport.is_closing():
                    self.transport.resume_reading()
            elif kind is kinds.CompletePing:
                future = action.waiter  # type: ignore[attr-defined]
                if not future.done():
                    future.set_result(self._loop.time() - action.sent)  # type: ignore[attr-defined]
            elif kind is kinds.NotifyClosed:
                self._notify_closed(action)  # type: ignore[arg-type]
            elif kind is kinds.CloseTCP or kind is kinds.HalfCloseTCP:
                self._end_tcp(half=kind is kinds.HalfCloseTCP)
            elif kind is kinds.AbortTCP:
                self.transport.abort()
            elif kind is kinds.CancelResolve or kind is kinds.CancelHandler:
                if self._task is not None:
                    self._task.cancel()
        return wrote

    def _task_done(self, task: asyncio.Task[None]) -> None:
        server = self._server
        server._tasks.discard(task)
        if self.transport.is_closing() and self._task is task:
            server._connection_lost(self)

    def _hand_over(self, waiter: asyncio.Future[Any], now: float) -> None:
        """Give a waiting recv() its message at once: one look at the queue, not two."""
        if self.session.messages:
            message, actions = self.session.next_message(now)
            waiter.set_result(message)
            if actions:
                self._carry_out(actions)
        else:
            waiter.set_result(None)  # recv() looks again: it raises, or waits

    def _notify_closed(self, action: kinds.NotifyClosed) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        for future in action.ping_waiters:
            if not future.done():
                future.set_exception(action.error)
                future.exception()  # nobody has to await it: don't log it as lost
        self._wake_writers()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _end_tcp(self, half: bool) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        if transport.can_write_eof():
            try:
                transport.write_eof()  # the FIN leaves with what was written last
            except OSError:
                transport.abort()
                return
        elif half:
            half = False  # TLS: no half-close, the close_notify ends it
        if not half:
            transport.close()

    def _on_timer(self) -> None:
        self._timer = None
        self._carry_out(self.session.on_timer(self._loop.time()))

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # The handler's task

    def _resolve(self) -> None:
        """Carry out the decision now when it needs no await, else in the task that
        then runs the handler."""
        decision = self.session.resolve_now(self._server.router)
        if decision is None:
            self._task = self._server._spawn(self._resolve_then_handle(), self)
        else:
            self._carry_out(self.session.carry_out(decision, self._loop.time(), self._server.limit))

    async def _resolve_then_handle(self) -> None:
        try:
            decision = await self.session.resolve(self._server.router)
        except asyncio.CancelledError:  # open_timeout or shutdown during a slow hook
            self.transport.abort()
            raise
        self._carry_out(self.session.carry_out(decision, self._loop.time(), self._server.limit))
        if self.path is not None and self.session.state is State.OPEN:
            await self._handle()

    async def _handle(self) -> None:
        session = self.session
        path = self.path
        assert path is not None
        try:
            await path.route.handle(self, path)
        except asyncio.CancelledError:
            self._carry_out(session.handler_cancelled(self._loop.time()))
            raise
        except Exception as exc:
            actions = session.handler_failed(exc, self._loop.time())
        else:
            actions = session.handler_returned(self._loop.time())
        self._carry_out(actions)

    # The connection API for handlers

    async def recv(self) -> str | bytes:
        """The next message (``str`` or ``bytes``); ConnectionClosed once closed."""
        session = self.session
        while True:
            message, actions = session.next_message(self._loop.time())
            if actions:
                self._carry_out(actions)
                if message is None:
                    continue  # failing bad input: recv() raises next
            if message is not None:
                return message
            if self._recv_waiter is not None:
                raise RuntimeError("recv() is already waiting for a message in another task")
            waiter = self._recv_waiter = self._loop.create_future()
            try:
                message = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    session.untake(waiter.result())  # handed over, then cancelled
                raise
            finally:
                self._recv_waiter = None
            if message is not None:
                return message

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary (bytes-like) message."""
        conn = self.session.conn  # the driver's send: no policy
        if self._server._write_parts:
            head, tail = conn.send_parts(message)
            if tail:  # a large payload: written as it is, after its header
                self.transport.writelines((head, tail))
            else:
                self.transport.write(head)
        else:
            self.transport.write(conn.send(message))
        if self._write_paused:
            await self._drain()

    async def _drain(self) -> None:
        while self._write_paused and not self.transport.is_closing():
            waiter: asyncio.Future[None] = self._loop.create_future()
            if self._drain_waiters is None:
                self._drain_waiters = []
            self._drain_waiters.append(waiter)
            await waiter
        if self.session.state is State.CLOSED:
            raise self.session.closed_error()

    # What a Broadcast writes (websockets_routes.broadcast.members.FrameMember)

    def write_shared(self, message: str | bytes, frame: bytes) -> int | None:
        """Write a broadcast message without waiting (``frame``: its uncompressed frame,
        built once for every member). The bytes the transport holds unsent, or None
        once the connection is not open."""
        if self.session.state is not State.OPEN or self.transport.is_closing():
            return None
        self.transport.write(self.session.conn.send_shared(message, frame))
        # Counted only past the high-water mark (asyncio's default: 64 KiB), where
        # asyncio pauses us: below it, nothing to act on, and no count to pay for.
        return self.transport.get_write_buffer_size() if self._write_paused else 0

    def close_nowait(self, code: int, reason: str = "") -> None:
        """Start the closing handshake without waiting for it (a broadcast member past
        its backlog: the close frame goes after what is already queued)."""
        self._carry_out(self.session.close(code, reason, self._loop.time()))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait for it to end (or ``close_timeout``)."""
        self._carry_out(self.session.close(code, reason, self._loop.time()))
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        if self.session.closed and self._done is None:
            return
        if self._done is None:
            self._done = self._loop.create_future()
        await asyncio.shield(self._done)

    async def ping(self, data: str | bytes | None = None) -> asyncio.Future[float]:
        """Send a ping; return a future of the round-trip time once its pong arrives."""
        payload = None if data is None else data.encode() if isinstance(data, str) else bytes(data)
        future: asyncio.Future[float] = self._loop.create_future()
        self.transport.write(self.session.ping(payload, future, self._loop.time()))
        return future

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited pong."""
        self.transport.write(self.session.pong(data.encode() if isinstance(data, str) else data))

    @property
    def local_address(self) -> Any:
        return self.transport.get_extra_info("sockname")


class Server(BaseServer):
    """A running (or about to run) server; ``serve()`` makes one.

    ``await serve(...)`` or ``async with serve(...) as server`` starts it.
    """

    def __init__(
        self,
        router: Any,
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        reuse_port: bool = False,
        backlog: int = 1024,
        **options: Any,
    ) -> None:
        super().__init__(router, host, port, **options)
        self.sock = sock
        self.reuse_port = reuse_port
        self.backlog = backlog
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.Server | None = None
        # What the loop reads into for every connection: each callback copies out what
        # it needs before the next read.
        self._read_buffer = memoryview(bytearray(READ_SIZE))
        # Whether send() hands a large message's header and payload to the transport
        # apart (writelines), set by start(): on uvloop over plain TCP, whose writelines
        # is one vectored write, the payload is not copied into a joined frame. Not on
        # asyncio's own loop: up to 3.11 its writelines joins them anyway, and 3.12 and
        # 3.13 releases before CPython's fixes skip write flow control in it
        # (gh-127655) or fail once the connection is lost (gh-136234). Not over TLS:
        # encrypting copies the payload anyway, and the header would be a TLS record.
        self._write_parts = False
        self._connections: set[WebSocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed: asyncio.Event | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._idle: asyncio.Future[None] | None = None
        self._starting: asyncio.Future[None] | None = None

    async def start(self) -> Server:
        """Bind and start accepting; returns self. Calling it again (even while the
        first call is binding) waits for the same start."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await self._starting
        return self

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        uvloop = sys.modules.get("uvloop")  # imported by whoever made a uvloop loop
        self._write_parts = (
            uvloop is not None and isinstance(self._loop, uvloop.Loop) and self.options.ssl is None
        )
        self._closed = asyncio.Event()
        kwargs: dict[str, Any] = {"ssl": self.options.ssl, "backlog": self.backlog}
        if self.options.ssl is not None and self.options.open_timeout is not None:
            # open_timeout covers the TLS handshake too; asyncio's own limit is 60 s.
            kwargs["ssl_handshake_timeout"] = self.options.open_timeout
        if self.sock is not None:
            kwargs["sock"] = self.sock
        else:
            kwargs["host"] = self.host
            kwargs["port"] = self.requested_port or 0
            if self.reuse_port:
                kwargs["reuse_port"] = True
        self._server = await self._create_server(kwargs)

    async def _create_server(self, kwargs: dict[str, Any]) -> asyncio.Server:
        """``loop.create_server()``, with one port for every address: asyncio binds
        each address of the host (``None``: IPv4 and IPv6) to a port of its own when
        the port is 0, and ``server.port`` would then reach only one of them. So
        all are bound again to the first one's port (from a fresh port if another
        program takes that one in between)."""
        server = await self._loop.create_server(lambda: WebSocket(self), **kwargs)
        if kwargs.get("port") != 0:
            return server
        for _ in range(_PORT_TRIES):
            ports = {sock.getsockname()[1] for sock in server.sockets}
            if len(ports) <= 1:
                return server
            port = server.sockets[0].getsockname()[1]
            server.close()
            await server.wait_closed()
            try:
                return await self._loop.create_server(
                    lambda: WebSocket(self), **{**kwargs, "port": port}
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
            server = await self._loop.create_server(lambda: WebSocket(self), **kwargs)
        server.close()
        await server.wait_closed()
        raise OSError(errno.EADDRINUSE, f"no free port for every address of {self.host!r}")

    def _spawn(self, coro: Any, ws: WebSocket) -> asyncio.Task[None]:
        """A task of this server's for ``ws``: ``close()`` waits for it."""
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        # A bound method, not a closure: about 200 bytes less for each open connection.
        task.add_done_callback(ws._task_done)
        return task

    def __await__(self) -> Generator[Any, None, Server]:
        return self.start().__await__()

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def port(self) -> int:
        """The bound port (also when started with port 0)."""
        for sock in self.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("the server is not listening")

    async def serve_forever(self) -> None:
        """Serve until ``close()``; when cancelled, shut down gracefully first."""
        await self.start()
        assert self._closed is not None
        try:
            await self._closed.wait()
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    def close(self, *, drain: float | None = None) -> None:
        """Stop accepting, close open connections with 1001, cancel handlers that are
        still running ``close_timeout`` later. ``wait_closed()`` waits for all that.

        ``drain=N`` (seconds): close them with 1012 instead, at moments spread evenly
        over N seconds (see ``core.drain``); each handler's ``close_timeout`` starts
        from its connection's close. ValueError unless N is finite and >= 0. Once
        closing, a second call does nothing."""
        if self._server is None:
            check_drain(drain)
            return
        plan = self.begin_shutdown(drain, self._loop.time())
        if plan is not None:
            self._server.close()
            self._shutdown_task = self._loop.create_task(self._shutdown(plan))

    async def _shutdown(self, plan: ServerShutdown) -> None:
        connections = list(self._connections)
        sessions = [ws.session for ws in connections]
        for ws, actions in zip(connections, plan.apply(sessions, self._loop.time()), strict=True):
            ws._carry_out(actions)
        # Each session closes its connection at its moment, gives its handler (or
        # hook) close_timeout, then cancels it, and ends its TCP connection: the
        # handshake, or close_timeout.
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._connections:
            self._idle = self._loop.create_future()
            await self._idle
        assert self._server is not None
        await self._server.wait_closed()
        assert self._closed is not None
        self._closed.set()

    def _connection_lost(self, ws: WebSocket) -> None:
        """TCP is over, or the handler ended: ``ws`` leaves when both are."""
        if ws._task is not None and not ws._task.done():
            return  # its handler runs on: shutdown() must still reach its session
        self._connections.discard(ws)
        if not self._connections and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection and handler has ended."""
        if self._closed is None:
            return
        await self._closed.wait()


def serve(
    router: Any,
    host: str | None = None,
    port: int | None = None,
    **options: Any,
) -> Server:
    """Serve ``router`` on ``host:port``: ``async with serve(...) as server`` (or await).

    Options: ``max_size`` (1 MiB; None: no limit), ``max_queue`` (16 messages),
    ``open_timeout`` (10 s), ``ping_interval`` (20 s), ``ping_timeout`` (20 s),
    ``close_timeout`` (10 s), ``max_header_bytes`` (16 KiB), ``compression``
    ("deflate" or None), ``ssl`` (an SSLContext), ``max_connections`` (None: no
    limit; past it a handshake gets 503), ``sock`` (a bound socket instead of
    host/port), ``reuse_port``, ``backlog``.
    """
    return Server(router, host, port, **options)
