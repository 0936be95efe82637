"""What a server does with an open connection, sans I/O: shared by every transport.

``core.connection.ServerConnection`` turns bytes into events. A transport still has
to decide what each event means for the handler: queue messages for ``recv()`` and
stop reading when ``max_queue`` of them wait, answer ``ping()`` waiters when their
pong arrives, send keepalive pings and give up on a silent peer, close with 1000
when the handler returns and with 1011 (and a log line naming the route and the
peer) when it raises, close with 1001 when the server shuts down. ``Session`` holds
that logic once, so the asyncio transport, the anyio transport and the TestClient
differ only in how they move bytes, wait and keep time.

Like the driver it does no I/O, knows no clock (times are passed in as ``now``,
from whatever monotonic clock the transport uses) and imports nothing asynchronous.

A transport:

1. builds ``options = ServerOptions(**kwargs)`` once per server (unknown or invalid
   options raise ``TypeError``/``ValueError`` at ``serve()``), then per connection
   ``conn = options.connection(peer)``; after ``conn.carry_out(decision)`` opened
   it, ``session = Session(conn, options, now)``.
2. calls the session for everything that changes the connection; each call
   returns flags, and the bytes to write are in ``session.data_to_send()``, to be
   written at once, before anything else. The flags: ``MESSAGES`` (wake a waiting
   ``recv()``), ``PAUSE`` (stop reading), ``PONGS`` (complete the waiters from
   ``take_acked()``), ``CLOSED`` (wake everyone, fail the waiters from
   ``take_pings()``, end TCP), ``FAILING`` (bad bytes came after messages the
   handler has not answered yet: stop reading; ``fail_pending()`` once it has, i.e.
   ``recv()`` finds the queue empty or the handler ended, or after close_timeout),
   ``KEEPALIVE`` (a pong moved ``keepalive_deadline()``: re-arm the timer).
   Network input: ``receive_data(data)``, ``receive_eof()``, ``dispatch(events)``
   for the events ``carry_out()`` returned.
3. ``recv()``: ``session.messages`` non-empty -> ``session.take()`` gives the message
   and whether to resume reading; else if ``session.answered()`` (the handler has
   answered all it took, and bad input waits), carry out ``fail_pending()`` and raise; else if ``not session.can_recv()`` raise
   ``session.closed_error()``; else wait for ``MESSAGES``/``CLOSED``.
4. ``send``/``ping``: write what ``conn.send(...)``/``session.ping(...)`` return, in
   the order they return it. Closing: ``close(code, reason)``, ``shutdown()`` (the
   server closes: 1001), ``handler_returned()`` (1000), ``handler_failed(exc)``
   (1011 and a log line), ``keepalive(now)`` (a ping, or 1011 for a silent peer).
5. keepalive: sleep until ``session.keepalive_deadline()`` (None: no timer), then
   ``keepalive(now)``, write, and sleep again until the new deadline.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

from .connection import (
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_SIZE,
    ServerConnection,
    State,
)
from .errors import ConnectionClosed
from .events import Closed, Event, Message, Pong
from .paths import without_query

__all__ = [
    "CLOSED",
    "FAILING",
    "KEEPALIVE",
    "MESSAGES",
    "PAUSE",
    "PONGS",
    "ServerOptions",
    "Session",
    "handler_error_is_close",
    "logger",
    "peer_name",
    "route_name",
]

logger = logging.getLogger("websockets_routes.server")

# Flags returned by Session.receive_data/receive_eof/dispatch: what the transport
# must act on after writing conn.data_to_send().
MESSAGES = 1  # messages were queued: wake a recv() waiting for one
PONGS = 2  # ping() waiters were answered: complete those in take_acked()
CLOSED = 4  # the connection is CLOSED: wake everyone, end TCP
PAUSE = 8  # max_queue messages wait: stop reading until take() says resume
FAILING = 16  # bad input waits behind good messages: stop reading, see fail_pending()
KEEPALIVE = 32  # a pong came: keepalive_deadline() moved (earlier): re-arm the timer

_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED

# A marker for the keepalive ping in the table of pings waiting for their pong.
_KEEPALIVE = object()
# Shared by every session until its first message: an idle connection allocates none.
_NO_MESSAGES: deque[Any] = deque(maxlen=0)
_NO_PINGS: dict[bytes, Any] = {}


def _positive_or_none(name: str, value: Any, *, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, kind) or value < 0:
        what = "an int" if integer else "a number"
        raise ValueError(f"{name} must be {what} >= 0 or None, not {value!r}")


@dataclass(frozen=True)
class ServerOptions:
    """The options every server transport takes, with their defaults, checked once.

    - ``max_size``: largest incoming message, in bytes after decompression (1 MiB;
      None: no limit). Over it the connection closes with 1009.
    - ``max_queue``: received messages buffered for ``recv()`` before reading stops
      (16; None: no limit). Reading resumes when the queue drains to a quarter.
    - ``open_timeout``: seconds for the opening handshake, TLS included (10).
    - ``ping_interval``: seconds between keepalive pings (20; None: no pings).
    - ``ping_timeout``: seconds to wait for a keepalive pong before closing with
      1011 (20; None: wait forever).
    - ``close_timeout``: seconds to wait for the peer during the closing handshake
      and then for the end of TCP, before aborting (10; None: wait forever).
    - ``max_header_bytes``: largest request head; over it the answer is 431 (16 KiB).
    - ``compression``: ``"deflate"`` (permessage-deflate when the client offers it,
      the default) or None.
    - ``ssl``: an ``ssl.SSLContext`` to serve TLS, or None.
    """

    max_size: int | None = DEFAULT_MAX_SIZE
    max_queue: int | None = 16
    open_timeout: float | None = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float | None = 10.0
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    compression: str | None = "deflate"
    ssl: Any = None

    def __post_init__(self) -> None:
        _positive_or_none("max_size", self.max_size, integer=True)
        _positive_or_none("max_queue", self.max_queue, integer=True)
        if self.max_queue == 0:
            raise ValueError("max_queue must be at least 1, or None for no limit")
        for name in ("open_timeout", "ping_interval", "ping_timeout", "close_timeout"):
            _positive_or_none(name, getattr(self, name))
        if self.ping_interval == 0:
            raise ValueError("ping_interval must be > 0, or None for no keepalive pings")
        if (
            isinstance(self.max_header_bytes, bool)
            or not isinstance(self.max_header_bytes, int)
            or self.max_header_bytes < 256
        ):
            raise ValueError(
                f"max_header_bytes must be an int >= 256, not {self.max_header_bytes!r}"
            )
        if self.compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {self.compression!r}")
        if self.ssl is not None and not hasattr(self.ssl, "wrap_bio"):
            raise TypeError(f"ssl must be an ssl.SSLContext or None, not {type(self.ssl).__name__}")

    def connection(self, remote_address: Any = None) -> ServerConnection:
        """A new sans-IO connection for one accepted TCP (or in-memory) stream."""
        return ServerConnection(
            max_size=self.max_size,
            max_header_bytes=self.max_header_bytes,
            compression=self.compression,
            remote_address=remote_address,
            # Session carries out a failure once the messages before it are answered.
            defer_failure=True,
        )


# accept() failures that pass with time (out of descriptors, buffers or memory): a
# server waits a little and accepts again, as trio does, instead of stopping.
ACCEPT_RETRY_ERRNOS = frozenset([errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])


def peer_name(address: Any) -> str:
    """``host:port`` (``[v6]:port``) of a peer address, for log lines."""
    if not address:
        return "an unknown peer"
    if isinstance(address, (tuple, list)) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def route_name(path: Any) -> str:
    """The route a connection took, for log lines: its name, else its template."""
    name = getattr(path, "name", None) or getattr(path, "template", None)
    if name:
        return str(name)
    return without_query(path) if path is not None else "?"


def handler_error_is_close(exc: BaseException) -> bool:
    """True if ``exc`` only says the connection closed (alone or in a group).

    A handler that lets ``ConnectionClosed`` out did nothing wrong: the peer left.
    """
    if isinstance(exc, ConnectionClosed):
        return True
    inner = getattr(exc, "exceptions", None)  # an exception group
    return (
        isinstance(inner, tuple) and bool(inner) and all(handler_error_is_close(e) for e in inner)
    )


class Session:
    """One open connection's message queue, pings, keepalive and close policy."""

    __slots__ = (
        "conn",
        "path",
        "messages",
        "max_queue",
        "low_water",
        "paused",
        "closed",
        "pings",
        "acked",
        "ping_interval",
        "ping_timeout",
        "_out",
        "_next_ping",
        "_keepalive_sent",
        "_keepalive_payload",
        "_counter",
    )

    def __init__(self, conn: ServerConnection, options: ServerOptions, now: float = 0.0) -> None:
        self.conn = conn
        self.path = conn.path
        self.messages: deque[str | bytes] = _NO_MESSAGES
        max_queue = options.max_queue
        self.max_queue = max_queue if max_queue is not None else 0
        # Hysteresis: resume reading at a quarter full, not after every message.
        self.low_water = self.max_queue // 4
        self.paused = False
        self.closed = conn.state is _CLOSED
        # ping payload -> (waiter, time sent), oldest first (dicts keep order)
        self.pings: dict[bytes, tuple[Any, float]] = _NO_PINGS
        self.acked: list[tuple[Any, float]] | None = None
        self.ping_interval = options.ping_interval
        self.ping_timeout = options.ping_timeout
        self._out: list[bytes] | None = None
        self._next_ping: float | None = (
            now + self.ping_interval if self.ping_interval is not None else None
        )
        self._keepalive_sent: float | None = None
        self._keepalive_payload: bytes | None = None
        self._counter = 0

    def __repr__(self) -> str:
        return (
            f"<Session {route_name(self.path)} from {peer_name(self.conn.remote_address)}"
            f" {self.conn.state.name}, {len(self.messages)} queued>"
        )

    def data_to_send(self) -> bytes:
        """What the last call queued (the driver's output included): write it now.

        ``receive_data()``, ``receive_eof()`` and ``dispatch()`` queue only in the
        driver: after them ``conn.data_to_send()`` is the same, one call shorter.
        """
        out = self.conn.data_to_send()
        if self._out is not None:
            out = b"".join([out, *self._out])
            self._out = None
        return out

    # Input

    def receive_data(self, data: bytes) -> int:
        """Feed bytes read from the network; return the flags to act on."""
        conn = self.conn
        if conn.state is _CLOSING:
            return self.dispatch(conn.receive_data(data), closing=True)
        events = conn.receive_data(data)
        if len(events) != 1 or type(events[0]) is not Message:
            return self.dispatch(events)
        # The hot path, one message, inline.
        messages = self.messages
        if messages is _NO_MESSAGES:
            messages = self.messages = deque()
        messages.append(events[0][0])
        conn.unanswered = True
        flags = MESSAGES
        if self.max_queue and not self.paused and len(messages) >= self.max_queue:
            self.paused = True
            flags |= PAUSE
        if conn.failure_pending is not None:  # bad bytes after this message
            flags |= FAILING
        return flags

    def receive_eof(self) -> int:
        """The peer closed TCP, or the transport aborted it (a timeout)."""
        return self.dispatch(self.conn.receive_eof())

    def dispatch(self, events: list[Event], closing: bool = False) -> int:
        """Apply the driver's events (e.g. those ``carry_out()`` returned).

        ``closing``: the events came after our close frame went out; their messages
        are dropped, as nobody reads any more (``recv()`` raises once we closed).
        """
        flags = 0
        for event in events:
            kind = type(event)
            if kind is Message:
                if closing:
                    continue
                messages = self.messages
                if messages is _NO_MESSAGES:
                    messages = self.messages = deque()
                messages.append(cast(Message, event).data)
                self.conn.unanswered = True
                flags |= MESSAGES
            elif kind is Pong:
                flags |= self._ack(cast(Pong, event).payload)
            elif kind is Closed:
                self.closed = True
                flags |= CLOSED
            # Ping: the driver already queued the pong. RequestReceived cannot come
            # once the connection is open.
        if (
            flags & MESSAGES
            and self.max_queue
            and not self.paused
            and len(self.messages) >= self.max_queue
        ):
            self.paused = True
            flags |= PAUSE
        if self.conn.failure_pending is not None:
            flags |= FAILING
        return flags

    def take(self) -> tuple[str | bytes, bool]:
        """The oldest queued message, and whether reading should resume now."""
        message = self.messages.popleft()
        if self.paused and len(self.messages) <= self.low_water:
            self.paused = False
            return message, True
        return message, False

    def untake(self, message: str | bytes) -> None:
        """Put back a message ``take()`` gave (its reader was cancelled)."""
        if self.messages is _NO_MESSAGES:
            self.messages = deque()
        self.messages.appendleft(message)

    def answered(self) -> bool:
        """``recv()`` found the queue empty: the handler has answered every message
        it took, so bad input that comes next fails the connection at once. True if
        bad input already waits: carry out ``fail_pending()`` now."""
        conn = self.conn
        conn.unanswered = False
        return conn.failure_pending is not None

    def failure_pending(self) -> bool:
        """True while bad input waits for the handler to read the messages before it."""
        return self.conn.failure_pending is not None

    def fail_pending(self) -> int:
        """Fail the connection as the bad input requires (1002/1007/1009): the close
        frame is in ``data_to_send()``."""
        return self.dispatch(self.conn.fail_pending())

    def can_recv(self) -> bool:
        """False once ``recv()`` should raise ``closed_error()`` (queue drained and
        the connection closed, or closing because we sent a close frame)."""
        return bool(self.messages) or not (self.closed or self.conn.state is _CLOSING)

    def closed_error(self) -> ConnectionClosed:
        """What send/recv/ping raise once the connection is over (or closing)."""
        conn = self.conn
        if conn.state is _CLOSED:
            return ConnectionClosed.for_code(conn.close_code or 1006, conn.close_reason)
        if conn.close_sent is not None:
            return ConnectionClosed.for_code(*conn.close_sent)
        return ConnectionClosed.for_code(1006, "")

    # Pings

    def ping(self, payload: bytes | None, waiter: Any, now: float) -> bytes:
        """The ping frame to write; ``waiter`` shows up in ``take_acked()`` with its
        send time when the pong arrives, or in ``take_pings()`` if the connection
        closes first. Without a payload, a unique 4-byte one is chosen."""
        pings = self.pings
        if payload is None:
            if not self._counter:
                self._counter = int.from_bytes(os.urandom(4), "big") | 1
            while True:
                self._counter = (self._counter + 1) & 0xFFFFFFFF
                payload = self._counter.to_bytes(4, "big")
                if payload not in pings:
                    break
        elif payload in pings:
            raise RuntimeError("already waiting for a pong with the same data")
        frame = self.conn.send_ping(payload)  # raises ConnectionClosed unless OPEN
        if pings is _NO_PINGS:
            pings = self.pings = {}
        pings[payload] = (waiter, now)
        return frame

    def _ack(self, payload: bytes) -> int:
        flags = 0
        if self._keepalive_sent is not None:
            # Any pong proves the peer alive (RFC 6455 5.5.3: an unsolicited pong is
            # a heartbeat), not only the answer to our last keepalive ping.
            self._keepalive_sent = None
            flags = KEEPALIVE
        pings = self.pings
        if payload not in pings:
            return flags
        # RFC 6455 5.5.3: a peer may answer only the latest of several pings, so a
        # pong acknowledges its ping and every earlier one.
        for key in list(pings):
            waiter, sent = pings.pop(key)
            if waiter is not _KEEPALIVE:
                if self.acked is None:
                    self.acked = []
                self.acked.append((waiter, sent))
                flags |= PONGS
            if key == payload:
                break
        return flags

    def take_acked(self) -> list[tuple[Any, float]]:
        """``(waiter, time sent)`` of the pings answered since the last call."""
        acked = self.acked
        self.acked = None
        return acked or []

    def take_pings(self) -> list[Any]:
        """The waiters of pings still unanswered (to fail when the connection closed)."""
        pings = self.pings
        if not pings:
            return []
        waiters = [w for w, _ in pings.values() if w is not _KEEPALIVE]
        self.pings = _NO_PINGS
        return waiters

    # Keepalive

    def keepalive_deadline(self) -> float | None:
        """When the transport should call ``keepalive()`` next; None: never."""
        if self.conn.state is not _OPEN:
            return None
        sent = self._keepalive_sent
        if sent is not None:
            assert self.ping_timeout is not None
            return sent + self.ping_timeout  # a pong moves it back to the next ping
        return self._next_ping

    def keepalive(self, now: float) -> int:
        """Time passed: queue a ping, or a 1011 close for a silent peer, or nothing."""
        if self.conn.state is not _OPEN or self.ping_interval is None:
            return 0
        sent = self._keepalive_sent
        if sent is not None:
            if self.ping_timeout is not None and now >= sent + self.ping_timeout:
                self._keepalive_sent = None
                logger.info(
                    "route %r: %s did not answer a keepalive ping within %ss",
                    route_name(self.path),
                    peer_name(self.conn.remote_address),
                    self.ping_timeout,
                )
                return self.close(1011, "keepalive ping timeout")
            return 0
        next_ping = self._next_ping
        if next_ping is None or now < next_ping:
            return 0
        if self._keepalive_payload is not None:
            # An earlier keepalive ping that a heartbeat pong made moot: forget it.
            self.pings.pop(self._keepalive_payload, None)
        self._queue(self.ping(None, _KEEPALIVE, now))
        self._keepalive_payload = next(reversed(self.pings))
        if self.ping_timeout is not None:
            self._keepalive_sent = now
        self._next_ping = now + self.ping_interval
        return 0

    def _queue(self, frame: bytes) -> None:
        if self._out is None:
            self._out = [frame]
        else:
            self._out.append(frame)

    def keepalive_waiting(self) -> bool:
        """True while a keepalive ping waits for its pong."""
        return self._keepalive_sent is not None

    # Closing policy

    def close(self, code: int = 1000, reason: str = "") -> int:
        """Start the closing handshake (the close frame goes to ``data_to_send()``;
        nothing unless OPEN). Raises ValueError for a code or reason one may not send.

        Bad input waiting for the handler (``failure_pending()``) is failed instead:
        its code, not this one, is the one to send. Reading resumes if ``max_queue``
        had paused it (check ``paused``): the peer's close frame must get through,
        and its messages from now on are dropped.
        """
        conn = self.conn
        if conn.failure_pending is not None:
            return self.fail_pending()
        frame = conn.close(code, reason)
        if frame:
            self._queue(frame)
            self.paused = False
        return 0

    def handler_returned(self) -> int:
        """The handler returned: close with 1000 (nothing if already closing)."""
        return self.close(1000)

    def handler_failed(self, exc: BaseException) -> int:
        """The handler raised ``exc``: log it with route and peer, close with 1011.

        ``ConnectionClosed`` (alone or in an exception group) is not a failure: the
        peer left; it is logged at debug level and the connection closes with 1000.
        """
        path = self.path
        peer = peer_name(self.conn.remote_address)
        if handler_error_is_close(exc):
            logger.debug("route %r for %s: %s", route_name(path), peer, exc)
            return self.handler_returned()
        logger.error(
            "handler of route %r failed for %s from %s",
            route_name(path),
            without_query(path) if path is not None else "?",
            peer,
            exc_info=exc,
        )
        return self.close(1011)

    def shutdown(self) -> int:
        """The server is shutting down: close with 1001 (going away)."""
        return self.close(1001)
