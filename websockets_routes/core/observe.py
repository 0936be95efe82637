"""Observers: what a server reports about handshakes and connections, for metrics.

An observer is any object with the three methods of ``Observer``, installed on the
router that is served: ``router.observer = observer``
(``websockets_routes.metrics.Metrics`` installs itself so). The core imports no metrics
library: it reports, the observer counts. Calls come from the server's event loop;
an observer must neither block nor raise.

- ``handshake(route, outcome, seconds)``: a handshake was answered (or timed out).
  ``outcome``: ``"accept"``, ``"close"`` (101, then a close frame: a ``Close``
  decision), the HTTP status as a string (``"404"``, ``"403"``, ``"429"``,
  ``"503"``...), or ``"timeout"`` (the open timeout ran out before an answer).
  ``seconds``: from the complete request head to the answer written; None when there
  is none (a head that could not be read, a timeout).
- ``opened(route, connection)``: a WebSocket connection is open (after ``accept`` or
  ``close``). ``connection.messages_in`` / ``connection.messages_out`` count its data
  messages so far and may be read at any moment until ``closed()`` (a scrape reads
  them: nothing is reported per message); None where the transport cannot count.
- ``closed(route, code, connection)``: that connection closed; ``code`` is the peer's
  close frame's if one came, else ours, else 1006.

``route`` is the route's name, else its template, never the path itself; ``""`` when
no route matched. A route that matched and was then refused (403 for its origins, a
hook's 429, 503 past ``max_connections``) keeps its label. Plain-HTTP requests are not
handshakes: a request is one when it matched a WebSocket route or asks for the upgrade
(``Upgrade: websocket``).

What is refused before a request head is complete (400 or 431 for a head that cannot
be read, the open timeout while the head arrives) counts with ``route=""``, for the
router the server gave the session (``Session(..., router=)``, as our servers and the
TestClient do); a transport that gives none reports it to every observer in
``unrouted`` (``Metrics`` adds itself).

``Session`` calls ``answered``, ``closed``, ``unreadable`` and ``timed_out``; with no
observer installed each event costs it one attribute check, and messages nothing.
The websockets hook and ASGI transports call ``report_handshake`` and the observer's
``opened``/``closed`` themselves.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

from .decisions import Close
from .paths import split_target

__all__ = [
    "Counts",
    "Observer",
    "answered",
    "closed",
    "handshake_route",
    "report_handshake",
    "route_label",
    "timed_out",
    "unreadable",
    "unrouted",
]


class Counts(Protocol):
    """A connection's data messages so far."""

    @property
    def messages_in(self) -> int: ...
    @property
    def messages_out(self) -> int: ...


class Observer(Protocol):
    """What the core reports; see the module docstring."""

    def handshake(self, route: str, outcome: str, seconds: float | None) -> None: ...
    def opened(self, route: str, connection: Counts | None) -> None: ...
    def closed(self, route: str, code: int, connection: Counts | None) -> None: ...


# Observers of what is refused before a router is known (see the module docstring).
unrouted: weakref.WeakSet[Any] = weakref.WeakSet()


def route_label(path: Any) -> str:
    """A RoutedPath's route: its name, else its template; ``""`` for none."""
    return getattr(path, "name", None) or getattr(path, "template", None) or ""


def _asks_upgrade(request: Any) -> bool:
    for value in request.headers.get_all("Upgrade"):
        if any(token.strip().lower() == "websocket" for token in value.split(",")):
            return True
    return False


def handshake_route(router: Any, request: Any, decision: Any = None) -> str | None:
    """The route label of ``request`` answered with ``decision``, or None when it is
    a plain-HTTP request (not a handshake)."""
    path = getattr(decision, "path", None)
    if path is not None:  # Accept, Close: routed
        return route_label(path)
    lookup = getattr(router, "lookup", None)
    if lookup is not None:
        try:
            found = lookup(split_target(request.target)[0])
        except ValueError:  # BadTarget: decide() answered 400
            found = None
        if found is not None:
            route = found[0]
            if getattr(route, "kind", "websocket") != "websocket" and not _asks_upgrade(request):
                return None  # a plain-HTTP route
            return getattr(route, "name", None) or route.template.source  # type: ignore[no-any-return]
    elif request.path is not None:  # a router of another kind: what resolve() found
        return route_label(request.path)
    return "" if _asks_upgrade(request) else None


def report_handshake(
    observer: Any, router: Any, request: Any, decision: Any, seconds: float | None
) -> str | None:
    """Report the answer to a handshake (``decision``: Accept, Close or Respond) to
    ``observer``; return its route label, None for a plain-HTTP request."""
    route = handshake_route(router, request, decision)
    if route is None:
        return None
    status = getattr(decision, "status", None)
    if status is not None:
        outcome = str(status)
    else:
        outcome = "close" if isinstance(decision, Close) else "accept"
    observer.handshake(route, outcome, seconds)
    return route


# Called by Session


def answered(observer: Any, session: Any, decision: Any, now: float) -> Any:
    """``session``'s request was answered (``decision``: what the router decided,
    before ``max_connections`` could turn an Accept into 503). Returns the observer
    when a WebSocket connection opened (it gets ``closed()`` later), else None."""
    conn = session.conn
    status = conn.status
    seconds = now - session._requested
    if status == 101:
        route = route_label(conn.path)
        observer.handshake(route, "close" if isinstance(decision, Close) else "accept", seconds)
        observer.opened(route, session)
        return observer
    refused = handshake_route(session._router, conn.request, decision)
    if refused is not None:
        observer.handshake(refused, str(status), seconds)
    return None


def closed(session: Any) -> None:
    """The WebSocket connection of ``session``, reported open, closed."""
    conn = session.conn
    session._observer.closed(route_label(conn.path), conn.close_code or 1006, session)


def _before_routing(session: Any) -> list[Any]:
    """Who hears of a request refused before it could be routed: the observer of the
    session's router, if the transport named it; else every observer in ``unrouted``."""
    router = session._router
    if router is None:
        return list(unrouted)
    observer = getattr(router, "observer", None)
    return [] if observer is None else [observer]


def unreadable(session: Any) -> None:
    """A request head that could not be read was answered (400, 431)."""
    for observer in _before_routing(session):
        observer.handshake("", str(session.conn.status), None)


def timed_out(session: Any) -> None:
    """The open timeout ran out before the request was answered."""
    request = session.conn.request
    if request is None:  # the head was still arriving (or never came)
        for observer in _before_routing(session):
            observer.handshake("", "timeout", None)
        return
    router = session._router
    observer = getattr(router, "observer", None)
    if observer is not None:
        route = handshake_route(router, request)
        if route is not None:
            observer.handshake(route, "timeout", None)
