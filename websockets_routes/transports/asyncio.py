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
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl as ssl_module
from collections import deque
from collections.abc import Generator
from typing import Any

from ..core.connection import (
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_SIZE,
    ServerConnection,
    State,
)
from ..core.errors import ConnectionClosed, ConnectionClosedOK
from ..core.events import Closed, Message, Ping, Pong, RequestReceived
from ..core.handshake import Request
from ..core.paths import RoutedPath

__all__ = ["serve", "Server", "WebSocket"]

logger = logging.getLogger("websockets_routes.server")

OPEN = State.OPEN
CLOSING = State.CLOSING
CLOSED = State.CLOSED
DECIDING = State.DECIDING


def _route_name(path: Any) -> str:
    if path is None:
        return "?"
    return str(getattr(path, "name", None) or getattr(path, "template", None) or path)


_NO_MESSAGES: deque[Any] = deque(maxlen=0)  # shared until a message waits: memory


class WebSocket(asyncio.Protocol):
    """One server connection: the asyncio protocol and the handler's ``ws`` object."""

    __slots__ = (
        "_server",
        "_loop",
        "transport",
        "conn",
        "remote_address",
        "request",
        "path",
        "subprotocol",
        "_messages",
        "_max_queue",
        "_low_queue",
        "_recv_waiter",
        "_queue_full",
        "_deciding",
        "_cork",
        "_reading",
        "_write_paused",
        "_drain_waiters",
        "_done",
        "_task",
        "_pings",
        "_open_timer",
        "_ping_timer",
        "_pong_timer",
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
        self.remote_address: Any = None
        self.request: Request | None = None
        self.path: RoutedPath | None = None
        self.subprotocol: str | None = None
        self._messages: deque[str | bytes] = _NO_MESSAGES
        self._max_queue = server.max_queue if server.max_queue else 1 << 62
        self._low_queue = max(self._max_queue // 4, 1) if server.max_queue else 0
        self._recv_waiter: asyncio.Future[Any] | None = None
        self._queue_full = False  # reading paused by the message queue
        self._deciding = False  # reading paused: bytes came while the handshake is decided
        # The 101 waits for the handler's first message (or the end of this loop
        # iteration): both leave in one segment, with one send() system call.
        self._cork: list[bytes] | None = None
        self._reading = True
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._task: asyncio.Task[None] | None = None
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._open_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._fail_timer: asyncio.TimerHandle | None = None
        self._ending = False

    def __repr__(self) -> str:
        return f"<WebSocket {self.remote_address!r} {self.conn.state.name if self.conn else ''}>"

    # asyncio.Protocol callbacks

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        server = self._server
        self.remote_address = transport.get_extra_info("peername")
        self.conn = ServerConnection(
            max_size=server.max_size,
            max_header_bytes=server.max_header_bytes,
            compression=server.compression,
            remote_address=self.remote_address,
            defer_failure=True,
        )
        server._connections.add(self)
        if server.open_timeout is not None:
            self._open_timer = self._loop.call_later(server.open_timeout, self._open_timed_out)
        if server._closing:
            transport.abort()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        events = conn.receive_data(data)
        out = conn.data_to_send()
        if out:
            if self._cork is None:
                self.transport.write(out)
            else:
                self._cork.append(out)
        for event in events:
            if type(event) is Message:
                waiter = self._recv_waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(event.data)
                elif conn.state is not CLOSING:  # after our close, nobody reads
                    messages = self._messages
                    if messages is _NO_MESSAGES:
                        messages = self._messages = deque()
                    messages.append(event.data)
                    if len(messages) >= self._max_queue and not self._queue_full:
                        self._queue_full = True
                        self._update_reading()
            else:
                self._event(event)
        if conn.failure_pending is not None and self._fail_timer is None:
            self._failure_pending()
        if conn.state is DECIDING and not events and not self._deciding:
            # Bytes ahead of our answer (the driver keeps them): read no more till then.
            self._deciding = True
            self._update_reading()

    def eof_received(self) -> bool | None:
        for event in self.conn.receive_eof():
            self._event(event)
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        for event in self.conn.receive_eof():
            self._event(event)
        for timer in (
            self._open_timer,
            self._ping_timer,
            self._pong_timer,
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

    # Events other than messages

    def _event(self, event: Any) -> None:
        kind = type(event)
        if kind is Message:
            if self._messages is _NO_MESSAGES:
                self._messages = deque()
            self._messages.append(event.data)
        elif kind is RequestReceived:
            self.request = event.request
            self._task = self._loop.create_task(self._run(event.request))
            self._server._tasks.add(self._task)
            self._task.add_done_callback(self._server._tasks.discard)
        elif kind is Pong:
            self._pong(event.payload)
        elif kind is Closed:
            self._closed()
        elif kind is Ping:
            pass  # the driver queued the pong

    def _closed(self) -> None:
        """The driver reached CLOSED: wake everyone, then end the TCP connection."""
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._closed_error())
        for future, _ in self._pings.values():
            if not future.done():
                future.set_exception(self._closed_error())
                future.exception()  # nobody has to await it: don't log it as lost
        self._pings.clear()
        self._wake_writers()
        if not self._done.done():
            self._done.set_result(None)
        self._end_tcp()

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
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        if self.conn.close_received is not None and self.conn.close_sent is not None:
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
            self._queue_full = self._deciding = False
            self._update_reading()
            self._arm_close_timer()
        else:
            transport.close()

    def _failure_pending(self) -> None:
        """Bad bytes came after good messages: fail once the handler has read those
        (its next recv() finds the queue empty, or it returns), or at close_timeout."""
        timeout = self._server.close_timeout
        self._fail_timer = self._loop.call_later(
            10.0 if timeout is None else timeout, self._apply_failure
        )

    def _apply_failure(self) -> None:
        if self._fail_timer is not None:
            self._fail_timer.cancel()
        events = self.conn.fail_pending()
        self._write(self.conn.data_to_send())
        for event in events:
            self._event(event)

    def _arm_close_timer(self) -> None:
        timeout = self._server.close_timeout
        if self._close_timer is None and timeout is not None:
            self._close_timer = self._loop.call_later(timeout, self.transport.abort)

    def _update_reading(self) -> None:
        reading = not (self._queue_full or self._deciding)
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

    def _closed_error(self) -> ConnectionClosed:
        conn = self.conn
        if conn.state is CLOSED:
            return ConnectionClosed.for_code(conn.close_code or 1006, conn.close_reason)
        if conn.close_sent is not None:
            return ConnectionClosed.for_code(*conn.close_sent)
        return ConnectionClosed.for_code(1006)

    # Timers

    def _open_timed_out(self) -> None:
        self._open_timer = None
        if self.conn.state is State.REQUEST or self.conn.state is DECIDING:
            if self._task is not None:
                self._task.cancel()
            self.transport.abort()

    def _keepalive(self) -> None:
        self._ping_timer = None
        if self.conn.state is not OPEN:
            return
        server = self._server
        payload = os.urandom(4)
        self._write(self.conn.send_ping(payload))
        if server.ping_timeout is not None:
            self._pong_timer = self._loop.call_later(server.ping_timeout, self._ping_timed_out)
        elif server.ping_interval is not None:
            self._ping_timer = self._loop.call_later(server.ping_interval, self._keepalive)

    def _ping_timed_out(self) -> None:
        self._pong_timer = None
        if self.conn.state is OPEN:
            self._write(self.conn.close(1011, "keepalive ping timeout"))
            self._arm_close_timer()

    def _pong(self, payload: bytes) -> None:
        if self._pong_timer is not None:  # any pong proves the peer alive
            self._pong_timer.cancel()
            self._pong_timer = None
            interval = self._server.ping_interval
            if interval is not None and self.conn.state is OPEN:
                self._ping_timer = self._loop.call_later(interval, self._keepalive)
        pings = self._pings
        if payload in pings:
            now = self._loop.time()
            # A pong answers its ping and every earlier one (RFC 6455 5.5.3).
            for data in list(pings):
                future, sent = pings.pop(data)
                if not future.done():
                    future.set_result(now - sent)
                if data == payload:
                    break

    # The handler's task

    async def _run(self, request: Request) -> None:
        try:
            decision = await self._server.router.resolve(request)
        except asyncio.CancelledError:  # open_timeout or shutdown during a slow hook
            self.transport.abort()
            raise
        path = self._answer(decision)
        if path is None:
            return
        # Nothing of the handshake stays referenced while the handler runs.
        del decision, request
        code = 1000
        try:
            await path.route.handle(self, path)
        except ConnectionClosed:
            pass  # the connection ended under the handler: nothing to report
        except asyncio.CancelledError:
            code = 1001  # server shutdown
            raise
        except Exception:
            code = 1011
            logger.error(
                "handler of route %s failed for peer %s",
                _route_name(path),
                _peer(self.remote_address),
                exc_info=True,
            )
        finally:
            conn = self.conn
            if conn.failure_pending is not None:
                self._apply_failure()
            elif conn.state is OPEN and not self.transport.is_closing():
                self._write(conn.close(code))
                self._arm_close_timer()

    def _answer(self, decision: Any) -> RoutedPath | None:
        """Carry out the decision; the path if a handler is to run."""
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
        if state is OPEN:
            self._cork = [out]
            self._loop.call_soon(self._uncork)
        else:
            self._write(out)
        if state is not CLOSED:
            self.path = conn.path
            self.subprotocol = conn.subprotocol
        if self._deciding:
            self._deciding = False
            self._update_reading()
        for event in events:
            self.data_event(event)
        if conn.failure_pending is not None:
            self._failure_pending()
        if conn.state is CLOSING:  # a Close decision (or the peer's bytes closed it)
            self._arm_close_timer()
        if conn.state is CLOSED:
            # Closed came from carry_out (an HTTP answer): _event() did not see it.
            if not self._ending:
                self._closed()
            return None
        if conn.state is not OPEN:
            return None
        if server._closing:
            self._write(conn.close(1001))
            self._arm_close_timer()
            return None
        interval = server.ping_interval
        if interval is not None:
            self._ping_timer = self._loop.call_later(interval, self._keepalive)
        return self.path

    def data_event(self, event: Any) -> None:
        """Dispatch one event (also used for events returned by carry_out)."""
        if type(event) is Message:
            waiter = self._recv_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(event.data)
                return
        self._event(event)

    # The connection API for handlers

    async def recv(self) -> str | bytes:
        """The next message (``str`` or ``bytes``); ConnectionClosed once closed."""
        messages = self._messages
        if messages:
            message = messages.popleft()
            if self._queue_full and len(messages) <= self._low_queue:
                self._queue_full = False
                self._update_reading()
            return message
        conn = self.conn
        if conn.failure_pending is not None:
            self._apply_failure()  # the handler has read all it will get
        if conn.state is CLOSED or conn.state is CLOSING:
            raise self._closed_error()
        if self._recv_waiter is not None:
            raise RuntimeError("recv() is already waiting for a message in another task")
        waiter = self._loop.create_future()
        self._recv_waiter = waiter
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                if self._messages is _NO_MESSAGES:
                    self._messages = deque()
                self._messages.appendleft(waiter.result())  # don't lose it to the cancellation
            raise
        finally:
            self._recv_waiter = None

    def __aiter__(self) -> WebSocket:
        """``async for message in ws``: messages until a normal close (1000/1001);
        other closes raise ConnectionClosedError."""
        return self

    async def __anext__(self) -> str | bytes:
        # No async generator in between: one coroutine per message, not two.
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

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
            raise self._closed_error()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait for it to end (or ``close_timeout``)."""
        conn = self.conn
        if conn.state is OPEN:
            self._write(conn.close(code, reason))
            self._arm_close_timer()
            self._queue_full = False  # the peer's close frame must get through
            self._update_reading()
        await asyncio.shield(self._done)

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await asyncio.shield(self._done)

    async def ping(self, data: str | bytes | None = None) -> asyncio.Future[float]:
        """Send a ping; return a future of the round-trip time once its pong arrives."""
        if data is None:
            data = os.urandom(4)
            while data in self._pings:
                data = os.urandom(4)
        elif isinstance(data, str):
            data = data.encode()
        else:
            data = bytes(data)
        if data in self._pings:
            raise RuntimeError("a ping with this payload is already waiting for its pong")
        self._write(self.conn.send_ping(data))
        future: asyncio.Future[float] = self._loop.create_future()
        self._pings[data] = (future, self._loop.time())
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


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) if address else "an unknown peer"


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
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_queue: int | None = 16,
        open_timeout: float | None = 10,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        compression: str | None = "deflate",
        ssl: ssl_module.SSLContext | None = None,
        sock: socket.socket | None = None,
        reuse_port: bool = False,
        backlog: int = 1024,
    ) -> None:
        if compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {compression!r}")
        if not callable(getattr(router, "resolve", None)):
            raise TypeError(f"serve() needs a Router, not {type(router).__name__}")
        self.router = router
        self.host = host
        self._port = port
        self.max_size = max_size
        self.max_queue = max_queue
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_header_bytes = max_header_bytes
        self.compression = compression
        self.ssl = ssl
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
        kwargs: dict[str, Any] = {"ssl": self.ssl, "backlog": self.backlog}
        if self.sock is not None:
            kwargs["sock"] = self.sock
        else:
            kwargs["host"] = self.host
            kwargs["port"] = self._port or 0
            if self.reuse_port:
                kwargs["reuse_port"] = True
        self._server = await self._loop.create_server(lambda: WebSocket(self), **kwargs)

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
                ws._write(conn.close(1001))
                ws._arm_close_timer()
                ws._queue_full = False
                ws._update_reading()
            elif conn.state is State.REQUEST:
                ws.transport.abort()
            # DECIDING: _run() sends 1001 right after the 101 if it accepts.
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.close_timeout)
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
