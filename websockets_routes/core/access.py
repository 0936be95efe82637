"""The access log: logger ``websockets_routes.access``, level INFO, like uvicorn's.

One line when a request is answered (a WebSocket handshake, a plain-HTTP request, a
request refused before routing), one when a WebSocket connection closes::

    127.0.0.1:50312 - "GET /rooms/7" 101 room
    127.0.0.1:50313 - "GET /nowhere" 404 -
    127.0.0.1:50314 - "GET /health" 200 health
    127.0.0.1:50312 - room closed 1000 after 12.503s (messages: 4 in, 9 out)

The peer is ``host:port`` (``core.naming.peer_name``), the target is logged without
its query string (a query may carry a credential), the route is
``core.naming.route_name`` (``-`` when no route matched). The status is ``101`` for a
handshake answered with an upgrade (``Accept``, ``Close``), else the HTTP status. The
close code is the peer's close frame if one came, else ours, else 1006; the duration
runs from the 101 to the close. Each record's ``args`` are the values of the line,
for handlers that want fields: ``HANDSHAKE`` (peer, method, target, status, route),
``CLOSED`` (peer, route, code, seconds, messages in, messages out).

``Session`` calls ``log_answer`` once per connection, when its request is answered:
that is where the logger is asked whether it is enabled, once. Only then does the
session keep the moment of the 101, and ``log_closed`` follows when it closes. A
disabled logger costs a connection that one check; the message counts are an
integer increment per message either way.
"""

from __future__ import annotations

import logging
from typing import Any

from .naming import peer_name, route_name
from .paths import without_query

__all__ = [
    "CLOSED",
    "HANDSHAKE",
    "access_logger",
    "answer_args",
    "closed_args",
    "log_answer",
    "log_closed",
]

access_logger = logging.getLogger("websockets_routes.access")

HANDSHAKE = '%s - "%s %s" %d %s'
CLOSED = "%s - %s closed %d after %.3fs (messages: %d in, %d out)"

_INFO = logging.INFO


def _peer(address: Any) -> str:
    return peer_name(address) if address else "-"


def _route(path: Any) -> str:
    if getattr(path, "name", None) or getattr(path, "template", None):
        return route_name(path)
    return "-"  # no route matched (a 404, or a Close for an unmatched path)


def answer_args(remote_address: Any, request: Any, status: int, path: Any) -> tuple[Any, ...]:
    """The args of a ``HANDSHAKE`` line: ``request`` None for a request that could
    not be read (400, 431); ``path`` the RoutedPath routing found, or None."""
    if request is None:
        return (_peer(remote_address), "-", "-", status, "-")
    if path is None:
        path = request.path
    return (
        _peer(remote_address),
        request.method,
        without_query(request.target),
        status,
        _route(path),
    )


def closed_args(
    remote_address: Any, path: Any, code: int, seconds: float, messages_in: int, messages_out: int
) -> tuple[Any, ...]:
    """The args of a ``CLOSED`` line."""
    return (_peer(remote_address), _route(path), code, seconds, messages_in, messages_out)


def log_answer(session: Any, now: float) -> float | None:
    """The request of ``session`` was answered (``conn.status`` is set): log it if the
    access log is enabled. Returns ``now`` for a WebSocket connection whose close is
    to be logged with ``log_closed``, else None."""
    if not access_logger.isEnabledFor(_INFO):
        return None
    conn = session.conn
    status = conn.status
    access_logger.info(
        HANDSHAKE, *answer_args(conn.remote_address, conn.request, status, conn.path)
    )
    return now if status == 101 else None


def log_closed(session: Any, opened: float, now: float) -> None:
    """The WebSocket connection of ``session``, open since ``opened``, is closed."""
    conn = session.conn
    access_logger.info(
        CLOSED,
        *closed_args(
            conn.remote_address,
            conn.path,
            conn.close_code or 1006,
            max(0.0, now - opened),
            session.messages_in,
            conn.messages_out,
        ),
    )
