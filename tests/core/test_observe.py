"""core.observe: what Session reports to a router's observer, sans I/O, with explicit
``now`` (so times are exact), and what it costs when no observer is installed.

No metrics library here: the observer records its calls."""

from __future__ import annotations

from typing import Any

import pytest

from tests.transports.helpers import close, handshake, text
from websockets_routes import Respond, Router
from websockets_routes.core import observe
from websockets_routes.core.actions import Resolve
from websockets_routes.core.http import Request
from websockets_routes.core.limits import ConnectionLimit
from websockets_routes.core.options import ServerOptions
from websockets_routes.core.session import Session

PEER = ("10.0.0.1", 4000)


class Recorder:
    """An observer that keeps its calls, with the message counts as they are then."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def handshake(self, route: str, outcome: str, seconds: float | None) -> None:
        self.calls.append(("handshake", route, outcome, seconds))

    def opened(self, route: str, connection: Any) -> None:
        self.calls.append(("opened", route, connection.messages_in, connection.messages_out))

    def closed(self, route: str, code: int, connection: Any) -> None:
        self.calls.append(("closed", route, code, connection.messages_in, connection.messages_out))


def make_router() -> Router:
    router = Router()

    @router.route("/echo/{id}", name="echo")
    async def echo(ws, path):  # pragma: no cover - never run here
        pass

    @router.route("/busy")
    class Busy:
        def process_request(self, path, headers):  # never awaits: answer() can drive it
            return Respond(429, [], b"")

        async def handle(self, ws, path):  # pragma: no cover - refused
            pass

    @router.http("/health")
    async def health(request):  # pragma: no cover - never run here
        return "ok"

    return router


def answer(session: Session, router: Router, target: str, now: float, **kw: Any) -> None:
    """Play the transport from the request to the answer: head at ``now``, answer at
    ``now + 0.25``. A ``target`` starting with ``"plain "`` is a plain GET."""
    if target.startswith("plain "):
        head = f"GET {target[6:]} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    else:
        head = handshake(target)
    actions = session.receive_data(head, now)
    assert type(actions[-1]) is Resolve
    decision = session.resolve_now(router)
    if decision is None:
        coroutine = session.resolve(router)
        with pytest.raises(StopIteration) as done:
            coroutine.send(None)  # no hook here awaits anything
        decision = done.value.value
    session.carry_out(decision, now + 0.25, **kw)


def test_a_connection_reports_its_handshake_open_and_close():
    router = make_router()
    recorder = router.observer = Recorder()
    session = Session(ServerOptions(), PEER, 0.0)
    answer(session, router, "/echo/1?token=secret", 1.0)
    session.receive_data(text("a") + text("b"), 2.0)
    for _ in range(2):
        message, _ = session.next_message(2.0)
        session.send(message)
    session.receive_data(close(4000), 3.0)
    assert recorder.calls == [
        ("handshake", "echo", "accept", 0.25),
        ("opened", "echo", 0, 0),
        ("closed", "echo", 4000, 2, 2),
    ]


def test_refusals_keep_the_route_and_plain_http_is_not_a_handshake():
    router = make_router()
    recorder = router.observer = Recorder()
    for target in ["/busy", "/nowhere", "plain /health", "plain /nowhere"]:
        answer(Session(ServerOptions(), PEER, 0.0), router, target, 1.0)
    session = Session(ServerOptions(), PEER, 0.0)  # no place left: 503, route kept
    answer(session, router, "/echo/2", 1.0, limit=ConnectionLimit(1))
    limit = ConnectionLimit(1)
    limit.take()
    answer(Session(ServerOptions(), PEER, 0.0), router, "/echo/3", 1.0, limit=limit)
    assert recorder.calls[:3] == [
        ("handshake", "/busy", "429", 0.25),
        ("handshake", "", "404", 0.25),
        ("handshake", "echo", "accept", 0.25),
    ]
    assert recorder.calls[4:] == [("handshake", "echo", "503", 0.25)]


def test_requests_refused_before_routing_go_to_the_unrouted_observers():
    recorder = Recorder()
    observe.unrouted.add(recorder)
    try:
        Session(ServerOptions(), PEER, 0.0).receive_data(b"\x16\x03garbage\r\n\r\n", 1.0)
        session = Session(ServerOptions(open_timeout=5), PEER, 0.0)
        session.receive_data(b"GET /echo/1 HTTP/1.1\r\n", 1.0)
        session.on_timer(5.0)
    finally:
        observe.unrouted.discard(recorder)
    assert recorder.calls == [("handshake", "", "400", None), ("handshake", "", "timeout", None)]


@pytest.mark.parametrize(
    ("target", "upgrade", "route"),
    [
        ("/echo/1", True, "echo"),
        ("/echo/1", False, "echo"),  # a WebSocket route: a handshake, even a bad one (426)
        ("/nowhere", True, ""),
        ("/nowhere", False, None),  # GET /favicon.ico and the like: plain HTTP
        ("/health", False, None),  # a plain-HTTP route
        ("/health", True, "/health"),  # ... asked for an upgrade
        ("//bad%zz", True, ""),
    ],
)
def test_which_requests_are_handshakes(target, upgrade, route):
    headers = [("Upgrade", "websocket")] if upgrade else []
    request = Request("GET", target, headers)
    assert observe.handshake_route(make_router(), request) == route


def test_no_observer_no_call(monkeypatch):
    """Without an observer nothing in core.observe runs for a whole connection, and the
    router's ``observer`` is read once per connection, not per message."""

    def fail(*args: Any) -> None:  # pragma: no cover - the test fails if called
        raise AssertionError("core.observe called without an observer")

    for name in ("answered", "closed", "unreadable", "timed_out", "report_handshake"):
        monkeypatch.setattr(observe, name, fail)

    reads = []

    class CountingRouter(Router):
        @property
        def observer(self) -> None:
            reads.append(1)

        @observer.setter
        def observer(self, value: Any) -> None:
            pass

    router = CountingRouter()

    @router.route("/echo")
    async def echo(ws, path):  # pragma: no cover - never run here
        pass

    session = Session(ServerOptions(), PEER, 0.0)
    answer(session, router, "/echo", 1.0)
    for _ in range(100):
        session.receive_data(text("a"), 2.0)
        message, _ = session.next_message(2.0)
        session.send(message)
    session.receive_data(close(1000), 3.0)
    session.receive_eof(3.0)
    assert session.ended and session.messages_in == session.messages_out == 100
    assert len(reads) == 1


def test_route_labels():
    router = make_router()
    assert observe.route_label(router.match("/echo/1?x=1")) == "echo"
    assert observe.route_label(router.match("/busy")) == "/busy"
    assert observe.route_label(None) == ""
