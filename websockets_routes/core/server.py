"""What every server keeps once, whatever moves its bytes.

``BaseServer`` is the base of our servers (asyncio, anyio) and of a server of your
own (examples/custom_transport.py): it checks the router and the options once, holds
the connection limit (``max_connections``) and, from ``close()`` on, the shutdown
plan (``core.drain.ServerShutdown``). It starts each connection's ``Session``::

    class Server(BaseServer):
        def on_connect(self, peer):                     # a connection was accepted
            session, actions = self.new_session(peer, now)
            ...                                         # carry out actions
        def close(self, drain=None):
            plan = self.begin_shutdown(drain, now)      # None: closing already
            if plan is not None:
                ...  # stop accepting; carry out plan.apply(sessions, now), in order

A connection accepted after ``begin_shutdown()`` gets, from ``new_session()``, the
actions that close it at once.
"""

from __future__ import annotations

from typing import Any

from .actions import NO_ACTIONS, Actions
from .drain import ServerShutdown, check_drain
from .options import ServerOptions
from .router import check_router
from .session import Session

__all__ = ["BaseServer"]


class BaseServer:
    """``router``, ``host``, ``options`` (a ``ServerOptions``), ``limit`` (the
    ``ConnectionLimit`` of ``max_connections``; never full without one) and ``shutdown``
    (the ``ServerShutdown`` once closing, else None). ``options`` are the keyword
    arguments of ``ServerOptions``: a bad one is a ValueError or TypeError here."""

    def __init__(
        self, router: Any, host: str | None = None, port: int | None = None, **options: Any
    ) -> None:
        check_router(router, "serve()")
        self.router = router
        self.host = host
        self.requested_port = port
        self.options = ServerOptions(**options)
        self.limit = self.options.connection_limit()
        self.shutdown: ServerShutdown | None = None

    def new_session(
        self, remote_address: Any, now: float, *, linger: bool = False
    ) -> tuple[Session, Actions]:
        """The session of a connection just accepted, and the actions to carry out at
        once: none, or its close if the server is shutting down. ``linger``: see
        ``Session``. Arm the connection's timer at ``session.next_deadline()``."""
        session = Session(self.options, remote_address, now, linger=linger, router=self.router)
        plan = self.shutdown
        return session, NO_ACTIONS if plan is None else plan.late(session, now)

    def begin_shutdown(self, drain: float | None, now: float) -> ServerShutdown | None:
        """Begin ``close(drain=...)`` at ``now``: the plan to apply to the open
        connections' sessions, or None if the server is closing already. ValueError
        (TypeError) for a ``drain`` that is no duration, even then."""
        check_drain(drain)
        if self.shutdown is not None:
            return None
        self.shutdown = ServerShutdown(drain, now)
        return self.shutdown
