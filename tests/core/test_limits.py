"""core.limits: ``max_connections`` as the session carries it out, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from tests.transports.helpers import close, handshake, text
from websockets_routes import Router
from websockets_routes.core import ConnectionLimit
from websockets_routes.core.actions import NotifyClosed, StartHandler, Write
from websockets_routes.core.connection import State
from websockets_routes.core.decisions import Accept, Close
from websockets_routes.core.limits import FULL, check_max_connections
from websockets_routes.core.options import ServerOptions
from websockets_routes.core.session import Session

router = Router()


@router.route("/ws", name="ws")
async def ws_view(ws, path):  # pragma: no cover - never run here
    pass


@router.http("/health")
async def health(request):  # pragma: no cover - never run here
    return b"ok"


def answered(limit: ConnectionLimit, target: str = "/ws", now: float = 0.0) -> Session:
    """A session whose request was resolved and carried out against ``limit``."""
    session = Session(ServerOptions(), ("10.0.0.1", 4000), now)
    session.receive_data(handshake(target), now)
    decision = session.resolve_now(router)
    if decision is None:
        decision = Accept(session.request.path, None)  # never a Respond from an HTTP view here
    session.carry_out(decision, now, limit)
    return session


def first_write(session_actions: Any) -> bytes:
    return next(action.data for action in session_actions if type(action) is Write)


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_max_connections_must_be_a_positive_int_or_none(value):
    with pytest.raises(ValueError, match="max_connections"):
        ServerOptions(max_connections=value)
    with pytest.raises(ValueError, match="max_connections"):
        check_max_connections(value)


def test_max_connections_defaults_to_no_limit():
    assert ServerOptions().max_connections is None
    assert ServerOptions(max_connections=3).max_connections == 3
    limit = ServerOptions(max_connections=3).connection_limit()
    assert (limit.maximum, limit.open) == (3, 0)
    unlimited = ConnectionLimit()
    assert all(unlimited.take() for _ in range(1000)) and unlimited.open == 1000


def test_a_limit_takes_and_gives_back_places():
    limit = ConnectionLimit(2)
    assert limit.take() and limit.take() and not limit.take()
    assert limit.open == 2 and "2 open" in repr(limit)
    limit.release()
    assert limit.take() and limit.open == 2
    limit.release()
    limit.release()
    limit.release()  # never below zero
    assert limit.open == 0


def test_the_503_says_when_to_retry():
    assert FULL.status == 503
    assert ("Retry-After", "1") in FULL.headers
    assert FULL.body.startswith(b"503 Service Unavailable: too many open connections")


def test_past_the_limit_an_accept_is_answered_503_and_ends():
    limit = ConnectionLimit(2)
    first, second = answered(limit), answered(limit)
    assert first.state is State.OPEN and second.state is State.OPEN and limit.open == 2
    session = Session(ServerOptions(), ("10.0.0.1", 4001), 0.0)
    session.receive_data(handshake("/ws"), 0.0)
    actions = session.carry_out(session.resolve_now(router), 1.0, limit)
    response = first_write(actions)
    assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 1\r\n" in response
    assert StartHandler not in [type(action) for action in actions]
    assert NotifyClosed in [type(action) for action in actions]
    assert session.state is State.CLOSED and limit.open == 2


def test_a_place_is_given_back_when_the_connection_closes():
    limit = ConnectionLimit(1)
    session = answered(limit)
    assert limit.open == 1
    session.receive_data(text("hi"), 1.0)
    assert limit.open == 1
    session.receive_data(close(1000), 2.0)  # the peer's close: the closing handshake
    assert session.state is State.CLOSED and limit.open == 0
    assert answered(limit).state is State.OPEN and limit.open == 1


@pytest.mark.parametrize("how", ["eof", "our close", "timeout"])
def test_every_way_to_close_gives_the_place_back(how):
    limit = ConnectionLimit(1)
    session = answered(limit)
    if how == "eof":
        session.receive_eof(1.0)
    elif how == "our close":
        session.handler_returned(1.0)
        assert limit.open == 1  # closing, not closed yet
        session.on_timer(100.0)  # no close frame came back: close_timeout
    else:
        session.shutdown(1.0)
        session.on_timer(100.0)
    assert session.closed and limit.open == 0
    session.receive_eof(200.0)
    assert limit.open == 0  # given back once


def test_what_takes_no_place():
    limit = ConnectionLimit(1)
    assert answered(limit, "/nowhere").state is State.CLOSED  # 404
    health = Session(ServerOptions(), None, 0.0)
    health.receive_data(handshake("/health"), 0.0)
    assert health.resolve_now(router) is None  # an HTTP view: awaited, then a Respond
    health.receive_eof(1.0)  # the peer left before the answer
    closing = Session(ServerOptions(), None, 0.0)
    closing.receive_data(handshake("/ws"), 0.0)
    accept = closing.resolve_now(router)
    closing.carry_out(Close(4000, "", accept.path), 0.0, limit)
    assert closing.state is State.CLOSING
    assert limit.open == 0
    assert answered(limit).state is State.OPEN and limit.open == 1


def test_a_session_closed_before_its_answer_takes_no_place():
    limit = ConnectionLimit(1)
    assert limit.take()  # full
    session = Session(ServerOptions(), None, 0.0)
    session.receive_data(handshake("/ws"), 0.0)
    session.receive_eof(1.0)  # gone while deciding: nothing was taken, nothing given back
    assert session.carry_out(Accept(session.request.path, None), 1.0, limit) == ()
    assert limit.open == 1


def test_without_a_limit_nothing_is_counted():
    session = Session(ServerOptions(max_connections=1), None, 0.0)
    session.receive_data(handshake("/ws"), 0.0)
    session.carry_out(session.resolve_now(router), 0.0)  # a transport that passes none
    assert session.state is State.OPEN
