"""core.access: the access log's lines, and when Session writes them (no I/O)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.transports.helpers import close, handshake, text
from websockets_routes import Router
from websockets_routes.core import ConnectionLimit
from websockets_routes.core.access import (
    CLOSED,
    HANDSHAKE,
    access_logger,
    answer_args,
    closed_args,
)
from websockets_routes.core.decisions import Close, Respond
from websockets_routes.core.http import Headers, Request
from websockets_routes.core.options import ServerOptions
from websockets_routes.core.paths import RoutedPath
from websockets_routes.core.session import Session

PEER = ("10.0.0.1", 4000)

router = Router()


@router.route("/rooms/{room}", name="room")
async def room(ws, path):  # pragma: no cover - never run here
    pass


@router.route("/plain/{x}")
async def plain(ws, path):  # pragma: no cover - never run here
    pass


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> Any:
    """The access log's records, with the logger at INFO."""
    caplog.set_level(logging.INFO, logger="websockets_routes.access")

    def records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "websockets_routes.access"]

    return records


def deciding(target: str, now: float = 0.0, peer: Any = PEER) -> Session:
    session = Session(ServerOptions(), peer, now)
    session.receive_data(handshake(target), now)
    return session


def opened(target: str = "/rooms/7?token=secret", now: float = 0.0) -> Session:
    session = deciding(target, now)
    session.carry_out(session.resolve_now(router), now)
    return session


# The lines, as pure functions


def test_answer_args_and_line():
    request = Request("GET", "/rooms/7?token=secret", Headers())
    path = RoutedPath("/rooms/7?token=secret")
    path.name, path.template = "room", "/rooms/{room}"
    args = answer_args(PEER, request, 101, path)
    assert args == ("10.0.0.1:4000", "GET", "/rooms/7", 101, "room")
    assert HANDSHAKE % args == '10.0.0.1:4000 - "GET /rooms/7" 101 room'
    assert answer_args(("::1", 9, 0, 0), request, 404, None)[::4] == ("[::1]:9", "-")
    assert answer_args(None, None, 400, None) == ("-", "-", "-", 400, "-")


def test_answer_args_take_the_route_the_request_was_routed_to():
    request = Request("GET", "/health", Headers())
    request.path = path = RoutedPath("/health")
    path.name, path.template = None, "/health"
    assert answer_args(PEER, request, 200, None)[4] == "/health"  # no name: the template


def test_closed_args_and_line():
    path = RoutedPath("/rooms/7")
    path.name, path.template = "room", "/rooms/{room}"
    args = closed_args(PEER, path, 1000, 12.5034, 4, 9)
    assert args == ("10.0.0.1:4000", "room", 1000, 12.5034, 4, 9)
    assert CLOSED % args == "10.0.0.1:4000 - room closed 1000 after 12.503s (messages: 4 in, 9 out)"
    assert closed_args(None, RoutedPath("/x"), 4040, 0.0, 0, 0)[:2] == ("-", "-")


# What Session logs, and when


def test_a_handshake_and_its_close(access):
    session = opened(now=10.0)
    (line,) = access()
    assert line.levelno == logging.INFO
    assert line.getMessage() == '10.0.0.1:4000 - "GET /rooms/7" 101 room'
    assert line.args == ("10.0.0.1:4000", "GET", "/rooms/7", 101, "room")
    session.receive_data(text("a") + text("b"), 11.0)
    session.next_message(11.0)
    session.conn.send("x")
    session.receive_data(close(1000), 12.25)
    handshake_line, closed = access()
    assert closed.getMessage() == (
        "10.0.0.1:4000 - room closed 1000 after 2.250s (messages: 2 in, 1 out)"
    )
    assert closed.args == ("10.0.0.1:4000", "room", 1000, 2.25, 2, 1)
    session.receive_eof(13.0)
    assert len(access()) == 2  # one close line


def test_the_close_code_is_ours_when_the_peer_sent_none(access):
    session = opened(now=0.0)
    session.handler_failed(RuntimeError("boom"), 1.0)
    session.receive_eof(2.0)
    assert access()[-1].args[2:4] == (1011, 2.0)


def test_a_connection_dropped_at_close_timeout_is_1006_or_the_code_sent(access):
    session = opened(now=0.0)
    session.receive_eof(0.5)
    assert access()[-1].args[2] == 1006


def test_a_404_a_refusal_and_a_bad_request_get_one_line_each(access):
    session = deciding("/nowhere?q=1")
    session.carry_out(session.resolve_now(router), 0.0)
    session.receive_eof(1.0)
    refused = deciding("/plain/1")
    decision = refused.resolve_now(router)
    refused.carry_out(Respond(403, [], b"no"), 0.0)  # a hook's answer: the route stays
    assert decision.path.template == "/plain/{x}"
    bad = Session(ServerOptions(), PEER, 0.0)
    bad.receive_data(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 0.0)
    bad.receive_eof(1.0)
    assert [record.getMessage() for record in access()] == [
        '10.0.0.1:4000 - "GET /nowhere" 404 -',
        '10.0.0.1:4000 - "GET /plain/1" 403 /plain/{x}',
        '10.0.0.1:4000 - "- -" 400 -',
    ]


def test_a_close_decision_is_a_101_and_a_close(access):
    session = deciding("/rooms/1")
    accept = session.resolve_now(router)
    session.carry_out(Close(4001, "log in", accept.path), 0.0)
    session.receive_data(close(4001), 0.5)
    answer, closed = access()
    assert (answer.args[3], closed.args[2]) == (101, 4001)


def test_a_503_past_max_connections_is_logged(access):
    limit = ConnectionLimit(1)
    first = deciding("/rooms/1")
    first.carry_out(first.resolve_now(router), 0.0, limit)
    second = deciding("/rooms/2")
    second.carry_out(second.resolve_now(router), 0.0, limit)
    assert [record.args[3] for record in access()] == [101, 503]
    assert access()[1].args[4] == "room"


def test_a_peer_gone_before_its_request_logs_nothing(access):
    session = Session(ServerOptions(), PEER, 0.0)
    session.receive_data(b"GET / HT", 0.0)
    session.receive_eof(1.0)
    session = Session(ServerOptions(open_timeout=1), PEER, 0.0)
    session.on_timer(2.0)
    assert access() == []


def test_nothing_when_the_logger_is_off(caplog):
    caplog.set_level(logging.WARNING, logger="websockets_routes.access")
    assert not access_logger.isEnabledFor(logging.INFO)
    session = opened()
    session.receive_data(text("a"), 1.0)
    session.receive_data(close(1000), 2.0)
    bad = Session(ServerOptions(), PEER, 0.0)
    bad.receive_data(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 0.0)
    assert [r for r in caplog.records if r.name == "websockets_routes.access"] == []
    assert session._opened is None  # nothing kept for a close line


def test_the_logger_is_asked_once_per_connection(access, monkeypatch):
    asked = []
    real = access_logger.isEnabledFor
    monkeypatch.setattr(
        access_logger, "isEnabledFor", lambda level: asked.append(level) or real(level)
    )
    session = opened()
    for i in range(20):
        session.receive_data(text(str(i)), 1.0)
        session.next_message(1.0)
        session.conn.send("echo")
    session.receive_data(close(1000), 2.0)
    # Once for the connection, then logger.info()'s own look for each of the two
    # lines: none per message.
    assert asked == [logging.INFO] * 3
    assert access()[-1].args[4:] == (20, 20)


def test_messages_are_counted_whether_or_not_the_log_is_on():
    session = opened()
    session.receive_data(text("a"), 1.0)  # the one-message path
    session.receive_data(text("b") + text("c"), 1.0)  # several at once
    session.conn.send("x")
    session.conn.send(b"y")
    session.conn.send_shared("z", b"\x81\x01z")
    assert (session.messages_in, session.conn.messages_out) == (3, 3)
