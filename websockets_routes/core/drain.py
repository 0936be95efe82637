"""What ``server.close(drain=...)`` means, decided once for every transport.

``close()`` closes every connection at once with 1001 (going away).
``close(drain=N)`` closes them with 1012 (service restart) at moments spread evenly
over N seconds, so that clients reconnect to other instances a few at a time
instead of all at once. Either way the transport stops accepting at once, then::

    plan = ServerShutdown(drain, now)     # ValueError for a drain that is no duration
    sessions = [conn.session for conn in connections]
    for conn, actions in zip(connections, plan.apply(sessions, now)):
        ...                                # carry out actions
    # a connection accepted after that: carry out plan.late(session, now)
    # give up on connections still open at plan.give_up_at(close_timeout)

Each session then closes by itself at its moment (``Session.shutdown(now, code=,
at=)`` arms its timer): until then its connection lives on as usual, and a handler
that returns before it closes with 1000. The grace of a handler still running
(``close_timeout``, then ``CancelHandler``) starts from its connection's close.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .actions import Actions
from .session import Session

__all__ = ["GOING_AWAY", "SERVICE_RESTART", "ServerShutdown", "check_drain", "drain_schedule"]

GOING_AWAY = 1001
SERVICE_RESTART = 1012


def check_drain(drain: float | None) -> float | None:
    """``drain`` as a float (None stays None); ValueError unless a finite number of
    seconds >= 0, TypeError unless a number."""
    if drain is None:
        return None
    if isinstance(drain, bool) or not isinstance(drain, (int, float)):
        raise TypeError(f"drain must be a number of seconds or None, not {type(drain).__name__}")
    if not math.isfinite(drain) or drain < 0:
        raise ValueError(f"drain must be a finite number of seconds >= 0, not {drain!r}")
    return float(drain)


def drain_schedule(count: int, seconds: float, now: float) -> list[float]:
    """When each of ``count`` connections closes in a drain of ``seconds`` that starts
    at ``now``: evenly spread, the i-th (from 0) at ``now + seconds * (i + 1) / count``,
    so the first after ``seconds / count`` and the last at ``now + seconds``."""
    if count < 0:
        raise ValueError(f"count must be >= 0, not {count}")
    seconds = check_drain(seconds) or 0.0
    return [now + seconds * (i + 1) / count for i in range(count)]


class ServerShutdown:
    """A server's ``close(drain=None)``, begun at ``started`` (the transport's clock).

    ``code`` is what connections close with: 1001, or 1012 in a drain; ``ends`` is
    when the last connection's close comes (``started`` without a drain).
    """

    __slots__ = ("drain", "started", "code", "ends")

    def __init__(self, drain: float | None, started: float) -> None:
        self.drain = check_drain(drain)
        self.started = started
        self.code = GOING_AWAY if self.drain is None else SERVICE_RESTART
        self.ends = started + (self.drain or 0.0)

    def __repr__(self) -> str:
        return f"<ServerShutdown drain={self.drain!r} code={self.code} ends={self.ends}>"

    def moments(self, count: int) -> list[float | None]:
        """When each of ``count`` connections closes; None: at once."""
        if self.drain is None:
            return [None] * count
        return list(drain_schedule(count, self.drain, self.started))

    def apply(self, sessions: Sequence[Session], now: float) -> list[Actions]:
        """Shut down every session, each at its moment: the actions of each, in order."""
        code = self.code
        return [
            session.shutdown(now, code=code, at=at)
            for session, at in zip(sessions, self.moments(len(sessions)), strict=True)
        ]

    def late(self, session: Session, now: float) -> Actions:
        """A connection accepted once the shutdown had begun: it closes at once."""
        return session.shutdown(now, code=self.code)

    def give_up_at(self, close_timeout: float | None) -> float | None:
        """When to stop waiting for connections still open (None: never): the last
        close, plus a handler's grace and the closing handshake's ``close_timeout``."""
        if close_timeout is None:
            return None
        return self.ends + 2 * close_timeout
