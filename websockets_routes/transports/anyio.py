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

Structure (structured concurrency): one task group per server. It holds one accept
loop per listening socket, one timer task for all connections (a heap of deadlines:
keepalive, and the look described next), one task per connection, which runs the
handler itself, and, only when needed, a connection's reader task; a connection's
task ends after its reader. Reading is on demand: while a handler keeps calling
``recv()``, its own task reads (one task switch per message, no reader to start);
when it stays out of ``recv()`` for 0.1 s, calls ``ping()``, or a second task needs
input, the reader task starts and reads from then on, so pings are answered and a
peer's close is seen whatever the handler does. A handler whose recv() gets
cancelled (a timeout) gets the reader task then, and a connection on anything but a
plain socket stream (TLS, memory) has it from the start (see ``Server._serve``).
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

Speed: on asyncio (and uvloop) a connection on anyio's plain TCP stream reads and
writes through the transport and protocol anyio created, with anyio's own buffers
and events, skipping the per-call checkpoint and pause/resume of anyio's public
``send()``/``receive()`` (see ``_asyncio_socket``); trio, TLS and in-memory streams
use the public stream API. Also on asyncio, the listening socket's readiness
callback accepts; on selector loops it makes each connection's anyio stream at once
(``_stream_maker``), and each accepted connection runs in a task the loop makes,
which the server owns as its task group would (``Server._spawn_connection``):
anyio's ``start_soon()`` costs as much as a sixth of a handshake. The open timeout of
those connections is a loop timer (``Server._handshake_fast``).

Options: those of ``core.session.ServerOptions`` (``max_size``, ``max_queue``,
``open_timeout``, ``ping_interval``, ``ping_timeout``, ``close_timeout``,
``max_header_bytes``, ``compression``, ``ssl``), plus ``backlog`` and ``reuse_port``
for the listening socket. With ``ssl=`` (an ``ssl.SSLContext``) connections are
wrapped in anyio TLS streams; the TLS handshake counts against ``open_timeout``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import socket
import ssl as _ssl
import sys
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, Literal

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from ..core.connection import ServerConnection, State
from ..core.events import Closed, RequestReceived
from ..core.handshake import (
    Accept,
    Request,
    resolve_pending,
    resolve_rest,
    resolve_start,
)
from ..core.iteration import MessageIteration
from ..core.paths import RoutedPath
from ..core.router import check_router, resolves_in_steps
from ..core.session import (
    ACCEPT_RETRY_ERRNOS,
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
# How long a handler may stay out of recv() before its connection gets a reader task
# (see Connection.__init__): pings and a peer's close wait this long at most.
_READER_AFTER = 0.1
_HEAP_READ_SIZE = 128 * 1024 - 1024  # see _asyncio_socket()
_OPEN = State.OPEN
_CLOSED_STATE = State.CLOSED
# The peer is gone or the stream was closed under us: all end the connection.
_STREAM_ERRORS = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)
# What a handshake that ran out of open_timeout returns.
_TIMED_OUT: Any = object()
# Connections taken per wake of the listening socket, as asyncio's own server does:
# a flood of connects cannot keep the loop from everything else.
_ACCEPT_BATCH = 100


def _timeout(value: float | None) -> float:
    return math.inf if value is None else value


# (stream, transport, protocol) classes that _asyncio_socket() found to be as expected.
_CHECKED_SOCKETS: set[tuple[type, type, type]] = set()


def _asyncio_socket(stream: Any, loop: Any = None) -> tuple[Any, Any, Any] | None:
    """``(transport, protocol, loop)`` of anyio's asyncio ``SocketStream``, else None.

    anyio's ``send()`` ends every write with a checkpoint (a whole event-loop pass
    per message) and its ``receive()`` resumes then pauses the transport around
    every read (two epoll_ctl calls per message); on asyncio that is half of the
    cost of an echo. For that one stream type (plain TCP on asyncio or uvloop) the
    connection reads and writes through the same transport and protocol anyio
    uses, with anyio's own buffers, events and back-pressure. Anything else
    (trio, TLS, memory streams) and any anyio whose internals differ use the
    public stream API. ``loop``: the running loop, if the caller has it (on
    Python 3.11 each ``asyncio.get_running_loop()`` costs a getpid() system call).
    """
    cls = type(stream)
    if cls.__name__ != "SocketStream" or cls.__module__ != "anyio._backends._asyncio":
        return None
    transport = getattr(stream, "_transport", None)
    protocol = getattr(stream, "_protocol", None)
    if transport is None:
        return None
    kinds = (cls, type(transport), type(protocol))
    if kinds not in _CHECKED_SOCKETS:
        needed = ("read_queue", "read_event", "write_event", "exception", "is_at_eof")
        if not all(hasattr(protocol, name) for name in needed):
            return None
        if not all(hasattr(transport, name) for name in ("write", "resume_reading", "is_closing")):
            return None
        _CHECKED_SOCKETS.add(kinds)
    if getattr(transport, "max_size", None) == 256 * 1024:
        # asyncio's selector transport reads into a fresh 256 KiB bytes object each
        # time, above glibc's mmap threshold (128 KiB): mmap, mremap, munmap for a
        # 40-byte message, and a reader that keeps reading (above) pays it on every
        # message. Just under the threshold the buffer comes from the heap.
        transport.max_size = _HEAP_READ_SIZE
    return transport, protocol, loop if loop is not None else asyncio.get_running_loop()


def _ipv4_addresses(transport: Any) -> tuple[Any, Any] | None:
    """``(peer, local)`` as anyio gives them, from what asyncio's transport read at
    its creation; None unless both are IPv4 ``(host, port)`` (anyio rewrites IPv6
    ones)."""
    peer = transport.get_extra_info("peername")
    local = transport.get_extra_info("sockname")
    if type(peer) is tuple and len(peer) == 2 and type(local) is tuple and len(local) == 2:
        return peer, local
    return None


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
        "_check_at",
        "_exits_seen",
        "_handover",
        "_inline",
        "_reader_done",
        "_reader_started",
        "_reader_writing",
        "_read_paused",
        "_receiving",
        "_recv_exits",
        "_recv_waiter",
        "_spawn",
        "_resume",
        "_session",
        "_stream",
        "_tcp",
        "_timer_entry",
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
        fast: tuple[Any, Any, Any] | None | Literal[False] = False,
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
        self._recv_waiter: Any = None  # an Event, or on the fast path a future
        self._resume: anyio.Event | None = None
        # Made when first awaited (an idle connection carries no Event): the driver
        # reported Closed; TCP is over (the reader has finished).
        self._closed: Any = None
        self._done: Any = None
        self._reader_done = False
        # Reading on demand: until a reader task is started (``_reader_started``),
        # whoever needs input reads it in its own task (``_inline`` while it does):
        # recv() waiting for a message, or the closing handshake. The server's timer
        # starts the reader task for a handler that stays out of recv() for
        # _READER_AFTER seconds (see _on_timer), and ping() or a second task
        # needing input start it at once. An echo loop or a short-lived handler so
        # never has a second task, nor two task switches per message.
        self._reader_started = False
        self._inline = False
        self._handover: Any = None  # set when inline reading stops, for the reader task
        self._receiving = False  # recv() is running
        self._recv_exits = 0  # messages recv() returned
        self._exits_seen = 0  # _recv_exits when the timer last looked
        self._check_at: float | None = None  # the timer's next look, if any
        self._spawn: Callable[..., Any] | None = None  # starts a task in the server's group
        self._aborted = False
        self._read_paused = False  # we paused the asyncio transport (see _pause_reading)
        self._fast = _asyncio_socket(stream) if fast is False else fast
        if self._fast is not None:
            protocol = self._fast[1]
            read_event = protocol.read_event
            if type(read_event) is _ReadEvent:  # the handshake's (_read_request_fast)
                read_event.ws = self
            else:
                read_event = protocol.read_event = _ReadEvent(self)
            if protocol.read_queue or protocol.is_at_eof:
                read_event.set()
        self._reader_writing = False  # reading is writing its answers (see _read_step)
        # Its entry in the server's timers (_Timers): the one-item list through which
        # the heap refers to this connection.
        self._timer_entry: list[Connection | None] | None = None
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
        if self._receiving:
            raise RuntimeError("recv() is already waiting for a message in another task")
        session = self._session
        if not session.messages:
            self._receiving = True
            try:
                while not session.messages:
                    if session.answered():
                        # The handler read all it will get before the bad input: fail.
                        await self._close_and_wait(session.fail_pending())
                    if not session.can_recv():
                        raise session.closed_error()
                    # Nobody reads yet (the common case) needs no call to decide.
                    if not (self._reader_started or self._inline) or self._may_read_here():
                        await self._read_inline()
                        continue
                    # The reader task wakes us (_wake_recv). On asyncio, a bare
                    # future: what an Event would wrap, without the Event.
                    if self._fast is not None:
                        waiter = self._recv_waiter = self._fast[2].create_future()
                        woken = waiter
                    else:
                        event = self._recv_waiter = self._event()
                        woken = event.wait()
                    try:
                        await woken
                    finally:
                        self._recv_waiter = None
            finally:
                self._receiving = False
        message, resume = session.take()
        if resume and self._resume is not None:
            self._resume.set()
        self._recv_exits += 1
        if self._check_at is None and not self._reader_started:
            self._arm_check()
        return message

    # Sending

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send one text (``str``) or binary (bytes-like) message."""
        data = self._conn.send(message)
        written = self._write_now(data) if self._fast is not None else None
        if written:
            return
        if written is None:
            await self._write(data)
        else:
            await self._write_rest(b"")  # written: only the wait for the drain is left
        if self._aborted:
            raise self._session.closed_error()

    async def ping(self, data: str | bytes | None = None) -> _PongWaiter:
        """Send a ping; await the result for the latency once the pong arrives."""
        self._start_reader()  # the pong must be read, whether or not recv() runs
        payload = data.encode("utf-8") if isinstance(data, str) else data
        waiter = _PongWaiter()
        frame = self._session.ping(None if payload is None else bytes(payload), waiter, self._now())
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
        session = self._session
        while not session.closed:
            if self._may_read_here():
                await self._read_inline()
                continue
            if self._closed is None:
                self._closed = self._event()
            await self._closed.wait()

    # Internals: reading

    def _may_read_here(self) -> bool:
        """Whether a task that needs input reads it itself: no reader task yet, and no
        other task reading on demand. When one is (recv() and wait_closed() in two
        tasks), the reader task starts, to read for both."""
        if self._reader_started:
            return False
        if self._inline:
            self._start_reader()
            return False
        return True

    async def _read_inline(self) -> None:
        """Read in this task until something happens (a message, the close, a pong,
        a protocol error) or the reader task wants its turn; end TCP if closed."""
        self._inline = True
        try:
            while not await self._read_step() and not self._reader_started:
                pass  # a partial frame
        except BaseException:
            # Cancelled, as recv() under a timeout is: input must not wait for a
            # recv() that may come too late again, so the reader task takes over.
            self._start_reader()
            raise
        finally:
            self._inline = False
            if self._handover is not None:
                self._handover.set()
        if self._session.closed and not self._reader_started:
            await self._finish_reading()

    def _start_reader(self) -> None:
        """Start the reader task, unless reading is taken care of for good."""
        if not self._reader_started and self._spawn is not None:
            self._reader_started = True
            self._spawn(self._read_task)

    def _now(self) -> float:
        timers = self._timers
        return timers.now() if timers is not None else anyio.current_time()

    def _arm_check(self) -> None:
        timers = self._timers
        if timers is not None:
            self._exits_seen = self._recv_exits
            self._check_at = timers.now() + _READER_AFTER
            timers.schedule(self, wake=False)

    def _on_timer(self, now: float, spawn: Callable[..., Any]) -> None:
        """The server's timer fired for this connection: keepalive, and whether the
        handler has stayed out of recv() long enough to need the reader task."""
        deadline = self._session.keepalive_deadline()
        if deadline is not None and deadline <= now:
            self._keepalive(now, spawn)
        check_at = self._check_at
        if check_at is None or check_at > now:
            return
        self._check_at = None
        if self._reader_started or self._session.closed:
            return
        if self._receiving:
            return  # recv() reads; the message it returns arms the next look
        if self._recv_exits == self._exits_seen:
            self._start_reader()  # no message taken for _READER_AFTER: not reading
        else:
            self._exits_seen = self._recv_exits
            self._check_at = now + _READER_AFTER  # the timer reschedules us next

    def _next_deadline(self) -> float | None:
        deadline = self._session.keepalive_deadline()
        check_at = self._check_at
        if check_at is None:
            return deadline
        return check_at if deadline is None or check_at < deadline else deadline

    async def _finish_reading(self) -> None:
        """The connection is closed and no reader task runs: end TCP here."""
        self._reader_started = True
        try:
            await self._finish_tcp()
        finally:
            self._reading_done()

    def _reading_done(self) -> None:
        self._reader_done = True
        if self._done is not None:
            self._done.set()

    async def _read_task(self) -> None:
        """The reader, in the server's task group: a failure ends this connection,
        not the server."""
        try:
            await self._read_loop()
        except Exception:
            logger.exception("reading from %s failed", peer_name(self.remote_address))
            await self._abort()

    async def _wait_reader(self) -> None:
        if not self._reader_started:
            await self._finish_reading()
        elif not self._reader_done:
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
            if self._reader_writing and self._fast is not None:
                self._pause_reading()
            flushed = self._flushed
            if flushed is None:
                flushed = self._flushed = self._event()
            await flushed.wait()
            return
        if not data or self._aborted:
            return
        if self._fast is not None:
            written = self._write_now(data)
            if written:
                return  # handed whole to the transport: the common case, no await
            if written is False:
                data = b""  # written: only the wait for the drain is left
        await self._write_rest(data)

    async def _write_rest(self, data: bytes) -> None:
        """Write ``data``, then what others queued meanwhile, waiting for the stream."""
        fast = self._fast
        self._writing = True
        try:
            send = self._stream.send if fast is None else self._fast_send
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

    def _write_now(self, data: bytes) -> bool | None:
        """``_write()``'s common case on asyncio, without a coroutine: when nothing
        waits to be written before ``data``, hand it to anyio's transport. True if
        done; False if written but the transport asks for a drain
        (``_write_rest(b"")`` waits for it); None if not written (``_write()`` does
        the job)."""
        if self._writing or self._aborted:
            return None
        transport, protocol, _ = self._fast  # type: ignore[misc]
        if transport.is_closing() or protocol.exception is not None:
            return None
        transport.write(data)
        return protocol.write_event.is_set()

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

    async def _fast_send(self, data: bytes) -> None:
        """anyio's SocketStream.send on asyncio, without its trailing checkpoint."""
        transport, protocol, _ = self._fast  # type: ignore[misc]
        if transport.is_closing() or protocol.exception is not None:
            raise anyio.BrokenResourceError
        transport.write(data)
        write_event = protocol.write_event  # replaced by pause_writing()
        if not write_event.is_set():
            if self._reader_writing:
                self._pause_reading()
            await write_event.wait()
            if transport.is_closing() or protocol.exception is not None:
                raise anyio.BrokenResourceError

    async def _abort(self) -> None:
        """End the connection at once (1006 unless a close frame was sent): a timeout,
        or the stream failed. Closing the stream wakes the reader."""
        self._aborted = True
        self._pending.clear()
        if not self._session.closed:
            self._apply(self._session.receive_eof())
        await _close_stream(self._stream)

    # Internals: what the network says

    def _pause_reading(self) -> None:
        """Pause anyio's asyncio transport; _read_step() resumes it when it waits
        for bytes, and only then (a resume_reading() call per message saved)."""
        self._read_paused = True
        self._fast[0].pause_reading()  # type: ignore[index]

    def _wake_recv(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None:
            if self._fast is None:
                waiter.set()
            elif not waiter.done():
                waiter.set_result(None)

    def _apply(self, flags: int) -> None:
        session = self._session
        if flags & MESSAGES and self._recv_waiter is not None:
            self._wake_recv()
        if flags & PONGS:
            now = self._now()
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
        """The reader task: read until the connection is closed, then end TCP."""
        session = self._session
        try:
            while self._inline:  # a task still reads on demand: its turn ends first
                handover = self._handover = self._event()
                await handover.wait()
            if session.failure_pending() and not session.closed:
                await self._await_failure()
            fast = self._fast
            while not session.closed:
                if session.paused:
                    if fast is not None:
                        # anyio's asyncio transport keeps reading until paused.
                        self._pause_reading()
                    resume = self._resume
                    if resume is not None:
                        await resume.wait()
                    continue
                if await self._read_step() & FAILING:
                    await self._await_failure()
            await self._finish_tcp()
        finally:
            self._reading_done()

    async def _read_step(self) -> int:
        """Act on the input there is, first waiting for some if there is none: the
        session's flags. On asyncio, reads anyio's read queue directly: the
        transport keeps reading (no pause/resume per read) until paused."""
        session = self._session
        fast = self._fast
        if fast is not None:
            # _take_queued() written out: this runs per message.
            transport, protocol, loop = fast
            queue = protocol.read_queue
            read_event = protocol.read_event
            if not queue and not (
                protocol.is_at_eof or protocol.exception is not None or transport.is_closing()
            ):
                read_event.flag = False
                if self._read_paused:
                    self._read_paused = False
                    transport.resume_reading()
                waiter = read_event.waiter = loop.create_future()
                await waiter
            if queue:
                if len(queue) == 1:
                    data = queue.popleft()
                else:
                    data = b"".join(queue)
                    queue.clear()
                read_event.flag = False
                flags = session.receive_data(data)
            elif _fast_at_eof(transport, protocol):
                flags = session.receive_eof()
            else:
                return 0
        else:
            try:
                data = await self._stream.receive(_READ_SIZE)
            except _STREAM_ERRORS:
                flags = session.receive_eof()
            else:
                flags = session.receive_data(data)
        # receive_data() and receive_eof() queue only in the driver (see Session).
        out = self._conn.data_to_send()
        if flags and (flags != MESSAGES or self._recv_waiter is not None):
            self._apply(flags)  # not for a message that no recv() waits for: a no-op
        if out:
            # Our answers (pongs, close echo) may wait for a peer that does not
            # read them: _write() then pauses reading (memory stays bounded against
            # a ping flood); it resumes when reading waits for data again.
            self._reader_writing = True
            try:
                await self._write(out)
            finally:
                self._reader_writing = False
        return flags

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
            fast = self._fast
            # anyio's asyncio stream aborts on close: only with nothing left to send.
            if fast is None:
                await _close_stream(self._stream)
                return
            transport = fast[0]
            if not transport.get_write_buffer_size():
                # The FIN leaves now, right after the close frame and before the
                # tasks this close woke run: abort() would close the socket only
                # one loop iteration later, and a peer waiting for our end of TCP
                # (the last step of its closing handshake) waits for nothing else.
                if transport.can_write_eof():
                    try:
                        transport.write_eof()
                    except OSError:
                        pass  # the peer is gone already: abort() ends it all
                # What anyio's aclose() does, without its checkpoint (a loop pass).
                transport.abort()
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
        self._start_reader()  # the pong must be read, whether or not recv() runs
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


def _stream_maker(loop: asyncio.AbstractEventLoop) -> Callable[[socket.socket, Any], Any] | None:
    """On asyncio's selector loops: a function making anyio's asyncio ``SocketStream``
    for an accepted socket at once. anyio's ``SocketStream.from_socket()`` goes
    through ``loop.create_connection(sock=)``, which checks the socket again
    (getpeername) and waits for a future that the loop resolves a pass later: two
    loop passes per connection before its request can be read. The transport made
    here is the one create_connection() makes, with anyio's own protocol; as the
    loop runs callbacks in order, its ``connection_made()`` has run when the
    connection's task (spawned after) first runs. None elsewhere (uvloop, proactor,
    an anyio whose internals differ): connections then go through
    ``from_socket()``."""
    if not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        return None
    make_transport = getattr(loop, "_make_socket_transport", None)
    backend = sys.modules.get("anyio._backends._asyncio")
    protocol_class = getattr(backend, "StreamProtocol", None)
    stream_class = getattr(backend, "SocketStream", None)
    if make_transport is None or protocol_class is None or stream_class is None:
        return None

    def make_stream(client: socket.socket, address: Any) -> Any:
        client.setblocking(False)
        protocol = protocol_class()
        transport = make_transport(client, protocol, extra={"peername": address})
        return stream_class(transport, protocol)

    return make_stream


class _ReadEvent:
    """anyio's read event, for a connection read on demand on asyncio.

    anyio's transport reads for as long as it is not paused, and nobody may be
    reading: the handler is busy elsewhere and no reader task runs yet. Then the
    bytes that arrive pause the transport (reading resumes it), so a peer
    cannot fill memory beyond one read. Checked where bytes arrive, not where the
    handler leaves recv(), this costs nothing per message while the handler reads.

    It replaces the ``asyncio.Event`` anyio's protocol sets when bytes arrive (and
    anyio's ``receive()`` waits on), with what that uses of one (``set``, ``clear``,
    ``is_set``, ``wait``) and no list of waiters: one task reads at a time, on
    ``waiter``, which the connection sets itself (see ``_read_step``).
    """

    __slots__ = ("ws", "flag", "waiter")

    def __init__(self, ws: Connection | None) -> None:
        self.ws = ws  # None during the opening handshake, which reads all the time
        self.flag = False
        self.waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self.flag

    def clear(self) -> None:
        self.flag = False

    async def wait(self) -> None:
        if not self.flag:
            waiter = self.waiter = asyncio.get_running_loop().create_future()
            await waiter

    def set(self) -> None:
        self.flag = True
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        ws = self.ws
        if ws is not None and not (ws._receiving or ws._inline or ws._reader_started):
            ws._pause_reading()


def _take_queued(protocol: Any) -> bytes:
    """All that anyio's asyncio stream protocol has queued, taken as its receive() would."""
    queue = protocol.read_queue
    data = queue.popleft() if len(queue) == 1 else b"".join(queue)
    queue.clear()
    # As anyio's receive() does: an empty queue means no pending event.
    protocol.read_event.clear()
    return data


def _fast_at_eof(transport: Any, protocol: Any) -> bool:
    return protocol.is_at_eof or protocol.exception is not None or transport.is_closing()


async def _after_accept_error(exc: OSError) -> None:
    """accept() failed: out of descriptors or memory passes with time, so wait a
    little before accepting again; any other error is raised."""
    if exc.errno not in ACCEPT_RETRY_ERRNOS:
        raise exc
    logger.error("accept() failed (%s); retrying in 100 ms", exc)
    await anyio.sleep(0.1)


async def _close_stream(stream: anyio.abc.AsyncResource) -> None:
    """Close a stream at once. anyio's streams release the socket before their
    closing checkpoint, so a cancellation cannot leak it; unlike
    ``aclose_forcefully`` this makes no cancel scope (a per-connection cost)."""
    try:
        await stream.aclose()
    except Exception:
        pass


class _Timers:
    """The deadlines of a server's connections (keepalive, and when to look whether
    a handler still reads), served by one task.

    A heap of ``(deadline, seq, [connection])``, instead of a sleeping task per
    connection: an idle connection costs a heap entry. Cancelling an entry empties its
    list, so that the heap keeps no ended connection alive (thousands a second under
    load, with all they hold, would pile up until their deadlines and fill the
    garbage collector's old generations); emptied entries are dropped when they come
    up, or swept when they are most of the heap. Looks need no precision: they
    do not wake the task, which sleeps at most _READER_AFTER while it has entries
    (waking it per connection would cost a task switch and a cancel scope each).
    """

    def __init__(self, clock: Callable[[], float], event_class: Any) -> None:
        self._heap: list[tuple[float, int, list[Connection | None]]] = []
        self._seq = 0
        self._stale = 0
        self._clock = clock
        self._event_class = event_class
        self._wake: Any = None
        self._sleeping_until = math.inf

    def now(self) -> float:
        return self._clock()

    def schedule(self, ws: Connection, wake: bool = True) -> None:
        """(Re)arm ``ws``'s timer at its next deadline, if any; ``wake=False``
        when a look that is up to _READER_AFTER late does not matter."""
        self.cancel(ws)
        deadline = ws._next_deadline()
        if deadline is None:
            return
        entry: list[Connection | None] = [ws]
        ws._timer_entry = entry
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, entry))
        if (
            deadline < self._sleeping_until
            and self._wake is not None
            and (wake or deadline != ws._check_at or self._sleeping_until == math.inf)
        ):
            self._wake.set()

    def cancel(self, ws: Connection) -> None:
        entry = ws._timer_entry
        if entry is None:
            return
        entry[0] = None
        ws._timer_entry = None
        self._stale += 1
        heap = self._heap
        if self._stale > 64 and self._stale * 2 > len(heap):
            heap[:] = [item for item in heap if item[2][0] is not None]
            heapq.heapify(heap)
            self._stale = 0

    async def run(self, spawn: Callable[..., Any]) -> None:
        heap = self._heap
        while True:
            now = self._clock()
            while heap and heap[0][0] <= now:
                self._fire(heapq.heappop(heap)[2], now, spawn)
            while heap and heap[0][2][0] is None:
                heapq.heappop(heap)  # an ended connection's: not worth waking for
                self._stale = max(0, self._stale - 1)
            if heap:
                # The list, not the connection: cancel() may still drop it.
                deadline, _, entry = heap[0]
                if deadline == entry[0]._check_at:  # type: ignore[union-attr]
                    deadline = max(deadline, now + _READER_AFTER / 2)  # looks are lazy
                self._sleeping_until = min(deadline, now + _READER_AFTER)
            else:
                self._sleeping_until = math.inf
            self._wake = wake = self._event_class()
            with anyio.move_on_after(self._sleeping_until - now):
                await wake.wait()

    def _fire(self, entry: list[Connection | None], now: float, spawn: Callable[..., Any]) -> None:
        ws = entry[0]
        if ws is None:
            self._stale = max(0, self._stale - 1)
            return
        ws._timer_entry = None
        ws._on_timer(now, spawn)
        self.schedule(ws)


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
        check_router(router, "serve()")
        self.router = router
        self._resolve_inline = resolves_in_steps(router)
        self.host = host
        self._port = port
        self.options = ServerOptions(**options)
        self._backlog = backlog
        self._reuse_port = reuse_port
        # The TestClient hears of handler exceptions this way.
        self._on_handler_error = on_handler_error
        self.listeners: list[anyio.abc.SocketListener] = []
        self._bound_port: int | None = None
        self.connections: set[Connection] = set()
        # Connections still in their opening handshake, with their stream.
        self._handshaking: dict[ServerConnection, anyio.abc.ByteStream] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._conn_tg: anyio.abc.TaskGroup | None = None
        self._accept_scopes: list[anyio.CancelScope] = []
        # On asyncio, the tasks of accepted connections (see _spawn_connection).
        self._connection_tasks: set[asyncio.Task[None]] = set()
        self._connection_errors: list[BaseException] = []
        self._connection_tasks_cancelled = False
        self._active = 0
        self._closing = False
        self._idle: anyio.Event | None = None
        self._stop: anyio.Event | None = None
        self._closed: anyio.Event | None = None
        self._event_class: Any = None
        self._timers: _Timers | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # on asyncio

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
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            clock: Callable[[], float] = anyio.current_time  # trio
        else:
            clock = self._loop.time  # anyio's clock, without its backend lookup per call
        self._timers = _Timers(clock, event_class)
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
                    tg.start_soon(self._accept_loop, listener)
                assert self._timers is not None
                tg.start_soon(self._timers.run, tg.start_soon)
                task_status.started()
                try:
                    await self._stop.wait()
                finally:
                    # Stopped or cancelled: the connection tasks of _spawn_connection()
                    # go with the task group's own.
                    self._connection_tasks_cancelled = True
                    for task in self._connection_tasks:
                        task.cancel()
                tg.cancel_scope.cancel()
        finally:
            self._conn_tg = None
            await self._wait_connection_tasks()
            for listener in self.listeners:
                await _close_stream(listener)
            self._closed.set()
            if self._connection_errors:
                # What made the server stop (see _connection_task_done).
                raise self._connection_errors[0]

    def _spawn_connection(self, coro: Any) -> None:
        """Run one accepted connection on asyncio: in a task of its own, as in the
        task group, but made by the loop. anyio's ``start_soon()`` adds a cancel
        scope, an event, a wrapper coroutine and task-state bookkeeping to every
        task: about 100k instructions, 15% of a whole handshake here. The server
        owns these tasks as the task group would: ``_host`` cancels them when the
        group stops or is cancelled and waits for them before the server counts as
        closed, and one that fails (handle_stream() catches Exception, so a
        BaseException) cancels the server, its error raised by ``_host``."""
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._connection_tasks.add(task)
        task.add_done_callback(self._connection_task_done)

    def _connection_task_done(self, task: asyncio.Task[None]) -> None:
        self._connection_tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._connection_errors.append(error)
            if self._conn_tg is not None:
                self._conn_tg.cancel_scope.cancel()

    async def _wait_connection_tasks(self) -> None:
        with anyio.CancelScope(shield=True):
            while self._connection_tasks:
                await asyncio.wait(list(self._connection_tasks))

    async def _shutdown(self) -> None:
        assert self._idle is not None and self._stop is not None
        tg = self._conn_tg
        assert tg is not None
        for ws in list(self.connections):
            tg.start_soon(ws._going_away)
        # As the asyncio transport: a request still being read is dropped; one being
        # decided gets its answer, then 1001 right after a 101.
        for conn, stream in list(self._handshaking.items()):
            if conn.state is State.REQUEST:
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
                if type(listener).__module__ == "anyio._backends._asyncio":
                    await self._accept_batches(listener)
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        await _after_accept_error(exc)
                        continue
                    assert self._conn_tg is not None
                    self._conn_tg.start_soon(self.handle_stream, stream)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
            finally:
                # Stop listening now, not when the last connection ends.
                await _close_stream(listener)

    async def _accept_batches(self, listener: anyio.abc.SocketListener) -> None:
        """The accept loop on asyncio: anyio's ``accept()`` takes one connection per
        call, each with a checkpoint (a loop pass) and its own wait for the listening
        socket (two epoll_ctl calls). Here the loop watches the listening socket for
        as long as the server accepts, and its readiness callback takes every
        connection that waits and starts its task; this task only waits, and
        handles accept() failures."""
        sock = listener.extra(SocketAttribute.raw_socket)
        spawn = self._spawn_connection
        loop = asyncio.get_running_loop()
        make_stream = _stream_maker(loop)
        failed: asyncio.Future[OSError] | None = None

        def accept_waiting() -> OSError | None:
            for _ in range(_ACCEPT_BATCH):
                if self._connection_tasks_cancelled:
                    return None  # this task is cancelled too, its reader not yet removed
                try:
                    client, address = sock.accept()
                except (BlockingIOError, InterruptedError):
                    return None
                except OSError as exc:
                    return exc
                # As anyio's accept() does: small frames are not held back (Nagle).
                try:
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    client.close()  # gone already
                    continue
                if make_stream is None:
                    spawn(self._handle_accepted(client))
                    continue
                try:
                    stream = make_stream(client, address)
                except OSError:
                    client.close()
                    continue
                spawn(self.handle_stream(stream))
            return None

        def readable() -> None:
            error = accept_waiting()
            if error is not None and failed is not None and not failed.done():
                loop.remove_reader(sock)  # still readable: do not spin while waiting
                failed.set_result(error)

        while True:
            failed = loop.create_future()
            try:
                loop.add_reader(sock, readable)
            except NotImplementedError:  # a loop without readiness callbacks (proactor)
                break
            try:
                failure = await failed
            finally:
                loop.remove_reader(sock)
            await _after_accept_error(failure)
        while True:
            await anyio.wait_readable(sock)
            error = accept_waiting()
            if error is not None:
                await _after_accept_error(error)

    async def _handle_accepted(self, client: socket.socket) -> None:
        try:
            stream = await anyio.abc.SocketStream.from_socket(client)
        except OSError:
            client.close()  # the peer left before its stream was made
            return
        except BaseException:
            client.close()
            raise
        await self.handle_stream(stream)

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
        fast = None
        try:
            fast = _asyncio_socket(stream, self._loop) if self.options.ssl is None else None
            addresses = _ipv4_addresses(fast[0]) if fast is not None else None
            if addresses is not None:
                # asyncio's transport has them already: anyio's attribute table
                # would ask the kernel again (getpeername, getsockname).
                peer, local_address = addresses
                if remote_address is None:
                    remote_address = peer
            else:
                # One look at the attributes: anyio builds their table on every call.
                attributes: Any = stream.extra_attributes
                if remote_address is None:
                    getter = attributes.get(SocketAttribute.remote_address)
                    remote_address = getter() if getter is not None else None
                getter = attributes.get(SocketAttribute.local_address)
                local_address = getter() if getter is not None else None
            await self._serve(stream, remote_address, local_address, fast)
        except Exception:
            logger.exception("connection from %s failed", peer_name(remote_address))
        finally:
            self._active -= 1
            if fast is not None:
                fast[0].abort()  # anyio's aclose(), without its checkpoint (a loop pass)
            else:
                await _close_stream(stream)
            if self._active == 0 and self._closing and self._idle is not None:
                self._idle.set()
            if done is not None:
                done.set()

    async def _serve(
        self,
        stream: anyio.abc.ByteStream,
        remote_address: Any,
        local_address: Any,
        fast: tuple[Any, Any, Any] | None,
    ) -> None:
        options = self.options
        conn = options.connection(remote_address)
        self._handshaking[conn] = stream
        try:
            if fast is not None:
                opened = await self._handshake_fast(stream, conn, fast)
            else:
                with anyio.move_on_after(_timeout(options.open_timeout)) as scope:
                    opened = await self._handshake(stream, conn)
                if scope.cancelled_caught:
                    opened = _TIMED_OUT
        finally:
            del self._handshaking[conn]
        if opened is _TIMED_OUT:
            logger.info(
                "opening handshake from %s not done within %ss",
                peer_name(remote_address),
                options.open_timeout,
            )
            return
        if opened is None:
            return  # 400/431 answered, TLS failed, or the peer left
        stream, tcp, request, decision, events = opened
        assert self._timers is not None
        session = Session(conn, options, self._timers.now())
        ws = Connection(
            stream,
            session,
            request,
            options,
            tcp=tcp,
            local_address=local_address,
            event_class=self._event_class,
            fast=fast if stream is tcp else None,
        )
        try:
            flags = session.dispatch(events, closing=conn.state is State.CLOSING)
            out = session.data_to_send()
            if flags:
                ws._apply(flags)
            await ws._write(out)
            if conn.state is _CLOSED_STATE:  # an HTTP response, or a failure right away
                await ws._finish_tcp()
                return
            self.connections.add(ws)
            try:
                if not isinstance(decision, Accept) or conn.state is not _OPEN:
                    # A Close decision: its close frame is out. The peer's answer is read
                    # in this task; no reader task, no timer.
                    ws._reader_started = True
                    with anyio.move_on_after(_timeout(options.close_timeout)):
                        await ws._read_loop()
                    if not session.closed:
                        await ws._abort()
                    return
                timers = self._timers
                assert timers is not None and self._conn_tg is not None
                ws._timers = timers
                # A reader task, when one is needed, runs in the server's task group (a
                # task group per connection costs a cancel scope and a host task): this
                # task waits for it below, and a cancellation of the server ends both.
                ws._spawn = self._conn_tg.start_soon
                if stream is tcp and isinstance(stream, anyio.abc.SocketStream):
                    ws._arm_check()  # read on demand
                else:
                    # Only a socket's read can be cancelled without losing anything: a
                    # TLS read may be writing TLS records of its own, and a memory
                    # stream may have handed over its item already. A reader task is
                    # never cancelled half-way like a handler's recv() under a timeout.
                    ws._start_reader()
                try:
                    if self._closing:
                        await ws._going_away()  # accepted while shutting down
                    else:
                        await self._run_handler(ws, session)
                    if not session.closed:
                        await ws._close_and_wait(0)
                    await ws._wait_reader()
                finally:
                    timers.cancel(ws)
            finally:
                self.connections.discard(ws)
        finally:
            if ws._fast is not None:
                # Connection -> protocol -> read event -> Connection: a cycle that
                # only the garbage collector would free, with all the connection
                # holds (its tasks' frames, buffers, the request), and collections
                # of every generation as often as connections end.
                ws._fast[1].read_event.ws = None

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
        if self._resolve_inline:
            decision = resolve_start(self.router, request)
            if resolve_pending(decision):
                decision = await resolve_rest(decision, request)
        else:
            decision = await self.router.resolve(request)
        # resolve() and resolve_rest() never return ServeHTTP, nor does
        # resolve_start() when resolve_pending() is false.
        events = conn.carry_out(decision)  # type: ignore[arg-type]
        return stream, tcp, request, decision, events

    async def _handshake_fast(
        self, stream: anyio.abc.ByteStream, conn: ServerConnection, fast: Any
    ) -> Any:
        """``_handshake()`` on anyio's asyncio stream, with ``open_timeout`` kept by
        a loop timer that aborts the transport, which ends the read, instead of a
        cancel scope per connection (a tenth of a handshake's cost); a scope
        guards only an asynchronous hook. Returns what ``_handshake()`` does, or
        _TIMED_OUT."""
        transport, _, loop = fast
        open_timeout = self.options.open_timeout
        if open_timeout is None:
            deadline = math.inf
            request = await _read_request_fast(fast, stream, conn, self.options)
        else:
            deadline = loop.time() + open_timeout
            timer = loop.call_at(deadline, transport.abort)
            try:
                request = await _read_request_fast(fast, stream, conn, self.options)
            finally:
                timer.cancel()
        if request is None:
            return _TIMED_OUT if loop.time() >= deadline else None
        if self._resolve_inline:
            decision = resolve_start(self.router, request)
            pending = resolve_pending(decision)
        else:
            pending = True
        if pending:
            with anyio.move_on_at(deadline) as scope:
                if self._resolve_inline:
                    decision = await resolve_rest(decision, request)
                else:
                    decision = await self.router.resolve(request)
            if scope.cancelled_caught:
                return _TIMED_OUT
        events = conn.carry_out(decision)  # type: ignore[arg-type]
        return stream, stream, request, decision, events

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


async def _read_request_fast(
    fast: tuple[Any, Any, Any],
    stream: anyio.abc.ByteStream,
    conn: ServerConnection,
    options: ServerOptions,
) -> Request | None:
    """``_read_request()`` on anyio's asyncio stream, reading its read queue as
    ``Connection._read_step()`` does: a request already received is parsed
    without an await."""
    transport, protocol, loop = fast
    queue = protocol.read_queue
    # Our read event from now on: waiting on it costs a future, not an Event's wait().
    read_event = protocol.read_event = _ReadEvent(None)
    read_event.flag = bool(queue) or protocol.is_at_eof
    while True:
        if queue:
            events = conn.receive_data(_take_queued(protocol))
        elif _fast_at_eof(transport, protocol):
            conn.receive_eof()
            return None
        else:
            transport.resume_reading()  # as anyio's receive() does
            waiter = read_event.waiter = loop.create_future()
            await waiter
            continue
        out = conn.data_to_send()
        if out:
            if transport.is_closing():
                return None
            transport.write(out)
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
