"""``max_connections``: how many WebSocket connections a server holds open at most.

The server owns one ``ConnectionLimit`` (made from its ``ServerOptions``) and hands it
to every ``Session.carry_out(decision, now, limit)``; the session does the rest:

- an ``Accept`` takes a place; past ``max_connections`` it is answered with
  ``FULL`` instead: 503 with ``Retry-After: 1`` and a short body, and the connection
  ends as any HTTP answer does;
- the place is given back when that WebSocket connection closes (the closing
  handshake, an error, a timeout or the peer's EOF), whether or not its handler runs on;
- plain-HTTP requests, refused handshakes and ``Close`` decisions take no place.

``ConnectionLimit(None)`` never refuses; it still counts (``open``).
"""

from __future__ import annotations

from http import HTTPStatus

from .decisions import Respond, respond

__all__ = ["FULL", "RETRY_AFTER", "ConnectionLimit", "check_max_connections"]

RETRY_AFTER = "1"  # seconds: soon, as a place frees when any connection closes

FULL: Respond = respond(
    HTTPStatus.SERVICE_UNAVAILABLE,
    "too many open connections, retry later",
    [("Retry-After", RETRY_AFTER)],
)


def check_max_connections(value: object) -> int | None:
    """``value`` if it is None or an int >= 1; ValueError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_connections must be an int >= 1 or None, not {value!r}")
    return value


class ConnectionLimit:
    """The open WebSocket connections of one server, against ``maximum`` (None: no
    limit). Sans I/O, not thread-safe: one per server, used from its event loop."""

    __slots__ = ("maximum", "open")

    def __init__(self, maximum: int | None = None) -> None:
        self.maximum = check_max_connections(maximum)
        self.open = 0

    def __repr__(self) -> str:
        return f"<ConnectionLimit {self.open} open, at most {self.maximum}>"

    def take(self) -> bool:
        """Take a place for a connection about to open; False when none is left."""
        if self.maximum is not None and self.open >= self.maximum:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        """A connection that took a place has closed."""
        if self.open > 0:
            self.open -= 1
