"""Exceptions shared by the core and every transport."""

from __future__ import annotations

__all__ = [
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "OK_CLOSE_CODES",
    "handler_error_is_close",
    "is_normal_close",
]

# Normal closes, as ``websockets`` counts them: 1000, 1001 and 1005 (a close frame
# without a code). Any other code (or 1006, no close frame) is an error.
OK_CLOSE_CODES = frozenset({1000, 1001, 1005})


def is_normal_close(code: int | None) -> bool:
    """Whether a connection that closed with ``code`` closed normally."""
    return code in OK_CLOSE_CODES


class ConnectionClosed(Exception):
    """The WebSocket connection is closed; ``code`` and ``reason`` say how.

    ``code`` is the close code received from the peer, or the one we sent when the
    peer sent none; 1006 when the connection dropped without a closing handshake.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"connection closed with code {self.code}" + (
            f": {self.reason}" if self.reason else ""
        )

    @staticmethod
    def for_code(code: int, reason: str = "") -> ConnectionClosed:
        """The right subclass: OK for 1000, 1001 and 1005 (a close frame without a code,
        as ``websockets`` counts it), Error for anything else."""
        if is_normal_close(code):
            return ConnectionClosedOK(code, reason)
        return ConnectionClosedError(code, reason)


class ConnectionClosedOK(ConnectionClosed):
    """Closed normally (1000, 1001, or 1005: a close frame without a code)."""


class ConnectionClosedError(ConnectionClosed):
    """Closed with an error code, or dropped."""


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
