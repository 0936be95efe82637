"""Pings waiting for their pong, and the keepalive schedule: one connection's, sans I/O.

``core.session.Session`` owns one ``Pings``. It knows no clock either: ``now`` comes
from the transport, through the session.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Pings"]

# A marker for the keepalive ping in the table of pings waiting for their pong.
_KEEPALIVE = object()
# Shared by every connection until its first ping: an idle connection allocates none.
_NO_PINGS: dict[bytes, Any] = {}


class Pings:
    """Payloads of pings sent and not yet answered, with their waiters and send times;
    when the next keepalive ping is due and when a silent peer has had its time."""

    __slots__ = ("waiting", "interval", "timeout", "next_ping", "_sent", "_payload", "_counter")

    def __init__(self, interval: float | None, timeout: float | None) -> None:
        # ping payload -> (waiter, time sent), oldest first (dicts keep order)
        self.waiting: dict[bytes, tuple[Any, float]] = _NO_PINGS
        self.interval = interval
        self.timeout = timeout
        self.next_ping: float | None = None  # None: no keepalive (not open, or off)
        self._sent: float | None = None  # when the keepalive ping awaiting a pong went
        self._payload: bytes | None = None  # that ping's payload
        self._counter = 0

    def start(self, now: float) -> None:
        """The connection is open: the first keepalive ping is due an interval later."""
        self.next_ping = None if self.interval is None else now + self.interval

    def stop(self) -> None:
        self.next_ping = self._sent = None

    def payload(self, payload: bytes | None) -> bytes:
        """``payload``, or a unique 4-byte one; RuntimeError if already waiting for it."""
        if payload is None:
            if not self._counter:
                self._counter = int.from_bytes(os.urandom(4), "big") | 1
            while True:
                self._counter = (self._counter + 1) & 0xFFFFFFFF
                payload = self._counter.to_bytes(4, "big")
                if payload not in self.waiting:
                    return payload
        if payload in self.waiting:
            raise RuntimeError("already waiting for a pong with the same data")
        return payload

    def sent(self, payload: bytes, waiter: Any, now: float) -> None:
        if self.waiting is _NO_PINGS:
            self.waiting = {}
        self.waiting[payload] = (waiter, now)

    def pong(self, payload: bytes) -> list[tuple[Any, float]]:
        """A pong came: ``(waiter, time sent)`` of the pings it answers."""
        # Any pong proves the peer alive (RFC 6455 5.5.3: an unsolicited pong is a
        # heartbeat), not only the answer to our last keepalive ping.
        self._sent = None
        waiting = self.waiting
        if payload not in waiting:
            return []
        # RFC 6455 5.5.3: a peer may answer only the latest of several pings, so a
        # pong acknowledges its ping and every earlier one.
        answered = []
        for key in list(waiting):
            waiter, sent = waiting.pop(key)
            if waiter is not _KEEPALIVE:
                answered.append((waiter, sent))
            if key == payload:
                break
        return answered

    def take_waiters(self) -> tuple[Any, ...]:
        """The waiters still unanswered (to fail: the connection closed)."""
        waiting = self.waiting
        if not waiting:
            return ()
        self.waiting = _NO_PINGS
        return tuple(w for w, _ in waiting.values() if w is not _KEEPALIVE)

    def deadline(self) -> float | None:
        """When ``due()`` has something to say next."""
        if self._sent is not None and self.timeout is not None:
            return self._sent + self.timeout  # a pong moves it to the next ping
        return self.next_ping

    def due(self, now: float) -> str | None:
        """``"ping"``: send a keepalive ping now (``keepalive_payload()``, then
        ``sent()``); ``"timeout"``: the peer did not answer in time; else None."""
        if self.next_ping is None:
            return None
        if self._sent is not None:
            if self.timeout is not None and now >= self._sent + self.timeout:
                self._sent = None
                return "timeout"
            return None
        if now < self.next_ping:
            return None
        return "ping"

    def keepalive_sent(self, payload: bytes, now: float) -> None:
        if self._payload is not None:
            # An earlier keepalive ping that a heartbeat pong made moot: forget it.
            self.waiting.pop(self._payload, None)
        self.sent(payload, _KEEPALIVE, now)
        self._payload = payload
        if self.timeout is not None:
            self._sent = now
        assert self.interval is not None
        self.next_ping = now + self.interval
