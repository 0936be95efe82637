"""Our WebSocket server on anyio: the same server on asyncio and on trio.

```python
import anyio
from websockets_routes import Router
from websockets_routes.transports.anyio import serve

router = Router()

@router.route("/echo")
async def echo(ws, path):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(router, "127.0.0.1", 8765) as server:
        await server.serve_forever()

anyio.run(main, backend="trio")   # or backend="asyncio"
```

It runs the sans-IO connection driver (``core.connection``: h11 for the handshake,
wsproto for frames) and the shared connection policy (``core.session``: message
queue, pings, keepalive, how a handler's end closes the connection) over anyio byte
streams; this module only moves bytes, waits and keeps time.

Structure (structured concurrency): one task group per server. It holds one task
per connection, which runs the handshake and the handler, and one keepalive timer
task (a heap of deadlines, when ``ping_interval`` is set) for the connections on
anyio streams. Those (on trio, with TLS, or given to ``start_stream()``) also have
one accept loop per listening socket, and in each connection's task a task group
with its reader task; on asyncio without TLS neither is needed, and the task of a
connection starts once its request is complete (see Speed).
``server.close()`` stops accepting, drops requests still being read, sends 1001 to
every open connection, lets handlers finish for up to ``close_timeout`` and then
cancels what is left; ``wait_closed()`` returns when no task of the server is left.
Cancelling the ``async with serve(...)`` block cancels everything at once. An
exception in the block comes out as it is (not in an ExceptionGroup).

Writes keep the order in which frames were made (a close frame never overtakes a
message, compressed messages stay in compressor order), whichever task writes; a
close never waits past ``close_timeout`` behind a write that a non-reading peer
blocks. Reading pauses while ``max_queue`` messages wait, and while our pongs wait
for a peer that does not read them.

Speed: on asyncio (and uvloop) without TLS, a reader callback on each listening
socket accepts connections and the connection itself is the ``asyncio.Protocol``
of its transport (``_LoopConnection``): bytes go to the driver as they arrive,
frames to ``transport.write()`` as they are made, timeouts are loop timers, the
request is read in callbacks, and the connection's task (spawned once the request
is complete) is its only task, with no cancel scope unless a ``process_request``
hook waits. anyio's stream API would cost a checkpoint per call, a pause/resume of
the transport per read, and a reader task and a few cancel scopes per connection.
Trio, TLS and in-memory streams use the public stream API.

Options: those of ``core.session.ServerOptions`` (``max_size``, ``max_queue``,
``open_timeout``, ``ping_interval``, ``ping_timeout``, ``close_timeout``,
``max_header_bytes``, ``compression``, ``ssl``), plus ``backlog`` and ``reuse_port``
for the listening socket. With ``ssl=`` (an ``ssl.SSLContext``) connections are
wrapped in anyio TLS streams; the TLS handshake counts against ``open_timeout``.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import heapq
import logging
import math
import socket
import ssl as _ssl
import sys
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from ..core.connection import ServerConnection, State
from ..core.events import Closed, RequestReceived
from ..core.handshake import Accept, Request, resolve_pending, resolve_rest, resolve_start
from ..core.iteration import MessageIteration
from ..core.paths import RoutedPath
from ..core.router import Router as CoreRouter
from ..core.session import (
    CLOSED,
    FAILING,
    KEEPALIVE,
    MESSAGES,
    PAUSE,
    PONGS,
    ServerOptions,
    Session,
    handler_error_is_close,
    peer_name,
)

__all__ = ["serve", "Server", "Connection"]

logger = logging.getLogger("websockets_routes.server")

_READ_SIZE = 65536
_HEAP_READ_SIZE = 128 * 1024 - 1024  # see _LoopConnection.connection_made()
_OPEN = State.OPEN
_CLOSING_STATE = State.CLOSING
_CLOSED_STATE = State.CLOSED
DECIDING = State.DECIDING
# The peer is gone or the stream was closed under us: all end the connection.
_STREAM_ERRORS = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)
# accept() failures that say "out of resources": wait and try again, as trio does.
_ACCEPT_RETRY = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# accept() failures about one connection only (it was reset before we took it).
_ACCEPT_IGNORE = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM}
_DEFAULT_CLOSE_TIMEOUT = 10.0  # how long bad input waits when close_timeout is None
_ANSWERED = object()  # for _LoopConnection._run(): the handshake is answered already

try:
    import sniffio

    _SNIFFIO_CVAR: Any = sniffio.current_async_library_cvar
except ImportError:  # anyio no longer needs sniffio
    _SNIFFIO_CVAR = None


def _on_asyncio() -> bool:
    """True if this task runs on asyncio (anyio's asyncio backend)."""
    if _SNIFFIO_CVAR is not None:
        try:
            return bool(sniffio.current_async_library() == "asyncio")
        except sniffio.AsyncLibraryNotFoundError:
            return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _timeout(value: float | None) -> float:
    return math.inf if value is None else value


class _PongWaiter:
    """What ``await ws.ping()`` returns: await it for the round-trip time in seconds."""

    __slots__ = ("_event", "_latency", "_error")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._latency: float | None = None
        self._error: BaseException | None = None

    def _set(self, latency: float) -> None:
        self._latency = latency
        self._event.set()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._event.set()

    def done(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> float:
        await self._event.wait()
        if self._error is not None:
            raise self._error
        assert self._latency is not None
        return self._latency

    def __await__(self) -> Generator[Any, None, float]:
        return self.wait().__await__()


class Connection(MessageIteration):
    """The connection object handlers get, as on every transport of ours.

    ``await send(str | bytes)``, ``await recv()``, ``async for message in ws``,
    ``await close(code=1000, reason="")``, ``await ping(data=None)`` (returns an
    awaitable giving the latency), ``await pong(data=b"")``; ``path`` (RoutedPath),
    ``request`` (core Request), ``subprotocol``, ``remote_address``,
    ``local_address``, ``close_code``/``close_reason`` (None until closed),
    ``state`` (a ``core.connection.State``), ``await wait_closed()``.

    A closed connection raises ``ConnectionClosed`` (``ConnectionClosedOK`` for 1000
    and 1001): ``recv()`` first returns the messages received before the close.
    ``send``, ``recv`` and ``ping`` may run in different tasks at once; ``recv`` in two
    tasks at once is an error.
    """

    __slots__ = (
        "_aborted",
        "_closed",
        "_conn",
        "_done",
        "_event",
        "_fast",
        "_flushed",
        "_options",
        "_pending",
        "_reader_done",
        "_recv_waiter",
        "_resume",
        "_session",
        "_stream",
        "_tcp",
        "_timer_at",
        "_timers",
        "_writing",
        "local_address",
        "path",
        "remote_address",
        "request",
        "subprotocol",
        "__weakref__",
    )

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        session: Session,
        request: Request,
        options: ServerOptions,
        *,
        tcp: anyio.abc.ByteStream | None = None,
        local_address: Any = None,
        event_class: Any = None,
    ) -> None:
        conn = session.conn
        # anyio's Event class for this backend: created directly, it skips the
        # backend lookup anyio.Event() makes each time.
        self._event = event_class or type(anyio.Event())
        self._stream = stream
        # The stream under TLS: half-closing it ends TCP after what we wrote.
        self._tcp = tcp if tcp is not None else stream
        self._session = session
        self._conn = conn
        self._options = options
        self.request = request
        self.path: RoutedPath = conn.path
        self.subprotocol: str | None = conn.subprotocol
        self.remote_address: Any = conn.remote_address
        self.local_address: Any = local_address
        self._writing = False
        self._pending: list[bytes] = []
        self._flushed: anyio.Event | None = None
        self._recv_waiter: Any = None  # an Event
        self._resume: anyio.Event | None = None
        # Made when first awaited (an idle connection carries no Event): the driver
        # reported Closed; TCP is over (the reader has finished).
        self._closed: Any = None
        self._done: Any = None
        self._reader_done = False
        self._aborted = False
        # Set by the asyncio subclass (_LoopConnection): the connection is the
        # transport's protocol.
        self._fast: Any = None
        self._timer_at: float | None = None  # its entry in the server's keepalive timers
        self._timers: _Timers | None = None

    def __repr__(self) -> str:
        return (
            f"<Connection {str(self.path)!r} from {peer_name(self.remote_address)}"
            f" {self._conn.state.name}>"
        )

    @property
    def close_code(self) -> int | None:
        return self._conn.close_code

    @property
    def close_reason(self) -> str | None:
        conn = self._conn
        return conn.close_reason if conn.close_code is not None else None

    @property
    def state(self) -> State:
        return self._conn.state

    # Receiving

    async def recv(self) -> str | bytes:
        """The next message (``str`` or ``bytes``); ConnectionClosed once closed."""
        session = self._session
        while True:
            if session.messages:
                message, resume = session.take()
                if resume and self._resume is not None:
                    self._resume.set()
                return message
            if session.answered():
                # The handler read all it will get before the bad input: fail now.
                await self._close_and_wait(session.fail_pending())
            if not session.can_recv():
                raise session.closed_error()
            if self._recv_waiter is not None:
                raise RuntimeError("recv() is already waiting for a message in another task")
            waiter = self._recv_waiter = self._event()
            try:
                await waiter.wait()
            finally:
                self._recv_waiter = None

    # Sending

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send one text (``str``) or binary (bytes-like) message."""
        await self._write(self._conn.send(message))
        if self._aborted:
            raise self._session.closed_error()

    async def ping(self, data: str | bytes | None = None) -> _PongWaiter:
        """Send a ping; await the result for the latency once the pong arrives."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        waiter = _PongWaiter()
        frame = self._session.ping(
            None if payload is None else bytes(payload), waiter, anyio.current_time()
        )
        await self._write(frame)
        return waiter

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited pong."""
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        await self._write(self._conn.send_pong(payload))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``/``reason`` and wait (up to ``close_timeout``) for the
        closing handshake; does nothing more if the connection is already closing."""
        await self._close_and_wait(self._session.close(code, reason))

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (closing handshake done or TCP lost)."""
        if not self._session.closed:
            if self._closed is None:
                self._closed = self._event()
            await self._closed.wait()

    async def _wait_reader(self) -> None:
        if not self._reader_done:
            if self._done is None:
                self._done = self._event()
            await self._done.wait()

    # Internals: writing in order

    async def _write(self, data: bytes) -> None:
        """Write ``data`` after everything generated before it, whoever wrote that.

        Frames are generated synchronously and queued here in the same order, so a
        close frame never overtakes a message, nor a compressed message another.
        Returns when ``data`` has been handed to the stream (its back-pressure).
        """
        if self._writing:
            if data:
                self._pending.append(data)
            flushed = self._flushed
            if flushed is None:
                flushed = self._flushed = self._event()
            await flushed.wait()
            return
        if not data or self._aborted:
            return
        self._writing = True
        try:
            send = self._stream.send
            await send(data)
            pending = self._pending
            while pending:
                chunk = b"".join(pending)
                pending.clear()
                await send(chunk)
        except _STREAM_ERRORS:
            await self._abort()
        except BaseException:
            # Cancelled in the middle of a write: the peer may hold half a frame,
            # the connection cannot go on.
            await self._abort()
            raise
        finally:
            self._writing = False
            flushed = self._flushed
            if flushed is not None:
                self._flushed = None
                flushed.set()

    async def _close_and_wait(self, flags: int) -> None:
        """After a closing call on the session: write its close frame and wait for
        the closing handshake, all within close_timeout; then abort TCP.

        One deadline for both: the close frame may wait behind a write that a peer
        which reads nothing blocks forever."""
        session = self._session
        if session.closed and not flags:
            return  # over already: nothing to write or wait for (the common end)
        with anyio.move_on_after(_timeout(self._options.close_timeout)):
            await self._closing(flags)
            await self.wait_closed()
        if not session.closed:
            await self._abort()

    async def _closing(self, flags: int) -> None:
        """After a closing call on the session: write its close frame, wake what
        our close changes."""
        session = self._session
        out = session.data_to_send()
        if flags:
            self._apply(flags)
        if self._resume is not None and not session.paused:
            self._resume.set()  # the peer's close must be read, even with a full queue
        self._wake_recv()  # recv() raises from now on
        if out:
            await self._write(out)

    async def _await_failure(self) -> None:
        """Bad input waits behind good messages: give the handler up to
        close_timeout to read (and answer) them, then fail the connection."""
        session = self._session
        if not session.closed:
            with anyio.move_on_after(_timeout(self._options.close_timeout)):
                await self.wait_closed()  # recv() or the handler's end fail it sooner
        if session.failure_pending():
            await self._close_and_wait(session.fail_pending())

    async def _abort(self) -> None:
        """End the connection at once (1006 unless a close frame was sent): a timeout,
        or the stream failed. Closing the stream wakes the reader."""
        self._aborted = True
        self._pending.clear()
        if not self._session.closed:
            self._apply(self._session.receive_eof())
        await _close_stream(self._stream)

    # Internals: what the network says

    def _wake_recv(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None:
            waiter.set()

    def _apply(self, flags: int) -> None:
        session = self._session
        if flags & MESSAGES:
            self._wake_recv()
        if flags & PONGS:
            now = anyio.current_time()
            for waiter, sent in session.take_acked():
                waiter._set(now - sent)
        if flags & PAUSE:
            self._resume = self._event()
        if flags & KEEPALIVE and self._timers is not None:
            self._timers.schedule(self)  # a pong: the next ping is due sooner
        if flags & CLOSED:
            error = session.closed_error()
            for waiter in session.take_pings():
                waiter._fail(error)
            self._wake_recv()
            if self._resume is not None:
                self._resume.set()
            if self._closed is not None:
                self._closed.set()

    async def _read_loop(self) -> None:
        """Read until the connection is closed, then end TCP."""
        session = self._session
        stream = self._stream
        try:
            while not session.closed:
                if session.paused:
                    resume = self._resume
                    if resume is not None:
                        await resume.wait()
                    continue
                try:
                    data = await stream.receive(_READ_SIZE)
                except _STREAM_ERRORS:
                    flags = session.receive_eof()
                else:
                    flags = session.receive_data(data)
                out = session.data_to_send()
                if flags:
                    self._apply(flags)
                if out:
                    await self._write(out)
                if flags & FAILING:
                    await self._await_failure()
            await self._finish_tcp()
        finally:
            self._reader_done = True
            if self._done is not None:
                self._done.set()

    async def _finish_tcp(self) -> None:
        """RFC 6455 7.1.1: the server ends TCP first.

        After a completed closing handshake the peer has nothing more to send: close
        the stream at once, even if the handler runs on. Otherwise (an error, an HTTP
        answer) half-close, so that what we wrote still arrives, and read until the
        peer's EOF (or close_timeout): bytes still in flight from the peer would
        otherwise make our kernel answer with a reset that can destroy our last
        frame or response before it is read."""
        if self._aborted:
            return
        await self._write(b"")  # wait for a write in progress in another task
        conn = self._conn
        if conn.close_received is not None and conn.close_sent is not None:
            await _close_stream(self._stream)
            return
        try:
            await self._tcp.send_eof()
        except (*_STREAM_ERRORS, NotImplementedError):
            pass
        with anyio.move_on_after(_timeout(self._options.close_timeout)):
            try:
                while await self._stream.receive(_READ_SIZE):
                    pass  # the driver ignores bytes once closed
            except _STREAM_ERRORS:
                pass
        # The socket goes now, not when a handler that ignores the close returns.
        await _close_stream(self._stream)

    def _keepalive(self, now: float, spawn: Callable[..., Any]) -> None:
        """The keepalive timer fired: a ping to write, or the 1011 close."""
        was_open = self._conn.state is _OPEN
        flags = self._session.keepalive(now)
        if was_open and self._conn.state is not _OPEN:
            spawn(self._keepalive_close, flags)
        else:
            out = self._session.data_to_send()
            if out:
                spawn(self._write, out)  # a ping: its place among frames is free

    async def _keepalive_close(self, flags: int) -> None:
        await self._close_and_wait(flags)

    async def _going_away(self) -> None:
        """The server shuts down: close with 1001."""
        await self._close_and_wait(self._session.shutdown())


class _LoopConnection(Connection, asyncio.Protocol):
    """A connection on asyncio (or uvloop) over plain TCP: the transport's protocol.

    anyio's stream API costs, per message, a checkpoint (a whole event-loop pass)
    and a pause/resume of the transport around every read, and a connection needs
    a reader task beside its handler. On asyncio there is no need for either: the
    connection is the ``asyncio.Protocol`` of its transport, so bytes are fed to the
    driver as they arrive (``data_received``), its answers (pongs, close echo) and
    the handler's frames go to ``transport.write()`` at once, in the order they were
    made, and timeouts are loop timers. The request is read in callbacks (a client
    that never completes one costs no task); once it is complete, the connection's
    task, in the server's task group, decides and runs the handler. The closing
    handshake ends in callbacks and timers too; the server counts the connection
    until its TCP is over and its task has ended (``wait_closed()`` waits for both).
    On the selector event loop the accept callback makes the transport itself; on
    others (uvloop) a short task per connection does, with connect_accepted_socket().

    Back-pressure as everywhere: reading pauses while ``max_queue`` messages wait,
    while the request is being decided, and while our answers wait for a peer that
    does not read them; ``send()`` waits while the write buffer is over its
    high-water mark.
    """

    __slots__ = (
        "_closers",
        "_close_timer",
        "_cork",
        "_deciding",
        "_drain_waiters",
        "_ending",
        "_fail_timer",
        "_keepalive_timer",
        "_lost",
        "_loop",
        "_open_timer",
        "_queue_full",
        "_reading",
        "_replies_blocked",
        "_server",
        "_task",
        "_transport",
        "_write_paused",
    )

    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop, remote: Any) -> None:
        """A connection just accepted: counted by the server until TCP is over and
        its task (if it got one) has ended."""
        options = self._options = server.options
        self._server = server
        self._loop = loop
        self._fast = loop
        self._conn = options.connection(remote)
        self._session = None  # type: ignore[assignment]  # once the handshake is done
        self.request = None  # type: ignore[assignment]
        self.path = None  # type: ignore[assignment]
        self.subprotocol = None
        self.remote_address = remote
        self.local_address = None
        self._transport: Any = None
        # A recv() waiting: its future gets the message, or None (look again).
        self._recv_waiter = None
        self._queue_full = False  # reading paused by the message queue
        self._deciding = False  # reading paused: bytes came while the request is decided
        self._replies_blocked = False  # reading paused: our pongs wait for a non-reader
        # The 101 waits for the handler's first message (or the end of this loop
        # iteration): both leave in one segment, with one send() system call.
        self._cork: list[bytes] | None = None
        self._reading = True
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._closers: list[asyncio.Future[None]] | None = None  # wait_closed() waiters
        self._lost = False  # connection_lost() came
        self._task = False  # its task (from the complete request on) is running
        self._aborted = False
        self._open_timer: asyncio.TimerHandle | None = None
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._fail_timer: asyncio.TimerHandle | None = None
        self._ending = False
        server._active += 1
        server._loop_connections.add(self)
        server._handshaking[self._conn] = self

    # asyncio.Protocol callbacks

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self._transport = transport
        if getattr(transport, "max_size", None) == 256 * 1024:
            # asyncio's selector transport reads into a fresh 256 KiB bytes object
            # each time: above glibc's mmap threshold (128 KiB), that is mmap, mremap
            # and munmap for a 40-byte message. Just under it, the heap serves it.
            transport.max_size = _HEAP_READ_SIZE
        local = transport.get_extra_info("sockname")
        self.local_address = local[:2] if isinstance(local, tuple) else local
        if self._aborted or self._server._closing:
            self._abort_now()  # accepted while shutting down
            return
        open_timeout = self._options.open_timeout
        if open_timeout is not None:
            self._open_timer = self._loop.call_later(open_timeout, self._open_timed_out)

    def data_received(self, data: bytes) -> None:
        session = self._session
        if session is not None:
            flags = session.receive_data(data)
            out = self._conn.data_to_send()  # receive_data() queues only in the driver
            if out:
                self._put(out)
                if self._write_paused and not self._replies_blocked:
                    # Our answers (pongs) wait for a peer that does not read them:
                    # read no more of its input until they can go (a ping flood
                    # stays bounded).
                    self._replies_blocked = True
                    self._update_reading()
            if flags == MESSAGES:  # the hot path: hand the message to a waiting recv()
                waiter = self._recv_waiter
                if waiter is not None and not waiter.done():
                    message, resume = session.take()
                    waiter.set_result(message)
                    if resume and self._queue_full:
                        self._queue_full = False
                        self._update_reading()
            elif flags:
                self._act(flags)
            return
        # The opening handshake: the request, or a 400/431 answer and Closed.
        conn = self._conn
        events = conn.receive_data(data)
        out = conn.data_to_send()
        if out:
            self._put(out)
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                self._request_received()
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
        self._lost = True
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
        if not self._task:
            self._release()

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
        session = self._session
        if session is not None:
            flags = session.receive_eof()
            if flags:
                self._act(flags)
        elif self._conn.state is not _CLOSED_STATE:
            self._conn.receive_eof()
            self._closed()

    def _act(self, flags: int) -> None:
        """Act on ``Session`` flags (see core.session)."""
        session = self._session
        if flags & MESSAGES:
            self._wake_recv()
        if flags & PAUSE and not self._queue_full:
            self._queue_full = True
            self._update_reading()
        if flags & PONGS:
            now = self._loop.time()
            for future, sent in session.take_acked():
                if not future.done():
                    future.set_result(now - sent)
        if flags & KEEPALIVE:
            self._arm_keepalive()
        if flags & FAILING and self._fail_timer is None:
            # Bad bytes came after good messages: fail once the handler has read
            # those (recv() finds the queue empty, or it returns), or at close_timeout.
            timeout = self._options.close_timeout
            self._fail_timer = self._loop.call_later(
                _DEFAULT_CLOSE_TIMEOUT if timeout is None else timeout, self._apply_failure
            )
        if flags & CLOSED:
            self._closed()

    def _closing_now(self, flags: int) -> None:
        """After a closing call on the session: write its close frame, arm
        close_timeout, read again if the queue had paused reading (the peer's
        close frame must get through), and wake recv() (it raises from now on)."""
        session = self._session
        out = session.data_to_send()
        if out:
            self._put(out)
        if self._conn.state is _CLOSING_STATE:
            self._arm_close_timer()
        if self._queue_full and not session.paused:
            self._queue_full = False
            self._update_reading()
        self._wake_recv()
        if flags:
            self._act(flags)

    def _closed(self) -> None:
        """The driver reached CLOSED: end the TCP connection, then wake everyone (a
        peer waiting for our FIN, the last step of the closing handshake, waits for
        nothing else)."""
        self._end_tcp()
        self._wake_recv()
        session = self._session
        if session is not None:
            error = session.closed_error()
            for future in session.take_pings():
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # nobody has to await it: not "never retrieved"
        closers = self._closers
        if closers is not None:
            self._closers = None
            for future in closers:
                if not future.done():
                    future.set_result(None)
        self._wake_writers()

    def _end_tcp(self) -> None:
        """RFC 6455 7.1.1: the server ends TCP first.

        After a completed closing handshake the peer has nothing more to send: close.
        Otherwise (an error, an HTTP answer) half-close and read until the peer's EOF
        (or close_timeout), so that bytes still in flight from it do not make our
        kernel answer with a reset, which could destroy our last frame or response
        before it is read."""
        if self._ending:
            return
        self._ending = True
        self._uncork()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        conn = self._conn
        if conn.close_received is not None and conn.close_sent is not None:
            if not transport.get_write_buffer_size() and transport.can_write_eof():
                # The FIN leaves now, with the close frame, not one loop iteration
                # later when close() gets to the socket: a peer waiting for the end
                # of TCP waits for nothing else.
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
            self._queue_full = self._deciding = self._replies_blocked = False
            self._update_reading()
            self._arm_close_timer()
        else:
            transport.close()

    def _apply_failure(self) -> None:
        if self._fail_timer is not None:
            self._fail_timer.cancel()
        self._closing_now(self._session.fail_pending())

    def _arm_close_timer(self) -> None:
        timeout = self._options.close_timeout
        if self._close_timer is None and timeout is not None:
            self._close_timer = self._loop.call_later(timeout, self._abort_now)

    def _abort_now(self) -> None:
        """End TCP at once (a timeout): the connection is over (1006 unless a close
        frame went out) from now on, not when connection_lost() comes."""
        self._aborted = True
        transport = self._transport
        if transport is not None:  # else connection_made() aborts
            transport.abort()
            self._eof()

    def _update_reading(self) -> None:
        reading = not (self._queue_full or self._deciding or self._replies_blocked)
        transport = self._transport
        if reading is self._reading or transport.is_closing():
            return
        self._reading = reading
        if reading:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _put(self, data: bytes) -> None:
        if data:
            if self._cork is None:
                self._transport.write(data)
            else:
                self._cork.append(data)

    def _uncork(self) -> None:
        cork = self._cork
        if cork is not None:
            self._cork = None
            if not self._transport.is_closing():
                self._transport.write(cork[0] if len(cork) == 1 else b"".join(cork))

    def _wake_recv(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writers(self) -> None:
        waiters = self._drain_waiters
        if waiters:
            self._drain_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # Timers

    def _open_timed_out(self) -> None:
        self._open_timer = None
        state = self._conn.state
        if state is State.REQUEST or state is DECIDING:
            logger.info(
                "opening handshake from %s not done within %ss",
                peer_name(self.remote_address),
                self._options.open_timeout,
            )
            self._abort_now()

    def _arm_keepalive(self) -> None:
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        deadline = self._session.keepalive_deadline()
        if deadline is not None:
            self._keepalive_timer = self._loop.call_at(deadline, self._keepalive_due)

    def _keepalive_due(self) -> None:
        self._keepalive_timer = None
        session = self._session
        was_open = self._conn.state is _OPEN
        flags = session.keepalive(self._loop.time())
        if was_open and self._conn.state is not _OPEN:
            self._closing_now(flags)  # 1011: the peer did not answer
            return
        out = session.data_to_send()
        if out:
            self._put(out)
        if flags:
            self._act(flags)
        self._arm_keepalive()

    # The connection's task

    def _request_received(self) -> None:
        """The request is complete. When its answer needs no await (no hook, no HTTP
        view: ``core.handshake.resolve_pending()``), it is carried out here, the 101
        leaves now rather than a loop iteration later from a task, and the task only
        runs the handler; else the task decides."""
        server = self._server
        conn = self._conn
        request = conn.request
        assert request is not None
        self.request = request
        if not server._resolve_inline:
            self._start_task(None)  # a router of its own: its resolve() is awaited
            return
        decision = resolve_start(server.router, request)
        if resolve_pending(decision):
            self._start_task(decision)
            return
        del server._handshaking[conn]
        if self._answer(decision, cork=False) and isinstance(decision, Accept):
            if conn.state is _OPEN:
                self._start_task(_ANSWERED)
        # Else an HTTP answer, or a Close decision: callbacks and timers end it.

    def _start_task(self, decision: Any) -> None:
        """The connection's task: ``_run(decision)``, in the server's task group."""
        tg = self._server._conn_tg
        if tg is None or tg.cancel_scope.cancel_called:
            self._abort_now()
            return
        self._task = True
        if _SNIFFIO_CVAR is not None and _SNIFFIO_CVAR.get() is None:
            # anyio finds its backend through sniffio, which outside a task reads
            # this variable (a loop may run protocol callbacks in a bare context).
            token = _SNIFFIO_CVAR.set("asyncio")
            try:
                tg.start_soon(self._run, decision)
            finally:
                _SNIFFIO_CVAR.reset(token)
        else:
            tg.start_soon(self._run, decision)

    def _release(self) -> None:
        """TCP is over and no task runs: the server no longer counts this connection."""
        server = self._server
        server._handshaking.pop(self._conn, None)
        server._loop_connections.discard(self)
        server._active -= 1
        if server._active == 0 and server._closing and server._idle is not None:
            server._idle.set()
        gone = server._all_lost
        if gone is not None and not server._loop_connections and not gone.done():
            gone.set_result(None)

    async def _run(self, decision: Any) -> None:
        """The connection's task: the rest of the decision (``decision`` is what
        ``resolve_start()`` gave, None to await ``router.resolve()``, or _ANSWERED),
        then the handler.

        It ends when the handler does; the closing handshake goes on in callbacks
        and timers (close_timeout aborts TCP), and the server counts the connection
        until TCP is over."""
        server = self._server
        conn = self._conn
        try:
            if decision is not _ANSWERED:
                if conn.state is not DECIDING:
                    return  # the peer left, or open_timeout, before this task started
                request = self.request
                coro = (
                    server.router.resolve(request)
                    if decision is None
                    else resolve_rest(decision, request)
                )
                # A hook or a view that does not wait needs no cancel scope: step
                # the coroutine once; only if it waits, finish it under a cancel
                # scope ending with open_timeout.
                decision, done = _first_step(coro)
                if not done:
                    timer = self._open_timer
                    deadline = math.inf if timer is None else timer.when()
                    with anyio.CancelScope(deadline=deadline) as scope:
                        decision = await _Resume(coro, decision)
                    if scope.cancelled_caught and conn.state is DECIDING:
                        self._open_timed_out()  # the scope's timer came first
                    if conn.state is not DECIDING:
                        return  # open_timeout (its timer aborted TCP), or the peer left
                del server._handshaking[conn]
                accepted = isinstance(decision, Accept)
                # Nothing of the decision stays referenced while the handler runs.
                opened = self._answer(decision, cork=True)
                del coro, decision
                if not opened or not accepted:
                    return  # an HTTP answer, or a Close decision (its close frame is out)
            if conn.state is not _OPEN:
                return
            session = self._session
            if server._closing:
                self._closing_now(session.shutdown())  # accepted while shutting down
                return
            server.connections.add(self)
            path = self.path
            try:
                await path.route.handle(self, path)
            except Exception as exc:
                flags = session.handler_failed(exc)
                if server._on_handler_error is not None and not handler_error_is_close(exc):
                    server._on_handler_error(self, exc)
            else:
                flags = session.handler_returned()
            finally:
                server.connections.discard(self)
            self._closing_now(flags)
        except Exception:
            logger.exception("connection from %s failed", peer_name(self.remote_address))
            self._abort_now()
        except BaseException:
            # Cancelled: the server was cancelled, or gave up on the handler at
            # shutdown. Drop TCP, no close frame.
            self._abort_now()
            raise
        finally:
            self._task = False
            if self._lost:
                self._release()

    def _answer(self, decision: Any, cork: bool) -> bool:
        """Carry out the decision; True if the connection is now open (or closing).

        ``cork``: a 101 waits for the handler's first message (or the end of this
        loop iteration) to leave with it, in one segment: when the handler runs in
        this very task step."""
        conn = self._conn
        events = conn.carry_out(decision)
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None
        out = conn.data_to_send()
        state = conn.state
        if state is _OPEN and cork:
            self._cork = [out]
            self._loop.call_soon(self._uncork)
        else:
            self._put(out)
        if self._deciding:
            self._deciding = False
            self._update_reading()
        if state is _CLOSED_STATE:  # an HTTP answer
            if not self._ending:
                self._closed()
            return False
        self.path = conn.path
        self.subprotocol = conn.subprotocol
        session = self._session = Session(conn, self._options, self._loop.time())
        flags = session.dispatch(events, closing=state is _CLOSING_STATE)
        if state is _CLOSING_STATE:  # a Close decision
            self._arm_close_timer()
        if flags:
            self._act(flags)
        if conn.state is _OPEN:
            self._arm_keepalive()
        return True

    def _shutdown(self) -> None:
        """The server shuts down: close with 1001."""
        if self._session is not None:
            self._closing_now(self._session.shutdown())

    # The connection API for handlers

    async def recv(self) -> str | bytes:
        """The next message (``str`` or ``bytes``); ConnectionClosed once closed."""
        session = self._session
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
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    if waiter.result() is not None:  # handed over, then cancelled
                        session.untake(waiter.result())
                raise
            finally:
                self._recv_waiter = None
            if message is not None:
                return message  # type: ignore[no-any-return]

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send one text (``str``) or binary (bytes-like) message."""
        if type(message) is str:
            data = self._conn.send_text(message)
        else:
            data = self._conn.send(message)
        cork = self._cork
        if cork is None:
            self._transport.write(data)
        else:  # the handler's first message: it leaves with the 101
            cork.append(data)
            self._uncork()
        if self._write_paused:
            await self._drain()

    async def _drain(self) -> None:
        while self._write_paused and not self._transport.is_closing():
            waiter: asyncio.Future[None] = self._loop.create_future()
            if self._drain_waiters is None:
                self._drain_waiters = []
            self._drain_waiters.append(waiter)
            await waiter
        if self._conn.state is _CLOSED_STATE:
            raise self._session.closed_error()

    async def ping(self, data: str | bytes | None = None) -> asyncio.Future[float]:  # type: ignore[override]
        """Send a ping; await the result for the latency once the pong arrives."""
        payload = None if data is None else data.encode() if isinstance(data, str) else bytes(data)
        future: asyncio.Future[float] = self._loop.create_future()
        self._put(self._session.ping(payload, future, self._loop.time()))
        return future

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited pong."""
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._put(self._conn.send_pong(payload))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``/``reason`` and wait (up to ``close_timeout``) for the
        closing handshake; does nothing more if the connection is already closing."""
        self._closing_now(self._session.close(code, reason))
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (closing handshake done or TCP lost)."""
        if self._conn.state is not _CLOSED_STATE:
            future: asyncio.Future[None] = self._loop.create_future()
            if self._closers is None:
                self._closers = []
            self._closers.append(future)
            await future


def _first_step(coro: Any) -> tuple[Any, bool]:
    """Run ``coro`` until it first waits: ``(what it waits on, False)``, or
    ``(its result, True)`` if it did not wait. A function of its own, so that the
    StopIteration's traceback makes no frame object for the caller's frame (in
    Python 3.11 that object would live as long as the connection's task)."""
    try:
        return coro.send(None), False
    except StopIteration as stop:
        return stop.value, True


class _Resume:
    """Await the rest of a coroutine already stepped once (it yielded ``first``)."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Any, first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        value = self._first
        self._first = None
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # a cancellation, passed on to the coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _close_stream(stream: anyio.abc.AsyncResource) -> None:
    """Close a stream at once. anyio's streams release the socket before their
    closing checkpoint, so a cancellation cannot leak it; unlike
    ``aclose_forcefully`` this makes no cancel scope (a per-connection cost)."""
    try:
        await stream.aclose()
    except Exception:
        pass


class _Timers:
    """The keepalive deadlines of a server's connections, served by one task.

    A heap of ``(deadline, seq, connection)``, instead of a sleeping task per
    connection: an idle connection costs a heap entry. An entry is current while
    ``connection._timer_at`` equals its deadline; stale ones are dropped when they
    come up, or swept when they are most of the heap.
    """

    def __init__(self, clock: Callable[[], float], event_class: Any) -> None:
        self._heap: list[tuple[float, int, Connection]] = []
        self._seq = 0
        self._stale = 0
        self._clock = clock
        self._event_class = event_class
        self._wake: Any = None
        self._sleeping_until = math.inf

    def schedule(self, ws: Connection) -> None:
        """(Re)arm ``ws``'s timer at ``Session.keepalive_deadline()``, if any."""
        self.cancel(ws)
        deadline = ws._session.keepalive_deadline()
        if deadline is None:
            return
        ws._timer_at = deadline
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, ws))
        if deadline < self._sleeping_until and self._wake is not None:
            self._wake.set()

    def cancel(self, ws: Connection) -> None:
        if ws._timer_at is None:
            return
        ws._timer_at = None
        self._stale += 1
        heap = self._heap
        if self._stale > 64 and self._stale * 2 > len(heap):
            heap[:] = [entry for entry in heap if entry[2]._timer_at == entry[0]]
            heapq.heapify(heap)
            self._stale = 0

    async def run(self, spawn: Callable[..., Any]) -> None:
        heap = self._heap
        while True:
            now = self._clock()
            while heap and heap[0][0] <= now:
                deadline, _, ws = heapq.heappop(heap)
                if ws._timer_at != deadline:
                    self._stale = max(0, self._stale - 1)
                    continue
                ws._timer_at = None
                ws._keepalive(now, spawn)
                self.schedule(ws)
            self._sleeping_until = heap[0][0] if heap else math.inf
            self._wake = wake = self._event_class()
            with anyio.move_on_after(self._sleeping_until - now):
                await wake.wait()


class Server:
    """A running server: ``async with serve(...) as server``.

    ``port`` (the bound port, also for ``port=0``), ``listeners``, ``sockets``,
    ``connections`` (the open ones), ``await serve_forever()``, ``close()``,
    ``await wait_closed()``.
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
        if not callable(getattr(router, "resolve", None)):
            raise TypeError(f"serve() needs a Router, not {type(router).__name__}")
        self.router = router
        self.host = host
        self._port = port
        self.options = ServerOptions(**options)
        self._backlog = backlog
        self._reuse_port = reuse_port
        # The TestClient hears of handler exceptions this way.
        self._on_handler_error = on_handler_error
        # resolve() as the core defines it can be taken in two steps (see
        # _LoopConnection._request_received); a router overriding it is awaited.
        self._resolve_inline = getattr(type(router), "resolve", None) is CoreRouter.resolve
        self.listeners: list[anyio.abc.SocketListener] = []
        self._bound_port: int | None = None
        self.connections: set[Connection] = set()
        # Connections still in their opening handshake, with their stream.
        self._handshaking: dict[ServerConnection, anyio.abc.ByteStream | _LoopConnection] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._conn_tg: anyio.abc.TaskGroup | None = None
        self._accept_scopes: list[anyio.CancelScope] = []
        self._active = 0
        self._closing = False
        self._idle: anyio.Event | None = None
        self._stop: anyio.Event | None = None
        self._closed: anyio.Event | None = None
        self._event_class: Any = None
        self._timers: _Timers | None = None
        # On asyncio without TLS: the loop; connections are _LoopConnection
        # protocols, accepted by a reader callback on each listening socket.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting: list[Any] = []  # raw listening sockets with a reader callback
        self._make_transport: Any = None  # the selector loop's, to skip a task per accept
        # Every _LoopConnection until its TCP is over and its task has ended.
        self._loop_connections: set[_LoopConnection] = set()
        self._all_lost: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.listeners else "not listening"
        return f"<Server {where} {len(self.connections)} open>"

    @property
    def port(self) -> int:
        """The bound port (the first listener's)."""
        if self._bound_port is None:
            raise RuntimeError("the server is not listening")
        return self._bound_port

    @property
    def sockets(self) -> list[Any]:
        return [listener.extra(SocketAttribute.raw_socket) for listener in self.listeners]

    def is_serving(self) -> bool:
        return self._tg is not None and not self._closing

    # Lifecycle

    async def __aenter__(self) -> Server:
        if self._tg is not None:
            raise RuntimeError("this server was already started")
        event_class = self._event_class = type(anyio.Event())
        self._idle = event_class()
        self._stop = event_class()
        self._closed = event_class()
        self._timers = _Timers(anyio.current_time, event_class)
        if self.options.ssl is None and _on_asyncio():
            loop = self._loop = asyncio.get_running_loop()
            if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
                self._make_transport = getattr(loop, "_make_socket_transport", None)
        if self._port is not None:
            multi = await anyio.create_tcp_listener(
                local_host=self.host,
                local_port=self._port,
                backlog=self._backlog,
                reuse_port=self._reuse_port,
            )
            self.listeners = list(multi.listeners)  # type: ignore[arg-type]
            self._bound_port = int(self.listeners[0].extra(SocketAttribute.local_port))
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await tg.start(self._host)
        except BaseException:
            self._closing = True
            await tg.__aexit__(*sys.exc_info())
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg = self._tg
        assert tg is not None
        try:
            self.close()
            await self.wait_closed()
        except BaseException:
            # Cancelled while shutting down gracefully: the task group cancels the rest.
            tg.cancel_scope.cancel()
            if exc is None:
                return await tg.__aexit__(*sys.exc_info())
        if isinstance(exc, Exception):
            # The block failed: let its exception out as it is, not wrapped in an
            # ExceptionGroup by the task group (which has nothing left to run).
            await tg.__aexit__(None, None, None)
            return None
        return await tg.__aexit__(exc_type, exc, tb)

    async def serve_forever(self) -> None:
        """Serve until ``close()`` is called (from another task) and the server closed."""
        if self._closed is None:
            raise RuntimeError("use serve_forever() inside `async with serve(...)`")
        await self._closed.wait()

    def close(self) -> None:
        """Stop accepting, close open connections with 1001, then (after
        ``close_timeout``) cancel the handlers still running. Does not wait."""
        if self._closing or self._conn_tg is None:
            self._closing = True
            return
        self._closing = True
        for scope in self._accept_scopes:
            scope.cancel()
        if self._accepting:
            self._stop_accepting()
            for listener in self.listeners:
                self._conn_tg.start_soon(_close_stream, listener)
        self._conn_tg.start_soon(self._shutdown)

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
                    if self._loop is not None:
                        self._start_accepting(listener)
                    else:
                        tg.start_soon(self._accept_loop, listener)
                if self.options.ping_interval is not None:
                    assert self._timers is not None
                    tg.start_soon(self._timers.run, tg.start_soon)
                task_status.started()
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            self._conn_tg = None
            self._stop_accepting()
            if self._loop_connections:
                # Connections without a task (still reading the request, or
                # finishing TCP): drop them and wait until their sockets are closed.
                assert self._loop is not None
                self._all_lost = self._loop.create_future()
                for ws in list(self._loop_connections):
                    ws._abort_now()
                with anyio.CancelScope(shield=True):
                    await self._all_lost
            for listener in self.listeners:
                await _close_stream(listener)
            self._closed.set()

    async def _shutdown(self) -> None:
        assert self._idle is not None and self._stop is not None
        tg = self._conn_tg
        assert tg is not None
        for ws in list(self.connections):
            if isinstance(ws, _LoopConnection):
                ws._shutdown()
            else:
                tg.start_soon(ws._going_away)
        # As the asyncio transport: a request still being read is dropped; one being
        # decided gets its answer, then 1001 right after a 101.
        for conn, stream in list(self._handshaking.items()):
            if conn.state is State.REQUEST:
                if isinstance(stream, _LoopConnection):
                    stream._abort_now()
                else:
                    tg.start_soon(_close_stream, stream)
        if self._active:
            with anyio.move_on_after(_timeout(self.options.close_timeout)):
                await self._idle.wait()
            if self._active:
                logger.info("cancelling %d connection(s) still open at shutdown", self._active)
        self._stop.set()

    async def _accept_loop(self, listener: anyio.abc.SocketListener) -> None:
        with anyio.CancelScope() as scope:
            self._accept_scopes.append(scope)
            if self._closing:
                scope.cancel()
            try:
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        if exc.errno not in _ACCEPT_RETRY:
                            raise
                        logger.error("accept() failed (%s); retrying in 100 ms", exc)
                        await anyio.sleep(0.1)
                        continue
                    assert self._conn_tg is not None
                    self._conn_tg.start_soon(self.handle_stream, stream)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
            finally:
                # Stop listening now, not when the last connection ends.
                await _close_stream(listener)

    def _start_accepting(self, listener: anyio.abc.SocketListener) -> None:
        """Accept on ``listener``'s socket from a reader callback (asyncio only): no
        accept task, no checkpoint, cancel scope or epoll registration per
        connection; each accepted socket gets its task in the connection group."""
        loop = self._loop
        assert loop is not None
        sock = listener.extra(SocketAttribute.raw_socket)
        context = contextvars.copy_context()
        if _SNIFFIO_CVAR is not None:
            # anyio finds its backend through sniffio, which outside a task looks
            # at this context variable: the callback spawns tasks.
            context.run(_SNIFFIO_CVAR.set, "asyncio")
        context.run(loop.add_reader, sock, self._accept_ready, sock)
        self._accepting.append(sock)

    def _stop_accepting(self) -> None:
        loop = self._loop
        accepting, self._accepting = self._accepting, []
        for sock in accepting:
            if loop is not None and sock.fileno() >= 0:
                loop.remove_reader(sock)

    def _accept_ready(self, listening: socket.socket) -> None:
        """The listening socket is readable: accept what waits (as asyncio does)."""
        tg = self._conn_tg
        for _ in range(self._backlog):
            try:
                sock, address = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_RETRY and self._loop is not None:
                    logger.error("accept() failed (%s); retrying in 100 ms", exc)
                    self._loop.remove_reader(listening)
                    self._loop.call_later(0.1, self._accept_again, listening)
                elif exc.errno not in _ACCEPT_IGNORE:
                    logger.error("accept() failed (%s); no longer accepting", exc)
                    self._loop.remove_reader(listening)  # type: ignore[union-attr]
                    self._accepting.remove(listening)
                return
            if tg is None or self._closing or tg.cancel_scope.cancel_called:
                sock.close()
                continue
            # anyio's listening socket has proto 0: asyncio would not set TCP_NODELAY.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            remote = address[:2] if isinstance(address, tuple) else address
            ws = _LoopConnection(self, self._loop, remote)  # type: ignore[arg-type]
            if self._make_transport is not None:
                try:
                    sock.setblocking(False)
                    ws._transport = self._make_transport(sock, ws, extra={"peername": address})
                except Exception:
                    logger.exception("connection from %s failed", peer_name(remote))
                    sock.close()
                    ws._lost = True
                    ws._release()
            else:
                tg.start_soon(self._connect, ws, sock)

    def _accept_again(self, listening: socket.socket) -> None:
        if listening in self._accepting and not self._closing and self._loop is not None:
            self._loop.add_reader(listening, self._accept_ready, listening)

    async def _connect(self, ws: _LoopConnection, sock: socket.socket) -> None:
        """Make the transport of an accepted socket, where only a coroutine can (uvloop)."""
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(lambda: ws, sock)
        except BaseException as exc:
            if ws._transport is None:  # else connection_lost() comes
                sock.close()
                ws._lost = True
                ws._release()
            if not isinstance(exc, OSError):
                raise

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
        self._active += 1
        try:
            # One look at the attributes: anyio builds their table on every call.
            attributes: Any = stream.extra_attributes
            if remote_address is None:
                getter = attributes.get(SocketAttribute.remote_address)
                remote_address = getter() if getter is not None else None
            getter = attributes.get(SocketAttribute.local_address)
            local_address = getter() if getter is not None else None
            await self._serve(stream, remote_address, local_address)
        except Exception:
            logger.exception("connection from %s failed", peer_name(remote_address))
        finally:
            self._active -= 1
            await _close_stream(stream)
            if self._active == 0 and self._closing and self._idle is not None:
                self._idle.set()
            if done is not None:
                done.set()

    async def _serve(
        self, stream: anyio.abc.ByteStream, remote_address: Any, local_address: Any
    ) -> None:
        options = self.options
        conn = options.connection(remote_address)
        self._handshaking[conn] = stream
        try:
            with anyio.move_on_after(_timeout(options.open_timeout)) as scope:
                opened = await self._handshake(stream, conn)
        finally:
            del self._handshaking[conn]
        if scope.cancelled_caught:
            logger.info(
                "opening handshake from %s not done within %ss",
                peer_name(remote_address),
                options.open_timeout,
            )
            return
        if opened is None:
            return  # 400/431 answered, TLS failed, or the peer left
        stream, tcp, request, decision, events = opened
        session = Session(conn, options, anyio.current_time())
        ws = Connection(
            stream,
            session,
            request,
            options,
            tcp=tcp,
            local_address=local_address,
            event_class=self._event_class,
        )
        flags = session.dispatch(events, closing=conn.state is State.CLOSING)
        out = session.data_to_send()
        if flags:
            ws._apply(flags)
        await ws._write(out)
        if conn.state is _CLOSED_STATE:  # an HTTP response, or a failure right away
            await ws._finish_tcp()
            return
        self.connections.add(ws)
        timers = self._timers
        assert timers is not None
        try:
            ws._timers = timers
            timers.schedule(ws)
            async with anyio.create_task_group() as tg:
                tg.start_soon(ws._read_loop)
                if isinstance(decision, Accept) and conn.state is _OPEN:
                    if self._closing:
                        await ws._going_away()  # accepted while shutting down
                    else:
                        await self._run_handler(ws, session)
                # A Close decision: its close frame is out; the same wait applies.
                if not session.closed:
                    await ws._close_and_wait(0)
                await ws._wait_reader()
        finally:
            timers.cancel(ws)
            self.connections.discard(ws)

    async def _handshake(self, stream: anyio.abc.ByteStream, conn: ServerConnection) -> Any:
        """TLS, then the HTTP request, then the router's decision, carried out.

        Returns ``(stream, tcp, request, decision, events)``, or None when the
        connection ended (TLS failure, peer gone, malformed request answered).
        """
        tcp = stream
        if self.options.ssl is not None:
            tcp = _SerialSend(stream)
            try:
                stream = await TLSStream.wrap(
                    tcp, server_side=True, ssl_context=self.options.ssl, standard_compatible=False
                )
            except (*_STREAM_ERRORS, _ssl.SSLError) as exc:
                logger.info("TLS handshake with %s failed: %s", peer_name(conn.remote_address), exc)
                return None
        request = await _read_request(stream, conn, self.options)
        if request is None:
            return None
        decision = await self.router.resolve(request)
        events = conn.carry_out(decision)
        return stream, tcp, request, decision, events

    async def _run_handler(self, ws: Connection, session: Session) -> None:
        path = ws.path
        try:
            await path.route.handle(ws, path)
        except Exception as exc:
            flags = session.handler_failed(exc)
            if self._on_handler_error is not None and not handler_error_is_close(exc):
                self._on_handler_error(ws, exc)
        else:
            flags = session.handler_returned()
        await ws._close_and_wait(flags)


async def _read_request(
    stream: anyio.abc.ByteStream, conn: ServerConnection, options: ServerOptions
) -> Request | None:
    """Read until the request head is complete; None if answered (400/431) or gone."""
    while True:
        try:
            data = await stream.receive(_READ_SIZE)
        except _STREAM_ERRORS:
            conn.receive_eof()
            return None
        events = conn.receive_data(data)
        out = conn.data_to_send()
        if out:
            try:
                await stream.send(out)
            except _STREAM_ERRORS:
                return None
        for event in events:
            if type(event) is RequestReceived:
                return event.request
            if type(event) is Closed:
                await _finish_rejected(stream, options)
                return None


async def _finish_rejected(stream: anyio.abc.ByteStream, options: ServerOptions) -> None:
    # The 400/431 answer is written: let it arrive before closing (see _finish_tcp).
    tcp = stream.transport_stream if isinstance(stream, TLSStream) else stream
    try:
        await tcp.send_eof()
    except (*_STREAM_ERRORS, NotImplementedError):
        return
    with anyio.move_on_after(_timeout(options.close_timeout)):
        try:
            while await stream.receive(_READ_SIZE):
                pass
        except _STREAM_ERRORS:
            pass


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
    ``close_timeout``, ``max_header_bytes``, ``compression``, ``ssl`` (see
    ``core.session.ServerOptions``), ``backlog``, ``reuse_port``.
    """
    return Server(router, host, port, **options)
