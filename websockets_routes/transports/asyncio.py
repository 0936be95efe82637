"""Our asyncio WebSocket server: a lean ``asyncio.Protocol`` around the sans-IO driver.

```python
from websockets_routes.transports.asyncio import serve

async with serve(router, "127.0.0.1", 8765) as server:
    await server.serve_forever()
```

The protocol object is also the connection handlers get (``WebSocket``): ``send``,
``recv``, ``async for``, ``close``, ``ping``, ``wait_closed``, ``path``, ``request``,
``subprotocol``, ``remote_address``, ``close_code``. Everything is callback-driven:
one task per connection (the handler, after ``router.resolve()``), timers for the
timeouts and keepalive, no extra task per message. Backpressure both ways: reading
pauses while ``max_queue`` messages wait for ``recv()``; ``send()`` waits while the
write buffer is over its high-water mark. Works on uvloop.

Latency of a short connection (connect, hello, close), which waits on every step:
on a selector loop the accept callback makes the transport at once (asyncio's own
path takes a task and two more loop iterations); when ``resolve()`` has nothing to
await, the handshake is answered in the callback that read the request, so the 101
leaves before the handler's task starts (a 101 answered from the task waits for the
handler's first message instead, to leave in one segment with it); after the closing
handshake the FIN leaves with the close frame, before anyone is woken.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Coroutine, Generator
from typing import Any

from ..core.connection import ServerConnection, State
from ..core.events import Closed, RequestReceived
from ..core.handshake import Request, resolve_pending, resolve_rest, resolve_start
from ..core.iteration import MessageIteration
from ..core.paths import RoutedPath
from ..core.router import check_router, resolves_in_steps
from ..core.session import (
    ACCEPT_RETRY_ERRNOS,
    FAILING,
    KEEPALIVE,
    MESSAGES,
    PAUSE,
    PONGS,
    ServerOptions,
    Session,
    logger,  # noqa: F401 - re-exported: the transport logs as websockets_routes.server
)
from ..core.session import (
    CLOSED as CLOSED_FLAG,
)

__all__ = ["serve", "Server", "WebSocket"]

# Attempts at one port for all addresses of the host (see Server._create_server).
_PORT_TRIES = 20

OPEN = State.OPEN
CLOSING = State.CLOSING
_HEAP_READ_SIZE = 128 * 1024 - 1024  # see connection_made()
CLOSED = State.CLOSED
DECIDING = State.DECIDING


class WebSocket(MessageIteration, asyncio.Protocol):
    """One server connection: the asyncio protocol and the handler's ``ws`` object.

    What a message, a pong, a close or the handler's end means for the connection
    (queue and ``max_queue``, ping waiters, keepalive, 1000/1011/1001, failures
    deferred behind unread messages) is ``core.session.Session``'s, shared with the
    anyio transport; this class moves bytes and runs the timers.
    """

    __slots__ = (
        "_server",
        "_loop",
        "transport",
        "conn",
        "session",
        "remote_address",
        "request",
        "path",
        "subprotocol",
        "_recv_waiter",
        "_queue_full",
        "_deciding",
        "_replies_blocked",
        "_cork",
        "_reading",
        "_write_paused",
        "_drain_waiters",
        "_done",
        "_task",
        "_open_timer",
        "_keepalive_timer",
        "_close_timer",
        "_fail_timer",
        "_ending",
        "__weakref__",
    )

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = server._loop
        self.transport: Any = None
        self.conn: ServerConnection = None  # type: ignore[assignment]
        self.session: Session = None  # type: ignore[assignment]  # once the handshake is done
        self.remote_address: Any = None
        self.request: Request | None = None
        self.path: RoutedPath | None = None
        self.subprotocol: str | None = None
        # A recv() waiting: its future gets the message (or None: look again).
        self._recv_waiter: asyncio.Future[Any] | None = None
        self._queue_full = False  # reading paused by the message queue
        self._deciding = False  # reading paused: bytes came while the handshake is decided
        self._replies_blocked = False  # reading paused: our pongs wait for a non-reader
        # The 101 waits for the handler's first message (or the end of this loop
        # iteration): both leave in one segment, with one send() system call.
        self._cork: list[bytes] | None = None
        self._reading = True
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._task: asyncio.Task[None] | None = None
        self._open_timer: asyncio.TimerHandle | None = None
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._fail_timer: asyncio.TimerHandle | None = None
        self._ending = False

    def __repr__(self) -> str:
        return f"<WebSocket {self.remote_address!r} {self.conn.state.name if self.conn else ''}>"

    # asyncio.Protocol callbacks

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if getattr(transport, "max_size", None) == 256 * 1024:
            # asyncio's selector transport reads into a fresh 256 KiB bytes object
            # each time: above glibc's mmap threshold (128 KiB) unless something
            # raised it, that is mmap + mremap + munmap for every message (measured:
            # twice the CPU per echo). Just under the threshold it comes from the heap.
            transport.max_size = _HEAP_READ_SIZE
        server = self._server
        self.remote_address = transport.get_extra_info("peername")
        self.conn = server.options.connection(self.remote_address)
        server._connections.add(self)
        open_timeout = server.options.open_timeout
        if open_timeout is not None:
            self._open_timer = self._loop.call_later(open_timeout, self._open_timed_out)
        if server._closing:
            transport.abort()

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is not None:
            flags = session.receive_data(data)
            out = self.conn.data_to_send()  # receive_data() queues only in the driver
            if out:
                self._write(out)
                if self._write_paused and not self._replies_blocked:
                    # Our answers (pongs) wait for a peer that does not read them:
                    # read no more of its input until they can go (a ping flood
                    # stays bounded).
                    self._replies_blocked = True
                    self._update_reading()
            if flags == MESSAGES:  # the hot path: hand the message to a waiting recv()
                waiter = self._recv_waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(session.take()[0])
            elif flags:
                self._apply(flags)
            return
        # The opening handshake: the request, or a 400/431 answer and Closed.
        conn = self.conn
        events = conn.receive_data(data)
        out = conn.data_to_send()
        if out:
            self._write(out)
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                request = self.request = event.request
                server = self._server
                if not server._resolve_inline:
                    self._start(self._run(request, None))
                    continue
                # resolve() in two steps: when its answer needs no await (no hook, no
                # HTTP view), it is carried out here and the 101 leaves now, not a
                # loop iteration later from a task; the peer reads it while the
                # handler's task starts.
                decision = resolve_start(server.router, request)
                if resolve_pending(decision):
                    self._start(self._run(request, decision))
                    continue
                path = self._answer(decision, cork=False)
                if path is not None:
                    self._start(self._handle(path))
            elif kind is Closed:
                self._closed()
        if conn.state is DECIDING and not events and not self._deciding:
            # Bytes ahead of our answer (the driver keeps them): read no more till then.
            self._deciding = True
            self._update_reading()

    def eof_received(self) -> bool | None:
        self._eof()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof()
        for timer in (
            self._open_timer,
            self._keepalive_timer,
            self._close_timer,
            self._fail_timer,
        ):
            if timer is not None:
                timer.cancel()
        self._wake_writers()
        if not self._done.done():
            self._done.set_result(None)
        self._server._connection_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()
        if self._replies_blocked:
            self._replies_blocked = False
            self._update_reading()

    # What the driver and the session report

    def _eof(self) -> None:
        if self.session is not None:
            flags = self.session.receive_eof()
            if flags:
                self._apply(flags)
        elif self.conn.state is not CLOSED:
            self.conn.receive_eof()
            self._closed()

    def _apply(self, flags: int) -> None:
        """Act on ``Session`` flags (see core.session)."""
        if flags & MESSAGES:
            waiter = self._recv_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if flags & PAUSE and not self._queue_full:
            self._queue_full = True
            self._update_reading()
        if flags & PONGS:
            now = self._loop.time()
            for future, sent in self.session.take_acked():
                if not future.done():
                    future.set_result(now - sent)
        if flags & KEEPALIVE:
            self._arm_keepalive()
        if flags & FAILING and self._fail_timer is None:
            self._failure_pending()
        if flags & CLOSED_FLAG:
            self._closed()

    def _closing(self, flags: int) -> None:
        """After a closing call on the session: write its close frame, arm
        close_timeout, read again if the queue had paused reading (the peer's
        close frame must get through)."""
        session = self.session
        out = session.data_to_send()
        if out:
            self._write(out)
        if self.conn.state is CLOSING:
            self._arm_close_timer()
        if self._queue_full and not session.paused:
            self._queue_full = False
            self._update_reading()
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # recv() raises from now on
        if flags:
            self._apply(flags)

    def _closed(self) -> None:
        """The driver reached CLOSED: end the TCP connection, then wake everyone.

        The FIN goes first: a peer that waits for it (the closing handshake is its
        last step) waits for nothing else, and waking the handler costs time."""
        self._end_tcp()
        session = self.session
        if session is not None:
            waiter = self._recv_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)  # recv() finds the connection closed
            error = session.closed_error()
            for future in session.take_pings():
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # nobody has to await it: don't log it as lost
        self._wake_writers()
        if not self._done.done():
            self._done.set_result(None)

    def _end_tcp(self) -> None:
        """RFC 6455 7.1.1: the server closes TCP first.

        After a completed closing handshake the peer has nothing more to send: close.
        Otherwise (an error, an HTTP answer) half-close and read until the peer's EOF,
        so that bytes still in flight from it do not make our kernel answer with a
        reset, which could destroy our last frame or response before it is read."""
        if self._ending:
            return
        self._ending = True
        self._uncork()
        transport = self.transport
        if transport.is_closing():
            return
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        if self.conn.close_received is not None and self.conn.close_sent is not None:
            if not transport.get_write_buffer_size() and transport.can_write_eof():
                # The FIN leaves now, with the close frame, not one loop iteration
                # later when close() gets to the socket (after the handler's task has
                # ended): a peer that waits for our end of the TCP connection waits
                # for nothing else (measured: ~0.1-0.19 ms per connection).
                try:
                    transport.write_eof()
                except OSError:
                    pass  # the peer is gone already: close() below ends it all
            transport.close()
            if transport.get_write_buffer_size():
                self._arm_close_timer()  # in case the peer does not read what is left
        elif transport.can_write_eof():
            try:
                transport.write_eof()
            except (OSError, RuntimeError):
                transport.abort()
                return
            # Keep reading (and ignoring) until EOF, so that bytes still in flight
            # from the peer do not turn our close into a reset that eats our last frame.
            self._queue_full = self._deciding = self._replies_blocked = False
            self._update_reading()
            self._arm_close_timer()
        else:
            transport.close()

    def _failure_pending(self) -> None:
        """Bad bytes came after good messages: fail once the handler has read those
        (its next recv() finds the queue empty, or it returns), or at close_timeout."""
        timeout = self._server.options.close_timeout
        self._fail_timer = self._loop.call_later(
            10.0 if timeout is None else timeout, self._apply_failure
        )

    def _apply_failure(self) -> None:
        if self._fail_timer is not None:
            self._fail_timer.cancel()
        self._closing(self.session.fail_pending())

    def _arm_close_timer(self) -> None:
        timeout = self._server.options.close_timeout
        if self._close_timer is None and timeout is not None:
            self._close_timer = self._loop.call_later(timeout, self.transport.abort)

    def _update_reading(self) -> None:
        reading = not (self._queue_full or self._deciding or self._replies_blocked)
        if reading is self._reading or self.transport.is_closing():
            return
        self._reading = reading
        if reading:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def _write(self, data: bytes) -> None:
        if data:
            if self._cork is None:
                self.transport.write(data)
            else:
                self._cork.append(data)

    def _uncork(self) -> None:
        cork = self._cork
        if cork is not None:
            self._cork = None
            if not self.transport.is_closing():
                self.transport.write(cork[0] if len(cork) == 1 else b"".join(cork))

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # Timers

    def _open_timed_out(self) -> None:
        self._open_timer = None
        if self.conn.state is State.REQUEST or self.conn.state is DECIDING:
            if self._task is not None:
                self._task.cancel()
            self.transport.abort()

    def _arm_keepalive(self) -> None:
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        deadline = self.session.keepalive_deadline()
        if deadline is not None:
            self._keepalive_timer = self._loop.call_at(deadline, self._keepalive)

    def _keepalive(self) -> None:
        self._keepalive_timer = None
        session = self.session
        was_open = self.conn.state is OPEN
        flags = session.keepalive(self._loop.time())
        if was_open and self.conn.state is not OPEN:
            self._closing(flags)  # 1011: the peer did not answer
            return
        out = session.data_to_send()
        if out:
            self._write(out)
        if flags:
            self._apply(flags)
        self._arm_keepalive()

    # The handler's task

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._task = self._loop.create_task(coro)
        tasks = self._server._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run(self, request: Request, decision: Any) -> None:
        """``router.resolve()`` (or the rest of it after ``resolve_start()``), the
        answer, then the handler."""
        try:
            if decision is None:
                decision = await self._server.router.resolve(request)
            else:
                decision = await resolve_rest(decision, request)
        except asyncio.CancelledError:  # open_timeout or shutdown during a slow hook
            self.transport.abort()
            raise
        path = self._answer(decision, cork=True)
        if path is None:
            return
        # Nothing of the handshake stays referenced while the handler runs.
        del decision, request
        await self._handle(path)

    async def _handle(self, path: RoutedPath) -> None:
        session = self.session
        try:
            await path.route.handle(self, path)
        except asyncio.CancelledError:
            self._closing(session.shutdown())  # the server is shutting down
            raise
        except Exception as exc:
            flags = session.handler_failed(exc)
        else:
            flags = session.handler_returned()
        if not self.transport.is_closing():
            self._closing(flags)

    def _answer(self, decision: Any, cork: bool) -> RoutedPath | None:
        """Carry out the decision; the path if a handler is to run.

        ``cork``: a 101 waits for the handler's first message (or the end of this
        loop iteration) to leave with it, in one segment: when the handler runs in
        this very task step."""
        conn = self.conn
        server = self._server
        if conn.state is not DECIDING:  # the peer left, or a timeout fired
            return None
        events = conn.carry_out(decision)
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None
        out = conn.data_to_send()
        state = conn.state
        if state is OPEN and cork:
            self._cork = [out]
            self._loop.call_soon(self._uncork)
        else:
            self._write(out)
        if self._deciding:
            self._deciding = False
            self._update_reading()
        if state is CLOSED:  # an HTTP answer
            if not self._ending:
                self._closed()
            return None
        self.path = conn.path
        self.subprotocol = conn.subprotocol
        session = self.session = Session(conn, server.options, self._loop.time())
        flags = session.dispatch(events, closing=state is CLOSING)
        if state is CLOSING:  # a Close decision
            self._arm_close_timer()
        if flags:
            self._apply(flags)
        if conn.state is not OPEN:
            return None
        if server._closing:
            self._closing(session.shutdown())
            return None
        self._arm_keepalive()
        return self.path

    # The connection API for handlers

    async def recv(self) -> str | bytes:
        """The next message (``str`` or ``bytes``); ConnectionClosed once closed."""
        session = self.session
        while True:
            if session.messages:
                message, resume = session.take()
                if resume and self._queue_full:
                    self._queue_full = False
                    self._update_reading()
                return message
            if session.answered():
                self._apply_failure()  # the handler has read all it will get
            if not session.can_recv():
                raise session.closed_error()
            if self._recv_waiter is not None:
                raise RuntimeError("recv() is already waiting for a message in another task")
            waiter = self._recv_waiter = self._loop.create_future()
            try:
                message = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    if waiter.result() is not None:  # handed over, then cancelled
                        session.untake(waiter.result())
                raise
            finally:
                self._recv_waiter = None
            if message is not None:
                return message

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary (bytes-like) message."""
        if type(message) is str:
            data = self.conn.send_text(message)
        else:
            data = self.conn.send(message)
        if self._cork is None:
            self.transport.write(data)
        else:  # the handler's first message: it leaves with the 101
            self._cork.append(data)
            self._uncork()
        if self._write_paused:
            await self._drain()

    async def _drain(self) -> None:
        while self._write_paused and not self.transport.is_closing():
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self.conn.state is CLOSED:
            raise self.session.closed_error()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait for it to end (or ``close_timeout``)."""
        self._closing(self.session.close(code, reason))
        await asyncio.shield(self._done)

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await asyncio.shield(self._done)

    async def ping(self, data: str | bytes | None = None) -> asyncio.Future[float]:
        """Send a ping; return a future of the round-trip time once its pong arrives."""
        payload = None if data is None else data.encode() if isinstance(data, str) else bytes(data)
        future: asyncio.Future[float] = self._loop.create_future()
        self._write(self.session.ping(payload, future, self._loop.time()))
        return future

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited pong."""
        self._write(self.conn.send_pong(data.encode() if isinstance(data, str) else data))

    @property
    def close_code(self) -> int | None:
        """The close code (received, else sent, else 1006) once closed; None before."""
        return self.conn.close_code

    @property
    def close_reason(self) -> str | None:
        return self.conn.close_reason if self.conn.state is CLOSED else None

    @property
    def state(self) -> State:
        return self.conn.state

    @property
    def local_address(self) -> Any:
        return self.transport.get_extra_info("sockname")


class Server:
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
        check_router(router, "serve()")
        self.router = router
        self._resolve_inline = resolves_in_steps(router)  # see data_received
        self.host = host
        self._port = port
        # max_size, max_queue, open_timeout, ping_interval, ping_timeout,
        # close_timeout, max_header_bytes, compression, ssl: checked once, shared
        # with the anyio transport.
        self.options = ServerOptions(**options)
        self.sock = sock
        self.reuse_port = reuse_port
        self.backlog = backlog
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.Server | None = None
        self._connections: set[WebSocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._closed: asyncio.Event | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._idle: asyncio.Future[None] | None = None
        self._starting: asyncio.Future[None] | None = None
        self._make_transport: Any = None

    async def start(self) -> Server:
        """Bind and start accepting; returns self. Calling it again (even while the
        first call is binding) waits for the same start."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await self._starting
        return self

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        kwargs: dict[str, Any] = {"ssl": self.options.ssl, "backlog": self.backlog}
        if self.options.ssl is not None and self.options.open_timeout is not None:
            # open_timeout covers the TLS handshake too; asyncio's own limit is 60 s.
            kwargs["ssl_handshake_timeout"] = self.options.open_timeout
        if self.sock is not None:
            kwargs["sock"] = self.sock
        else:
            kwargs["host"] = self.host
            kwargs["port"] = self._port or 0
            if self.reuse_port:
                kwargs["reuse_port"] = True
        loop = self._loop
        make_transport = None
        if self.options.ssl is None and isinstance(
            loop, asyncio.selector_events.BaseSelectorEventLoop
        ):
            make_transport = getattr(loop, "_make_socket_transport", None)
        kwargs["start_serving"] = make_transport is None
        self._server = await self._create_server(kwargs)
        if make_transport is not None:
            # asyncio's own accept path makes each transport in a task of its own,
            # which takes two more loop iterations (and a task and a future) before
            # the request is read: on a selector loop, accept here and make the
            # transport at once. asyncio.Server still owns the sockets: its close()
            # removes this reader, and it counts the connections as its own.
            self._make_transport = make_transport
            for sock in self._server.sockets:
                # .sockets wraps each socket (asyncio.trsock), without accept().
                listening = getattr(sock, "_sock", sock)
                listening.listen(self.backlog)  # asyncio listens only when it serves
                loop.add_reader(listening.fileno(), self._accept, listening)

    async def _create_server(self, kwargs: dict[str, Any]) -> asyncio.Server:
        """``loop.create_server()``, with one port for every address: asyncio binds
        each address of the host (``None``: IPv4 and IPv6) to a port of its own when
        the port is 0, and ``server.port`` would then reach only one of them. So
        all are bound again to the first one's port (from a fresh port if another
        program takes that one in between)."""
        assert self._loop is not None
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

    def _accept(self, listening: socket.socket) -> None:
        """The listening socket is readable: accept what waits, as asyncio does."""
        for _ in range(self.backlog):
            try:
                sock, address = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_RETRY_ERRNOS:
                    # Out of descriptors or memory: the socket stays readable, so
                    # stop listening for a while (asyncio's own delay) and retry.
                    logger.error("accept() failed (%s); retrying in 1 s", exc)
                    self._loop.remove_reader(listening.fileno())
                    self._loop.call_later(1.0, self._accept_again, listening)
                else:
                    logger.error("accept() failed (%s)", exc)
                return
            try:
                sock.setblocking(False)
                self._make_transport(
                    sock, WebSocket(self), extra={"peername": address}, server=self._server
                )
            except Exception:
                logger.exception("setting up the connection from %s failed", address)
                sock.close()

    def _accept_again(self, listening: socket.socket) -> None:
        if not self._closing and listening.fileno() >= 0:
            self._loop.add_reader(listening.fileno(), self._accept, listening)

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

    def close(self) -> None:
        """Stop accepting, close open connections with 1001, cancel handlers that are
        still running ``close_timeout`` later. ``wait_closed()`` waits for all that."""
        if self._closing or self._server is None:
            return
        self._closing = True
        self._server.close()
        self._shutdown_task = self._loop.create_task(self._shutdown())

    async def _shutdown(self) -> None:
        for ws in list(self._connections):
            conn = ws.conn
            if conn is None:
                continue
            if conn.state is OPEN:
                ws._closing(ws.session.shutdown())
            elif conn.state is State.REQUEST:
                ws.transport.abort()
            # DECIDING: _run() sends 1001 right after the 101 if it accepts.
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.options.close_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        # Connections end by themselves (closing handshake or close_timeout).
        if self._connections:
            self._idle = self._loop.create_future()
            await self._idle
        assert self._server is not None
        await self._server.wait_closed()
        assert self._closed is not None
        self._closed.set()

    def _connection_lost(self, ws: WebSocket) -> None:
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
    ("deflate" or None), ``ssl`` (an SSLContext), ``sock`` (a bound socket instead
    of host/port), ``reuse_port``, ``backlog``.
    """
    return Server(router, host, port, **options)
