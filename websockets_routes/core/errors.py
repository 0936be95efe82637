"""Exceptions shared by the core and every transport."""

from __future__ import annotations

__all__ = ["ConnectionClosed", "ConnectionClosedOK", "ConnectionClosedError"]


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
        """The right subclass: OK for 1000/1001, Error for anything else."""
        if code in (1000, 1001):
            return ConnectionClosedOK(code, reason)
        return ConnectionClosedError(code, reason)


class ConnectionClosedOK(ConnectionClosed):
    """Closed normally (1000 or 1001)."""


class ConnectionClosedError(ConnectionClosed):
    """Closed with an error code, or dropped."""
