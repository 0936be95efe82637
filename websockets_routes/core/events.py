"""Events the sans-IO connection driver (``core.connection``) reports to a transport.

Each is a small immutable value (a ``NamedTuple``: cheap to build, compared by value).
A transport dispatches on the class: ``type(event) is Message`` is the hot path.
"""

from __future__ import annotations

from typing import NamedTuple

from .http import Request

__all__ = ["Event", "RequestReceived", "Message", "Ping", "Pong", "Closed"]


class RequestReceived(NamedTuple):
    """The opening-handshake request is complete.

    The transport resolves it (``await router.resolve(event.request)``) and hands the
    decision to ``ServerConnection.carry_out()``.
    """

    request: Request


class Message(NamedTuple):
    """A whole WebSocket message: ``str`` for a text message, ``bytes`` for binary."""

    data: str | bytes


class Ping(NamedTuple):
    """A ping arrived; its pong is already queued in ``data_to_send()``."""

    payload: bytes


class Pong(NamedTuple):
    """A pong arrived (an answer to a ping of ours, or unsolicited)."""

    payload: bytes


class Closed(NamedTuple):
    """The connection is over: reported exactly once, when the state becomes CLOSED.

    ``code``/``reason``: the close code and reason received from the peer; the ones we
    sent if the peer sent none; 1006 (abnormal closure) when neither side sent a close
    frame (the TCP connection dropped, or the connection ended with an HTTP response).

    The transport writes ``data_to_send()``, then ends the TCP connection (RFC 6455
    section 7.1.1: the server closes first).
    """

    code: int
    reason: str = ""


Event = RequestReceived | Message | Ping | Pong | Closed
