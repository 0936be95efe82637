"""What ``core.session.Session`` tells a transport to do: small immutable values.

Every call on a session that changes the connection returns a tuple of actions; the
transport carries them out **in order**, before it reads or writes anything else.
This module is the whole vocabulary, so a transport is one ``if``/``elif`` over
these classes (``type(action) is Write`` ...), and nothing else decides for it.

=================  ===========================================================
action             the transport ...
=================  ===========================================================
``Write``          writes ``data`` (after everything written before it)
``Resolve``        resolves ``request`` (``session.resolve_now(router)``, else
                   ``await session.resolve(router)``), then calls
                   ``session.carry_out(decision, now)``
``CancelResolve``  cancels a resolve still awaiting a hook (open timeout)
``StartHandler``   runs ``path.route.handle(ws, path)``; when it ends, calls
                   ``session.handler_returned(now)`` or ``handler_failed(exc, now)``
``CancelHandler``  cancels the handler (its shutdown grace ran out); when the
                   cancellation ends it, calls ``session.handler_cancelled(now)``
``WakeReceiver``   wakes a ``recv()`` waiting for input: it asks
                   ``session.next_message(now)`` again
``PauseReading``   stops reading from the peer until ``ResumeReading``
``ResumeReading``  reads again
``CompletePing``   completes ``waiter`` (from ``session.ping()``) with the
                   round-trip time: the transport's now minus ``sent``
``NotifyClosed``   the WebSocket connection is over: wakes every task waiting on
                   it and fails ``ping_waiters`` with ``error``
``ArmTimer``       (re)arms the connection's one timer at ``at`` (same clock as
                   ``now``); when it fires, calls ``session.on_timer(now)``
``CloseTCP``       ends TCP now, after what is written (write EOF, close)
``HalfCloseTCP``   writes EOF after what is written, then keeps reading and feeding
                   the session until it says ``CloseTCP`` or ``AbortTCP``
``AbortTCP``       drops the TCP connection at once (discarding unwritten data)
=================  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConnectionClosed
from .handshake import Request
from .paths import RoutedPath

__all__ = [
    "Action",
    "Actions",
    "ABORT_TCP",
    "AbortTCP",
    "ArmTimer",
    "CANCEL_HANDLER",
    "CANCEL_RESOLVE",
    "CLOSE_TCP",
    "CancelHandler",
    "CancelResolve",
    "CloseTCP",
    "CompletePing",
    "HALF_CLOSE_TCP",
    "HalfCloseTCP",
    "NO_ACTIONS",
    "NotifyClosed",
    "PAUSE_READING",
    "PauseReading",
    "RESUME_READING",
    "Resolve",
    "ResumeReading",
    "StartHandler",
    "WAKE_ONLY",
    "WAKE_RECEIVER",
    "WakeReceiver",
    "Write",
]


class Action:
    """Base class of every action. Actions without fields are equal by class."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


@dataclass(frozen=True, slots=True, repr=True)
class Write(Action):
    """Write ``data`` to the peer, after everything written before it."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Resolve(Action):
    """The request head is complete: resolve it and carry out the decision."""

    request: Request


class CancelResolve(Action):
    """The opening handshake ran out of time: cancel a resolve that awaits a hook."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class StartHandler(Action):
    """The handshake is accepted: run the view's handler for ``path``."""

    path: RoutedPath


class CancelHandler(Action):
    """The server shuts down and the handler outlived its grace (``close_timeout``)."""

    __slots__ = ()


class WakeReceiver(Action):
    """Messages arrived, or ``recv()`` must now raise: wake a waiting ``recv()``."""

    __slots__ = ()


class PauseReading(Action):
    """Stop reading from the peer (queue full, a decision pending, bad input held)."""

    __slots__ = ()


class ResumeReading(Action):
    """Read from the peer again."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class CompletePing(Action):
    """The pong for a ``ping()`` came: complete ``waiter``; latency = now - ``sent``."""

    waiter: Any
    sent: float


@dataclass(frozen=True, slots=True)
class NotifyClosed(Action):
    """The WebSocket connection is closed: wake every waiter, fail the ping waiters."""

    error: ConnectionClosed
    ping_waiters: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class ArmTimer(Action):
    """(Re)arm the connection's timer at ``at``; then call ``session.on_timer(now)``."""

    at: float


class CloseTCP(Action):
    """End the TCP connection once what was written is out (EOF, then close)."""

    __slots__ = ()


class HalfCloseTCP(Action):
    """Write EOF after what was written; keep reading (and feeding the session) until
    it says ``CloseTCP`` (the peer's EOF) or ``AbortTCP`` (``close_timeout``).

    RFC 6455 7.1.1: the server ends TCP first. Reading on to the peer's EOF keeps
    bytes still in flight from it from turning our close into a reset, which could
    destroy our last frame or HTTP response before the peer reads it."""

    __slots__ = ()


class AbortTCP(Action):
    """Drop the TCP connection at once: a timeout ran out."""

    __slots__ = ()


Actions = tuple[Action, ...]

NO_ACTIONS: Actions = ()
CANCEL_RESOLVE = CancelResolve()
CANCEL_HANDLER = CancelHandler()
WAKE_RECEIVER = WakeReceiver()
# What a message that needs nothing else gives: the same object each time, so that a
# transport may test for it with ``is`` before looping over the actions.
WAKE_ONLY: Actions = (WAKE_RECEIVER,)
PAUSE_READING = PauseReading()
RESUME_READING = ResumeReading()
CLOSE_TCP = CloseTCP()
HALF_CLOSE_TCP = HalfCloseTCP()
ABORT_TCP = AbortTCP()
