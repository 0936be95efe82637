"""A connection's life once it is read from, sans I/O: the part of ``core.session``
that holds the connection's state and applies the rules every transport shares.

``Lifecycle`` keeps the deadlines (open, keepalive, close, failure, a handler's
shutdown grace, a drain's moment), where TCP is and how it ends, why reading is
paused, the messages queued for ``recv()``, and turns the driver's events
(``core.connection``) into actions (``core.actions``). ``core.session.Session`` adds
what a server does at the edges of that life: resolving and answering the opening
handshake, a handler's end, a shutdown. Transports use ``Session``; this class is
not meant to be used on its own.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, cast

from . import access, observe
from .actions import (
    ABORT_TCP,
    CANCEL_HANDLER,
    CANCEL_RESOLVE,
    CLOSE_TCP,
    HALF_CLOSE_TCP,
    NO_ACTIONS,
    PAUSE_READING,
    RESUME_READING,
    WAKE_ONLY,
    WAKE_RECEIVER,
    Action,
    Actions,
    ArmTimer,
    CompletePing,
    NotifyClosed,
    Resolve,
    Write,
)
from .connection import State
from .errors import ConnectionClosed
from .events import Closed, Event, Message, Pong, RequestReceived
from .limits import ConnectionLimit
from .naming import peer_name, route_name
from .options import ServerOptions
from .pings import Pings

__all__ = ["Lifecycle"]

logger = logging.getLogger("websockets_routes.server")

_REQUEST = State.REQUEST
_DECIDING = State.DECIDING
_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED

# Shared by every session until its first message: an idle connection allocates none.
_NO_MESSAGES: deque[Any] = deque(maxlen=0)
_WAKE = WAKE_ONLY
_WAKE_AND_PAUSE: Actions = (WAKE_RECEIVER, PAUSE_READING)
_RESUME: Actions = (RESUME_READING,)
_PAUSE: Actions = (PAUSE_READING,)
# Where TCP is: open, half-closed by us (reading to the peer's EOF), over.
_TCP_OPEN, _TCP_HALF_CLOSED, _TCP_ENDED = 0, 1, 2
# Why reading is paused: one bit each; reading runs when none is set.
_QUEUE_FULL, _DECIDING_PAUSE, _FAILING, _REPLIES_BLOCKED = 1, 2, 4, 8
# When close_timeout is None, bad input held behind messages still fails after this.
_FAILURE_GRACE = 10.0


class Lifecycle:
    """One connection from accept to the end of TCP: the state and the shared rules
    (see ``core.session.Session`` for the whole life, as calls)."""

    __slots__ = (
        "conn",
        "options",
        "request",
        "path",
        "messages",
        "closed",
        "tcp",
        "_max_queue",
        "_low_water",
        "_paused",
        "_pings",
        "_armed",
        "_open_deadline",
        "_close_deadline",
        "_fail_deadline",
        "_going_away",
        "_drain_at",
        "_drain_code",
        "_decision",
        "_linger",
        "_handler_running",
        "_grace_deadline",
        "messages_in",
        "_opened",
        "_limit",
        "_router",
        "_observer",
        "_requested",
    )

    def __init__(
        self,
        options: ServerOptions,
        remote_address: Any = None,
        now: float = 0.0,
        *,
        linger: bool = False,
        router: Any = None,
    ) -> None:
        self.conn = options.connection(remote_address)
        self.options = options
        self.request: Any = None
        self.path: Any = None
        self.messages: deque[str | bytes] = _NO_MESSAGES
        self.closed = False  # the WebSocket connection (or the HTTP exchange) is over
        self.tcp = _TCP_OPEN
        max_queue = options.max_queue
        self._max_queue = max_queue if max_queue is not None else 0
        # Hysteresis: resume reading at a quarter full, not after every message.
        self._low_water = self._max_queue // 4
        self._paused = 0  # the reasons reading is paused, as bits
        self._pings = Pings(options.ping_interval, options.ping_timeout)
        timeout = options.open_timeout
        self._open_deadline: float | None = None if timeout is None else now + timeout
        self._close_deadline: float | None = None
        self._fail_deadline: float | None = None
        self._going_away = 0  # the code to close with once decided, at shutdown
        # A drain: when the server's shutdown reaches this connection, and its code.
        self._drain_at: float | None = None
        self._drain_code = 1012
        self._decision: Any = None
        # The transport's close() may discard what it has not sent yet: end TCP by
        # half-closing, then close at the peer's EOF, always.
        self._linger = linger
        self._handler_running = False
        # At shutdown: when a handler (or a hook) still running is given up on.
        self._grace_deadline: float | None = None
        self.messages_in = 0
        self._opened: float | None = None  # when the 101 went out, if the access log is on
        self._limit: ConnectionLimit | None = None  # the limit a place was taken from
        # The router that answers: given here by a server that has one, else by
        # resolve_now() / resolve(). Its observer hears of requests refused before them.
        self._router: Any = router
        self._observer: Any = None  # the router's observer, once the connection opened
        self._requested = now  # when the request head was complete
        # The deadline the transport's timer is armed for: the caller arms it now.
        self._armed: float | None = self._open_deadline

    def __repr__(self) -> str:
        return (
            f"<Session {route_name(self.path)} from {peer_name(self.conn.remote_address)}"
            f" {self.conn.state.name}, {len(self.messages)} queued>"
        )

    # What the transport reads

    @property
    def state(self) -> State:
        return self.conn.state

    @property
    def remote_address(self) -> Any:
        return self.conn.remote_address

    @property
    def subprotocol(self) -> str | None:
        return self.conn.subprotocol

    @property
    def close_code(self) -> int | None:
        """The close code (received, else sent, else 1006) once closed; None before."""
        return self.conn.close_code

    @property
    def close_reason(self) -> str | None:
        return self.conn.close_reason if self.conn.close_code is not None else None

    @property
    def messages_out(self) -> int:
        return self.conn.messages_out

    @property
    def reading(self) -> bool:
        """Whether the transport should read now (for transports that pull bytes)."""
        return not self._paused

    @property
    def ended(self) -> bool:
        """TCP is over: nothing more to read, write or wait for."""
        return self.tcp == _TCP_ENDED

    def next_deadline(self) -> float | None:
        """When ``on_timer()`` is due next; None: no timer needed."""
        best = self._open_deadline
        keepalive = self._pings.deadline() if self.conn.state is _OPEN else None
        for deadline in (
            self._close_deadline,
            self._fail_deadline,
            keepalive,
            self._grace_deadline,
            self._drain_at,
        ):
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    def closed_error(self) -> ConnectionClosed:
        """What send/recv/ping raise once the connection is over (or closing)."""
        conn = self.conn
        if conn.state is _CLOSED:
            return ConnectionClosed.for_code(conn.close_code or 1006, conn.close_reason)
        if conn.close_sent is not None:
            return ConnectionClosed.for_code(*conn.close_sent)
        return ConnectionClosed.for_code(1006, "")

    # Network input

    def receive_data(self, data: bytes | memoryview, now: float) -> Actions:
        """Bytes read from the peer (a view of a buffer reused after the call is fine)."""
        conn = self.conn
        state = conn.state
        if state is _OPEN:
            events = conn.receive_data(data)
            if (
                len(events) == 1
                and type(events[0]) is Message
                and conn.failure_pending is None
                and not self._pings.waiting  # no pong possible: the hot path, one message
            ):
                messages = self.messages
                if messages is _NO_MESSAGES:
                    messages = self.messages = deque()
                messages.append(events[0][0])
                self.messages_in += 1
                conn.unanswered = True
                if self._max_queue and len(messages) >= self._max_queue:
                    return self._pause_with_wake(_QUEUE_FULL)
                return _WAKE
            return self._dispatch(events, now)
        if state is _CLOSING:
            return self._dispatch(conn.receive_data(data), now, closing=True)
        if state is _REQUEST:
            return self._dispatch(conn.receive_data(data), now)
        if state is _DECIDING:
            conn.receive_data(data)  # kept until the decision is carried out
            return self._pause(_DECIDING_PAUSE) if data else NO_ACTIONS
        return NO_ACTIONS  # closed: read only to find the peer's EOF

    def receive_eof(self, now: float) -> Actions:
        """The peer ended TCP, or reading failed (a reset, a broken stream)."""
        if self.tcp == _TCP_ENDED:
            return NO_ACTIONS
        actions: list[Action] = []
        if self.conn.state is not _CLOSED:
            self.conn.receive_eof()
            self._closed_by(actions, now, gone=True)
        self._end_tcp(actions)
        return tuple(actions)

    def on_timer(self, now: float) -> Actions:
        """The timer armed by ``ArmTimer`` fired (maybe early: then nothing is due)."""
        actions: list[Action] = []
        self._armed = None
        conn = self.conn
        if self._open_deadline is not None and now >= self._open_deadline:
            self._open_deadline = None
            if conn.state is _REQUEST or conn.state is _DECIDING:
                logger.info(
                    "opening handshake from %s not done within %ss",
                    peer_name(conn.remote_address),
                    self.options.open_timeout,
                )
                observe.timed_out(self)
                return self._drop(actions, now)
        if self._drain_at is not None and now >= self._drain_at:
            self._drain_at = None  # the server's drain reached this connection
            self._shut_down(self._drain_code, now, actions)
        if self._grace_deadline is not None and now >= self._grace_deadline:
            # Shutting down, and the handler (or the hook deciding) outlived its grace.
            self._grace_deadline = None
            if conn.state is _DECIDING:
                return self._drop(actions, now)
            if self._handler_running:
                actions.append(CANCEL_HANDLER)
        if self._close_deadline is not None and now >= self._close_deadline:
            # The peer did not finish the closing handshake, or did not end TCP.
            self._close_deadline = None
            return self._drop(actions, now)
        if self._fail_deadline is not None and now >= self._fail_deadline:
            # The handler did not read the messages ahead of the bad input in time.
            self._fail_deadline = None
            self._dispatch(conn.fail_pending(), now, into=actions)
        self._keepalive(now, actions)
        self._rearm(actions)
        return tuple(actions)

    # The handler's side

    def next_message(self, now: float) -> tuple[str | bytes | None, Actions]:
        """What ``recv()`` gets: the next message, or None to wait for
        ``WakeReceiver`` (after carrying out the actions); raises
        ``ConnectionClosed`` once no message will come."""
        messages = self.messages
        if messages:
            message = messages.popleft()
            if self._paused & _QUEUE_FULL and len(messages) <= self._low_water:
                return message, self._resume(_QUEUE_FULL)
            return message, NO_ACTIONS
        conn = self.conn
        conn.unanswered = False
        if self.closed:
            raise self.closed_error()
        if conn.failure_pending is not None:
            # The handler has read everything before the bad input: fail now.
            actions: list[Action] = []
            self._fail_deadline = None
            self._dispatch(conn.fail_pending(), now, into=actions)
            return None, tuple(actions)
        if conn.state is _CLOSING:
            raise self.closed_error()
        return None, NO_ACTIONS

    def untake(self, message: str | bytes) -> None:
        """Put back a message ``next_message()`` gave (its ``recv()`` was cancelled)."""
        if self.messages is _NO_MESSAGES:
            self.messages = deque()
        self.messages.appendleft(message)

    def send(self, message: str | bytes | bytearray | memoryview) -> bytes:
        """The frame of a text (``str``) or binary message; ConnectionClosed unless open.

        Sending has no policy to add: this is the driver's ``conn.send()``, which a
        transport may call directly."""
        return self.conn.send(message)

    def pong(self, payload: bytes = b"") -> bytes:
        """An unsolicited pong frame."""
        return self.conn.send_pong(payload)

    def ping(self, payload: bytes | None, waiter: Any, now: float) -> bytes:
        """The ping frame to write; ``waiter`` comes back in ``CompletePing`` when its
        pong arrives, or in ``NotifyClosed.ping_waiters``. Without a payload, a unique
        4-byte one is chosen."""
        payload = self._pings.payload(payload)
        frame = self.conn.send_ping(payload)  # raises ConnectionClosed unless OPEN
        self._pings.sent(payload, waiter, now)
        return frame

    def close(self, code: int = 1000, reason: str = "", now: float = 0.0) -> Actions:
        """Start the closing handshake (nothing unless open). ValueError for a code or
        reason one may not send. Bad input held for the handler is failed instead:
        its code (1002/1007/1009), not this one, is the one to send."""
        actions: list[Action] = []
        self._close(code, reason, now, actions)
        return tuple(actions)

    def _shut_down(self, code: int, now: float, actions: list[Action]) -> None:
        state = self.conn.state
        if state is _REQUEST:
            self._drop(actions, now)
            return
        if state is _DECIDING:
            self._going_away = code
        else:
            self._close(code, "", now, actions)
        timeout = self.options.close_timeout
        if timeout is not None and (state is _DECIDING or self._handler_running):
            if self._grace_deadline is None:
                self._grace_deadline = now + timeout
                self._rearm(actions)

    def replies_blocked(self) -> Actions:
        """The transport's write buffer is full after writing what reading produced
        (pongs, a close echo): stop reading until ``writes_resumed()``, so that a
        peer that sends pings and reads nothing costs bounded memory."""
        if self.tcp != _TCP_OPEN or self.conn.state is _CLOSED:
            return NO_ACTIONS
        return self._pause(_REPLIES_BLOCKED)

    def writes_resumed(self) -> Actions:
        """The transport's write buffer drained."""
        return self._resume(_REPLIES_BLOCKED)

    # Internals

    def _dispatch(
        self,
        events: list[Event],
        now: float,
        closing: bool = False,
        into: list[Action] | None = None,
    ) -> Actions:
        """Apply the driver's events; ``closing``: our close frame went out, so
        messages are dropped (``recv()`` raises once we closed)."""
        actions: list[Action] = [] if into is None else into
        conn = self.conn
        out = conn.data_to_send()
        if out:
            actions.append(Write(out))
        queued = False
        for event in events:
            kind = type(event)
            if kind is Message:
                self.messages_in += 1
                if closing:
                    continue
                if self.messages is _NO_MESSAGES:
                    self.messages = deque()
                self.messages.append(cast(Message, event).data)
                conn.unanswered = True
                queued = True
            elif kind is Pong:
                self._ack(cast(Pong, event).payload, actions)
            elif kind is RequestReceived:
                self.request = cast(RequestReceived, event).request
                self._requested = now
                actions.append(Resolve(self.request))
            elif kind is Closed:
                self._closed_by(actions, now)
            # Ping: the driver already queued the pong.
        if queued:
            actions.append(WAKE_RECEIVER)
            if self._max_queue and len(self.messages) >= self._max_queue:
                self._pause(_QUEUE_FULL, actions)
        if conn.failure_pending is not None and self._fail_deadline is None and not self.closed:
            # Bad input behind messages the handler has not answered: read no more;
            # fail once it has read them (next_message) or at close_timeout.
            timeout = self.options.close_timeout
            self._fail_deadline = now + (_FAILURE_GRACE if timeout is None else timeout)
            self._pause(_FAILING, actions)
            self._rearm(actions)
        return tuple(actions) if into is None else NO_ACTIONS

    def _closed_by(
        self, actions: list[Action], now: float, gone: bool = False, aborting: bool = False
    ) -> None:
        """The driver reached CLOSED: notify everyone, then end TCP (the server closes
        first). ``gone``: the peer's TCP is over already; ``aborting``: the caller
        drops TCP (a timeout)."""
        if self.closed:
            return
        self.closed = True
        limit, self._limit = self._limit, None
        if limit is not None:
            limit.release()
        if self._opened is not None:
            access.log_closed(self, self._opened, now)
        elif self.request is None and self.conn.status is not None:
            access.log_answer(self, now)  # a request that could not be read: 400, 431
            observe.unreadable(self)
        if self._observer is not None:
            observe.closed(self)
        if not self._handler_running:
            self._drain_at = None  # nothing left for a drain to close
        out = self.conn.data_to_send()
        if out:
            actions.append(Write(out))
        self._pings.stop()
        self._fail_deadline = None
        self._open_deadline = None
        waiters = self._pings.take_waiters()
        actions.append(NotifyClosed(self.closed_error(), waiters))
        conn = self.conn
        if aborting:
            return
        if gone or (
            not self._linger and conn.close_received is not None and conn.close_sent is not None
        ):
            # The closing handshake is complete (or TCP is gone): nothing more to read.
            self._end_tcp(actions)
        elif self.tcp == _TCP_OPEN:
            # An error or an HTTP answer: read on until the peer's EOF (or time out).
            self.tcp = _TCP_HALF_CLOSED
            self._paused = 0
            actions.append(RESUME_READING)
            actions.append(HALF_CLOSE_TCP)
            self._close_deadline = self._timeout_from(now)
            self._rearm(actions)

    def _end_tcp(self, actions: list[Action]) -> None:
        if self.tcp != _TCP_ENDED:
            self.tcp = _TCP_ENDED
            self._close_deadline = None
            actions.append(CLOSE_TCP)

    def _drop(self, actions: list[Action], now: float) -> Actions:
        """Give up on the connection at once: cancel a resolve, abort TCP."""
        if self.conn.state is _DECIDING:
            actions.append(CANCEL_RESOLVE)
        if self.conn.state is not _CLOSED:
            self.conn.receive_eof()
            self._closed_by(actions, now, aborting=True)
        self._abort(actions)
        return tuple(actions)

    def _abort(self, actions: list[Action]) -> None:
        if self.tcp != _TCP_ENDED:
            self.tcp = _TCP_ENDED
            self._close_deadline = None
            actions.append(ABORT_TCP)

    def _close(self, code: int, reason: str, now: float, actions: list[Action]) -> None:
        conn = self.conn
        if conn.failure_pending is not None:
            self._fail_deadline = None
            self._dispatch(conn.fail_pending(), now, into=actions)
            return
        frame = conn.close(code, reason)
        if not frame:
            return
        actions.append(Write(frame))
        # The peer's close frame must get through, even with a full queue; its
        # messages from now on are dropped.
        self._unpause(_QUEUE_FULL | _FAILING, actions)
        actions.append(WAKE_RECEIVER)  # recv() raises from now on
        self._close_deadline = self._timeout_from(now)
        self._rearm(actions)

    def _timeout_from(self, now: float) -> float | None:
        timeout = self.options.close_timeout
        return None if timeout is None else now + timeout

    def _rearm(self, actions: list[Action]) -> None:
        """Ask for the timer when the next deadline comes before the armed one."""
        deadline = self.next_deadline()
        if deadline is not None and (self._armed is None or deadline < self._armed):
            self._armed = deadline
            actions.append(ArmTimer(deadline))

    def _pause(self, reason: int, actions: list[Action] | None = None) -> Actions:
        if self.closed or self.tcp != _TCP_OPEN:
            return NO_ACTIONS  # once closed, read on to the peer's EOF
        was = self._paused
        self._paused = was | reason
        if was:
            return NO_ACTIONS
        if actions is not None:
            actions.append(PAUSE_READING)
        return _PAUSE

    def _pause_with_wake(self, reason: int) -> Actions:
        return _WAKE_AND_PAUSE if self._pause(reason) else _WAKE

    def _resume(self, reasons: int) -> Actions:
        if not self._paused & reasons:
            return NO_ACTIONS
        self._paused &= ~reasons
        return NO_ACTIONS if self._paused else _RESUME

    def _unpause(self, reasons: int, actions: list[Action]) -> None:
        actions.extend(self._resume(reasons))

    # Pings and keepalive

    def _ack(self, payload: bytes, actions: list[Action]) -> None:
        for waiter, sent in self._pings.pong(payload):
            actions.append(CompletePing(waiter, sent))

    def _keepalive(self, now: float, actions: list[Action]) -> None:
        """Time passed: queue a keepalive ping, or a 1011 close for a silent peer."""
        due = self._pings.due(now) if self.conn.state is _OPEN else None
        if due == "timeout":
            logger.info(
                "route %r: %s did not answer a keepalive ping within %ss",
                route_name(self.path),
                peer_name(self.conn.remote_address),
                self.options.ping_timeout,
            )
            self._close(1011, "keepalive ping timeout", now, actions)
        elif due == "ping":
            payload = self._pings.payload(None)
            actions.append(Write(self.conn.send_ping(payload)))
            self._pings.keepalive_sent(payload, now)
