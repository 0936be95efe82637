"""The connection object handlers get on the anyio server, over any anyio byte stream.

It carries out what ``core.session.Session`` decides; it only moves bytes, keeps
time and wakes tasks. Reading is on demand: while a handler keeps calling
``recv()``, its own task reads (one task switch per message, no reader to start);
when it stays out of ``recv()`` for ``_READER_AFTER`` seconds, calls ``ping()``,
sends a keepalive ping, or a second task needs input, a reader task starts and reads
from then on, so pings are answered and a peer's close is seen whatever the handler
does. Streams whose reads cannot be cancelled without loss (TLS, memory streams)
get the reader task from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import anyio
import anyio.abc

from ...core import actions as kinds
from ...core.actions import Actions
from ...core.connection import State
from ...core.naming import peer_name
from ...core.options import READ_SIZE
from ...core.session import Session
from ...core.websocket import SessionAttributes
from .sockets import PlainStream

__all__ = ["Connection", "PongWaiter", "STREAM_ERRORS"]

# How long a handler may stay out of recv() before its connection gets a reader task:
# pings and a peer's close wait this long at most.
_READER_AFTER = 0.1
# The peer is gone or the stream was closed under us: all end the connection.
STREAM_ERRORS = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


class PongWaiter:
    """What ``ping()`` returns: ``await`` it (or its ``wait()``) for the latency."""

    __slots__ = ("_event", "latency", "error")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self.latency: float | None = None
        self.error: BaseException | None = None

    def set(self, latency: float) -> None:
        self.latency = latency
        self._event.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._event.set()

    def done(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> float:
        await self._event.wait()
        if self.error is not None:
            raise self.error
        assert self.latency is not None
        return self.latency

    def __await__(self) -> Generator[Any, None, float]:
        return self.wait().__await__()


class Connection(SessionAttributes):
    """One WebSocket connection: ``send``, ``recv``, ``async for``, ``close``,
    ``ping`` (an awaitable of the latency), ``pong``, ``wait_closed``; ``path``,
    ``request``, ``subprotocol``, ``remote_address``, ``local_address``,
    ``close_code``/``close_reason`` (None until closed), ``state``.

    ``send``, ``recv`` and ``ping`` may run in different tasks at once; ``recv`` in
    two tasks at once is an error.
    """

    __slots__ = (
        "_stream",
        "_eof_stream",
        "session",
        "local_address",
        "path",
        "_clock",
        "_spawn",
        "_schedule",
        "_timer",
        "_out",
        "_shared",
        "_flush_soon",
        "_writing",
        "_flushed",
        "_end_tcp",
        "_eof_sent",
        "_stream_closed",
        "_wake",
        "_resume",
        "_task_scope",
        "_resolving",
        "_reader_started",
        "_reader_done",
        "_inline",
        "_receiving",
        "_recv_count",
        "_recv_seen",
        "_check",
        "__weakref__",
    )

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        session: Session,
        *,
        clock: Callable[[], float],
        spawn: Callable[..., Any],
        schedule: Callable[[float, Callable[[float], None]], list[Any]],
        local_address: Any = None,
        eof_stream: anyio.abc.ByteStream | None = None,
    ) -> None:
        self._stream = stream
        self._eof_stream = eof_stream or stream  # under TLS: the TCP stream
        self.session = session
        self.local_address = local_address
        self.path: Any = None
        self._clock = clock
        self._spawn = spawn  # starts a task in the server's task group
        self._schedule = schedule  # the server's timers: (at, callback) -> entry
        self._timer: list[Any] | None = None
        self._out: list[bytes] = []
        self._shared = 0  # bytes of broadcasts in _out or being written
        self._flush_soon = False  # a _flush task is started and not yet running
        self._writing = False
        self._flushed: anyio.Event | None = None
        self._end_tcp: type | None = None  # CloseTCP, HalfCloseTCP or AbortTCP to do
        self._eof_sent = False
        self._stream_closed = False
        self._wake: anyio.Event | None = None  # a recv() or wait_closed() waits on it
        self._resume: anyio.Event | None = None  # the reader waits for reading to resume
        # Around the resolve, then around the handler: what the session may cancel.
        self._task_scope: anyio.CancelScope | None = None
        self._resolving = False
        self._reader_started = False
        self._reader_done: anyio.Event | None = None
        self._inline = False  # a task reads on demand right now
        self._receiving = False
        self._recv_count = 0
        self._recv_seen = -1
        self._check: list[Any] | None = None  # the timer entry of _check_reader
        self._arm(session.next_deadline())

    def __repr__(self) -> str:
        return (
            f"<Connection {str(self.path)!r} from {peer_name(self.remote_address)}"
            f" {self.session.state.name}>"
        )

    @property
    def stream(self) -> anyio.abc.ByteStream:
        """The anyio byte stream the connection runs on (a TLS stream under ``ssl=``)."""
        return self._stream

    # The handler's API

    async def recv(self) -> str | bytes:
        """The next message (``str`` or ``bytes``); ConnectionClosed once closed."""
        if self._receiving:
            raise RuntimeError("recv() is already waiting for a message in another task")
        self._receiving = True
        try:
            while True:
                message, actions = self.session.next_message(self._clock())
                if actions and self._act(actions):
                    await self._flush()
                if message is not None:
                    self._recv_count += 1
                    if self._check is None and not self._reader_started and self.path is not None:
                        self._check = self._schedule(self._clock() + _READER_AFTER, self._check_reader)
                    return message
                if not actions:
                    await self._wait_for_input()
        finally:
            self._receiving = False

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send one text (``str``) or binary (bytes-like) message."""
        self._out.append(self.session.conn.send(message))  # the driver's: no policy
        await self._flush()
        if self._end_tcp is kinds.AbortTCP:
            raise self.session.closed_error()

    async def ping(self, data: str | bytes | None = None) -> PongWaiter:
        """Send a ping; await the result for the latency once the pong arrives."""
        self._start_reader()  # the pong must be read, whether or not recv() runs
        payload = data.encode("utf-8") if isinstance(data, str) else data
        waiter = PongWaiter()
        payload = None if payload is None else bytes(payload)
        self._out.append(self.session.ping(payload, waiter, self._clock()))
        await self._flush()
        return waiter

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited pong."""
        self._out.append(self.session.pong(data.encode() if isinstance(data, str) else data))
        await self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``/``reason`` and wait (up to ``close_timeout``) for the
        closing handshake; does nothing more if the connection is already closing."""
        if self._act(self.session.close(code, reason, self._clock())):
            await self._flush()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (closing handshake done or TCP lost)."""
        while not self.session.closed:
            await self._wait_for_input()

    # What a Broadcast writes (websockets_routes.broadcast.members.FrameMember)

    def write_shared(self, message: str | bytes, frame: bytes) -> int | None:
        """Queue a broadcast message without waiting (``frame``: its uncompressed frame,
        built once for every member). The broadcast bytes not yet handed to the kernel,
        or None once the connection is not open."""
        if self.session.state is not State.OPEN or self._end_tcp is not None:
            return None
        data = self.session.conn.send_shared(message, frame)
        stream = self._stream
        if not self._out and not self._writing and isinstance(stream, PlainStream):
            try:
                sent = stream.send_now(data)
            except STREAM_ERRORS:
                self._lost()
                return None
            if sent == len(data):
                return 0
            data = data[sent:]
        self._out.append(data)
        self._shared += len(data)
        if not self._writing and not self._flush_soon:
            self._flush_soon = True
            self._spawn(self._flush)
        return self._shared

    def close_nowait(self, code: int, reason: str = "") -> None:
        """Start the closing handshake without waiting for it (a broadcast member past
        its backlog: the close frame goes after what is already queued)."""
        if self._act(self.session.close(code, reason, self._clock())):
            self._spawn(self._flush)

    # Carrying out the session's actions

    def _act(self, actions: Actions) -> bool:
        """Do what needs no await; True if ``_flush()`` has writing to do."""
        flush = False
        for action in actions:
            kind = type(action)
            if kind is kinds.WakeReceiver:
                self._set_wake()
            elif kind is kinds.Write:
                self._out.append(action.data)  # type: ignore[attr-defined]
                flush = True
            elif kind is kinds.ArmTimer:
                self._arm(action.at)  # type: ignore[attr-defined]
            elif kind is kinds.ResumeReading:
                if self._resume is not None:
                    self._resume.set()
                    self._resume = None
            elif kind is kinds.CompletePing:
                action.waiter.set(self._clock() - action.sent)  # type: ignore[attr-defined]
            elif kind is kinds.NotifyClosed:
                for waiter in action.ping_waiters:  # type: ignore[attr-defined]
                    waiter.fail(action.error)  # type: ignore[attr-defined]
                self._set_wake()
                if self._resume is not None:
                    self._resume.set()
            elif kind is kinds.CloseTCP or kind is kinds.HalfCloseTCP:
                self._end_tcp = kind
                flush = True
            elif kind is kinds.AbortTCP:
                self._end_tcp = kinds.AbortTCP
                self._out.clear()
                self._spawn(self._abort)
            elif kind is kinds.Resolve:
                self._resolving = True
            elif kind is kinds.StartHandler:
                self.path = action.path  # type: ignore[attr-defined]
            elif kind is kinds.CancelResolve or kind is kinds.CancelHandler:
                if self._task_scope is not None:
                    self._task_scope.cancel()
            # PauseReading: the reader looks at session.reading before each read.
        return flush

    async def _flush(self) -> None:
        """Write what is queued, in the order it was made, whichever task made it;
        then end TCP if the session said so. One writer at a time."""
        if self._writing:
            flushed = self._flushed
            if flushed is None:
                flushed = self._flushed = anyio.Event()
            await flushed.wait()
            return
        self._writing = True
        self._flush_soon = False
        try:
            out = self._out
            while out and self._end_tcp is not kinds.AbortTCP:
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                await self._stream.send(data)
                if self._shared:
                    self._shared = max(0, self._shared - len(data))
            if self._end_tcp is kinds.HalfCloseTCP and not self._eof_sent:
                self._eof_sent = True
                await self._eof_stream.send_eof()
            elif self._end_tcp is kinds.CloseTCP:
                await self._close_stream()
        except (*STREAM_ERRORS, NotImplementedError):
            self._lost()
        except BaseException:
            # Cancelled half-way through a frame: the connection cannot go on.
            self._lost()
            raise
        finally:
            self._writing = False
            if self._flushed is not None:
                self._flushed.set()
                self._flushed = None

    def _lost(self) -> None:
        self._end_tcp = kinds.AbortTCP
        self._out.clear()
        self._shared = 0
        self._act(self.session.receive_eof(self._clock()))
        self._spawn(self._abort)

    async def _abort(self) -> None:
        if not self._stream_closed:
            self._stream_closed = True
            if isinstance(self._stream, PlainStream):
                self._stream.abort()
            else:
                await anyio.aclose_forcefully(self._stream)

    async def _close_stream(self) -> None:
        if not self._stream_closed:
            self._stream_closed = True
            await self._stream.aclose()

    def _set_wake(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    # Time

    def _arm(self, at: float | None) -> None:
        if self._timer is not None:
            self._timer[0] = None
            self._timer = None
        if at is not None:
            self._timer = self._schedule(at, self._on_timer)

    def _on_timer(self, now: float) -> None:
        self._timer = None
        actions = self.session.on_timer(now)
        if self._act(actions):
            if self.path is not None:
                self._start_reader()  # a keepalive ping: its pong must be read
            self._spawn(self._flush)

    def _check_reader(self, now: float) -> None:
        """The handler has stayed out of recv() for a while: read in a task."""
        self._check = None
        if self._reader_started or self.session.ended:
            return
        if self._receiving:
            return  # recv() arms the next look when it returns
        if self._recv_count != self._recv_seen:
            self._recv_seen = self._recv_count
            self._check = self._schedule(now + _READER_AFTER, self._check_reader)
        else:
            self._start_reader()

    # Reading

    def watch_reading(self) -> None:
        """The handler starts: read on demand, with the reader task as a fallback."""
        self._check = self._schedule(self._clock() + _READER_AFTER, self._check_reader)

    def _start_reader(self) -> None:
        if not self._reader_started:
            self._reader_started = True
            self._reader_done = anyio.Event()
            self._spawn(self._read_task)

    async def _read_task(self) -> None:
        try:
            while self._inline:  # a task still reads on demand: its turn ends first
                await self._wait_event()
            await self.read_until_ended()
        finally:
            assert self._reader_done is not None
            self._reader_done.set()

    async def read_until_ended(self) -> None:
        """Read, carrying out what the session says, until TCP is over."""
        session = self.session
        while not session.ended:
            if not session.reading:
                resume = self._resume = anyio.Event()
                await resume.wait()
                continue
            await self.read_once()
        await self._flush()  # the last actions: close the stream
        await self._close_stream()

    async def read_once(self) -> None:
        """One read from the stream, and what the session makes of it."""
        try:
            data = await self._stream.receive(READ_SIZE)
        except STREAM_ERRORS:
            actions = self.session.receive_eof(self._clock())
        else:
            actions = self.session.receive_data(data, self._clock())
        if actions and self._act(actions):
            await self._flush()

    async def _wait_for_input(self) -> None:
        """Read in this task if nobody else does, else wait to be woken."""
        if self.session.ended:
            raise self.session.closed_error()
        if not self._reader_started and not self._inline:
            self._inline = True
            try:
                await self.read_once()
            except BaseException:
                # Cancelled (recv() under a timeout): input must not wait for a
                # recv() that may come too late again, so the reader task takes over.
                self._start_reader()
                raise
            finally:
                self._inline = False
                self._set_wake()
            return
        if not self._reader_started:
            self._start_reader()  # a second task needs input: read for both
        await self._wait_event()

    async def _wait_event(self) -> None:
        wake = self._wake
        if wake is None:
            wake = self._wake = anyio.Event()
        await wake.wait()

    def closed_stream(self, stream: anyio.abc.ByteStream) -> bool:
        """Whether ``stream`` (the one the connection was made on) is closed."""
        return self._stream_closed and self._eof_stream is stream

    async def finish(self) -> None:
        """After the handler (or a Close decision): wait until TCP is over."""
        if self._reader_started:
            assert self._reader_done is not None
            await self._reader_done.wait()
        else:
            self._reader_started = True
            await self.read_until_ended()
        # The timer heap lets go of this connection now, not at its deadlines.
        for entry in (self._timer, self._check):
            if entry is not None:
                entry[0] = None
