"""One connection's life, sans I/O: the policy every transport carries out.

``core.connection.ServerConnection`` turns bytes into events. ``Session`` wraps it
and decides everything else a server does with a connection, once for every
transport: the open, keepalive, close and failure deadlines, when and how TCP ends,
what a shutdown does, when to stop and resume reading (``max_queue``, a decision
pending, answers a peer does not read), what ``recv()`` returns or raises, and how
a handler's end closes the connection. It does no I/O, knows no clock (time comes
in as ``now``, from whatever monotonic clock the transport keeps) and imports
nothing asynchronous.

Every call that changes the connection returns a tuple of actions
(``core.actions``) that the transport carries out in order. The life of a
connection, as calls::

    session = Session(options, remote_address, now)   # arm the timer at next_deadline()
    actions = session.receive_data(data, now)          # ... until Resolve(request)
    decision = session.resolve_now(router) or await session.resolve(router)
    actions = session.carry_out(decision, now, limit)  # Write(101), StartHandler(path)
    # the handler runs: send() / ping() return frames to write;
    # recv() is: message, actions = session.next_message(now) (None: wait for
    # WakeReceiver; ConnectionClosed raised once nothing more will come)
    actions = session.handler_returned(now)            # or handler_failed(exc, now)
    # ... receive_data / receive_eof / on_timer until CloseTCP or AbortTCP

``session.ended`` is True once TCP is over (after ``CloseTCP`` or ``AbortTCP``).
``Session(..., linger=True)`` is for a transport whose close may discard what it has
not sent yet (an anyio stream on asyncio): TCP then always ends by half-closing, and
closes at the peer's EOF or ``close_timeout``.

``Session`` holds the edges of that life: resolving and answering the opening
handshake, a handler's end, a shutdown. The state and the rules in between
(deadlines, back-pressure, the close, how TCP ends) are its base class,
``core.lifecycle.Lifecycle``.

``limit``: the server's ``core.limits.ConnectionLimit`` (``max_connections``). The
access log (``core.access``) is written from here, at the answer and at the close, and
the router's observer (``core.observe``: metrics) is told at the same points.
"""

from __future__ import annotations

from typing import Any

from . import access, observe
from .actions import NO_ACTIONS, Action, Actions, StartHandler, Write
from .connection import State
from .decisions import Accept
from .deflate import NO_LIMIT
from .errors import handler_error_is_close
from .handshake import Decision, resolve_pending, resolve_rest, resolve_start
from .lifecycle import _DECIDING_PAUSE, Lifecycle, logger
from .limits import FULL, ConnectionLimit
from .naming import peer_name, route_name
from .options import ServerOptions
from .paths import without_query
from .pings import Pings
from .router import resolves_in_steps

__all__ = ["Session"]

_DECIDING = State.DECIDING
_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED


class Session(Lifecycle):
    """One connection from accept to the end of TCP. See the module docstring."""

    __slots__ = ()

    # The opening handshake

    def resolve_now(self, router: Any) -> Decision | None:
        """The decision for the request, if the router can give it without awaiting
        (no hook, no HTTP view); None: ``await resolve(router)``."""
        request = self.request
        self._router = router
        if not resolves_in_steps(router):
            return None
        decision = resolve_start(router, request)
        if resolve_pending(decision):
            self._decision = decision
            return None
        return decision

    async def resolve(self, router: Any) -> Decision:
        """The decision for the request, awaiting the view's hook or HTTP view."""
        started, self._decision = self._decision, None
        self._router = router
        if started is not None:
            return await resolve_rest(started, self.request)
        if resolves_in_steps(router):
            decision = resolve_start(router, self.request)
            return await resolve_rest(decision, self.request)
        decision = await router.resolve(self.request)
        return decision  # type: ignore[no-any-return]

    def carry_out(self, decision: Any, now: float, limit: ConnectionLimit | None = None) -> Actions:
        """Answer the request as decided (nothing if the peer left or time ran out).
        ``limit``: the server's ``ConnectionLimit``; an ``Accept`` past it gets 503."""
        conn = self.conn
        if conn.state is not _DECIDING:
            return NO_ACTIONS
        self._open_deadline = self._grace_deadline = None
        self._decision = None
        observer, answer = getattr(self._router, "observer", None), decision
        if limit is not None and type(decision) is Accept:
            if limit.take():
                self._limit = limit  # given back in _closed_by()
            else:
                answer = FULL
        policy = getattr(getattr(answer, "path", None), "policy", None)
        if policy is not None and policy.overrides:  # the route's options (core.policy)
            self._adopt(policy.options(self.options))
        events = conn.carry_out(answer)
        self._opened = access.log_answer(self, now)
        if observer is not None:
            self._observer = observe.answered(observer, self, decision, now)
        actions: list[Action] = []
        out = conn.data_to_send()
        if out:
            actions.append(Write(out))
        self._unpause(_DECIDING_PAUSE, actions)
        state = conn.state
        if state is _CLOSED:  # an HTTP answer
            self._closed_by(actions, now)
            return tuple(actions)
        self.path = conn.path
        if state is _CLOSING:  # a Close decision: its close frame is out
            self._close_deadline = self._timeout_from(now)
            self._dispatch(events, now, closing=True, into=actions)
            self._rearm(actions)
            return tuple(actions)
        self._pings.start(now)
        self._dispatch(events, now, into=actions)
        if conn.state is _OPEN:
            if self._going_away:  # decided while the server shuts down
                self._close(self._going_away, "", now, actions)
            else:
                self._handler_running = True
                actions.append(StartHandler(conn.path))
        self._rearm(actions)
        return tuple(actions)

    def _adopt(self, options: ServerOptions) -> None:
        """Use a route's options from the answer on (compression is negotiated in it)."""
        self.options = options
        self.conn.max_size = NO_LIMIT if options.max_size is None else options.max_size
        self.conn.compression = options.compression
        self._max_queue = options.max_queue if options.max_queue is not None else 0
        self._low_water = self._max_queue // 4
        self._pings = Pings(options.ping_interval, options.ping_timeout)

    def handler_returned(self, now: float) -> Actions:
        """The handler returned: close with 1000 (nothing if already closing)."""
        self._handler_done()
        return self.close(1000, "", now)

    def handler_cancelled(self, now: float) -> Actions:
        """The handler was cancelled (``CancelHandler``, or the whole server): 1001."""
        self._handler_done()
        return self.close(1001, "", now)

    def _handler_done(self) -> None:
        self._handler_running = False
        self._grace_deadline = None
        if self.closed:
            self._drain_at = None  # nothing left for a drain to close

    def handler_failed(self, exc: BaseException, now: float) -> Actions:
        """The handler raised ``exc``: log it with route and peer, close with 1011.

        ``ConnectionClosed`` (alone or in an exception group) is not a failure: the
        peer left; it is logged at debug level and the connection closes with 1000.
        """
        self._handler_done()
        path = self.path
        peer = peer_name(self.conn.remote_address)
        if handler_error_is_close(exc):
            logger.debug("route %r for %s: %s", route_name(path), peer, exc)
            return self.handler_returned(now)
        logger.error(
            "handler of route %r failed for %s from %s",
            route_name(path),
            without_query(path) if path is not None else "?",
            peer,
            exc_info=exc,
        )
        return self.close(1011, "", now)

    def shutdown(self, now: float, *, code: int = 1001, at: float | None = None) -> Actions:
        """The server shuts down: a request still arriving is dropped, one being
        decided gets its answer and then ``code``, an open connection closes with
        ``code`` (1001; 1012 in a drain). A handler still running, or a hook still
        deciding, gets ``close_timeout`` to end: then ``CancelHandler`` (or
        ``CancelResolve`` and ``AbortTCP``).

        ``at`` after ``now`` (a drain, ``core.drain``): all that happens at ``at``,
        from ``on_timer()``; until then the connection lives on as usual (a handler
        that returns closes with 1000). A later call may only move ``at`` earlier."""
        actions: list[Action] = []
        if at is not None and at > now:
            pending = self._drain_at
            if (self.closed and not self._handler_running) or (
                pending is not None and pending <= at
            ):
                return NO_ACTIONS
            self._drain_at, self._drain_code = at, code
            self._rearm(actions)
            return tuple(actions)
        self._drain_at = None
        self._shut_down(code, now, actions)
        return tuple(actions)
