"""Exceptions shared by the core and every transport."""

from __future__ import annotations

__all__ = ["ConnectionClosed", "ConnectionClosedOK", "ConnectionClosedError", "OK_CLOSE_CODES"]

OK_CLOSE_CODES = frozenset({1000, 1001, 1005})


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
        if code in OK_CLOSE_CODES:
            return ConnectionClosedOK(code, reason)
        return ConnectionClosedError(code, reason)


class ConnectionClosedOK(ConnectionClosed):
    """Closed normally (1000, 1001, or 1005: a close frame without a code)."""


class ConnectionClosedError(ConnectionClosed):
    """Closed with an error code, or dropped."""
