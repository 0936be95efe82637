"""core.session alone: the per-connection policy every transport shares, no I/O."""

from __future__ import annotations

import logging
import struct

import pytest

from tests.transports.helpers import close, frame, handshake, parse_frames, text
from websockets_routes import ConnectionClosed, ConnectionClosedOK, Router
from websockets_routes.core.connection import State
from websockets_routes.core.events import RequestReceived
from websockets_routes.core.session import (
    CLOSED,
    FAILING,
    KEEPALIVE,
    MESSAGES,
    PAUSE,
    PONGS,
    ServerOptions,
    Session,
    peer_name,
    route_name,
)

router = Router()


@router.route("/echo", name="echo")
async def echo(ws, path):  # pragma: no cover - never run here
    pass


def opened(now: float = 0.0, **options) -> Session:
    opts = ServerOptions(**options)
    conn = opts.connection(("10.0.0.1", 4000))
    (event,) = conn.receive_data(handshake("/echo?token=secret"))
    assert type(event) is RequestReceived
    conn.carry_out(router.decide(event.request))
    conn.data_to_send()
    return Session(conn, opts, now)


def close_code(data: bytes) -> int:
    b0, _, payload = parse_frames(data)[-1]
    assert b0 == 0x88
    return struct.unpack("!H", payload[:2])[0]


# Options


def test_defaults():
    options = ServerOptions()
    assert (options.max_size, options.max_queue) == (2**20, 16)
    assert (options.open_timeout, options.ping_interval, options.ping_timeout) == (10, 20, 20)
    assert (options.close_timeout, options.max_header_bytes) == (10, 16384)
    assert options.compression == "deflate" and options.ssl is None


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("max_size", -1, ValueError),
        ("max_size", 1.5, ValueError),
        ("max_queue", 0, ValueError),
        ("open_timeout", -1, ValueError),
        ("ping_interval", 0, ValueError),
        ("close_timeout", "10", ValueError),
        ("max_header_bytes", 10, ValueError),
        ("compression", "gzip", ValueError),
        ("ssl", True, TypeError),
    ],
)
def test_bad_options_name_the_option(name, value, error):
    with pytest.raises(error, match=name):
        ServerOptions(**{name: value})


def test_unknown_option():
    with pytest.raises(TypeError):
        ServerOptions(max_sise=10)  # type: ignore[call-arg]


def test_log_names():
    assert peer_name(("1.2.3.4", 5)) == "1.2.3.4:5"
    assert peer_name(("::1", 5, 0, 0)) == "[::1]:5"
    assert peer_name(None) == "an unknown peer"
    session = opened()
    assert route_name(session.path) == "echo"
    assert route_name("/a/b?token=secret") == "/a/b"  # never the query string


# Messages and back-pressure


def test_messages_are_queued_and_reading_pauses_at_max_queue():
    session = opened(max_queue=4)
    flags = session.receive_data(text("a") + text("b") + text("c"))
    assert flags == MESSAGES and not session.paused
    flags = session.receive_data(text("d"))
    assert flags == MESSAGES | PAUSE and session.paused
    # Reading resumes at a quarter full (hysteresis), not after the first take().
    assert session.take() == ("a", False)
    assert session.take() == ("b", False)
    assert session.take() == ("c", True)
    assert not session.paused
    assert session.take() == ("d", False)


def test_max_queue_none_never_pauses():
    session = opened(max_queue=None)
    flags = session.receive_data(b"".join(text(str(i)) for i in range(1000)))
    assert flags == MESSAGES and len(session.messages) == 1000


def test_closed_by_peer_after_messages():
    session = opened()
    flags = session.receive_data(text("last") + close(1000, "bye"))
    assert flags == MESSAGES | CLOSED
    assert session.conn.data_to_send()  # the close echo
    assert session.can_recv()  # the queued message first
    assert session.take() == ("last", False)
    assert not session.can_recv()
    error = session.closed_error()
    assert isinstance(error, ConnectionClosedOK) and (error.code, error.reason) == (1000, "bye")


def test_after_our_close_recv_raises_and_peer_messages_are_dropped():
    session = opened(max_queue=2)
    assert session.receive_data(text("1") + text("2")) & PAUSE
    assert session.close(4000, "done") == 0
    assert close_code(session.data_to_send()) == 4000
    assert not session.paused  # the peer's close must be read
    assert session.take()[0] == "1" and session.take()[0] == "2"
    assert not session.can_recv()
    assert session.closed_error().code == 4000
    assert session.receive_data(text("late")) == 0  # dropped
    assert session.receive_data(close(4000)) == CLOSED


def test_eof_is_1006():
    session = opened()
    assert session.receive_eof() == CLOSED
    assert session.closed_error().code == 1006


# Pings


def test_ping_waiters_are_answered_by_their_pong_and_every_later_one():
    session = opened()
    first = session.ping(None, "first", now=1.0)
    second = session.ping(b"two", "second", now=2.0)
    (_, _, p1), (_, _, p2) = parse_frames(first + second)
    assert p2 == b"two" and len(p1) == 4
    with pytest.raises(RuntimeError, match="same data"):
        session.ping(b"two", "again", now=2.0)
    # A pong for the second answers both (RFC 6455 5.5.3).
    assert session.receive_data(frame(0xA, b"two")) == PONGS
    assert session.take_acked() == [("first", 1.0), ("second", 2.0)]
    assert session.receive_data(frame(0xA, b"unsolicited")) == 0


def test_unanswered_pings_fail_when_the_connection_closes():
    session = opened()
    session.ping(None, "waiter", now=0.0)
    session.receive_eof()
    assert session.take_pings() == ["waiter"]


def test_ping_needs_an_open_connection():
    session = opened()
    session.receive_eof()
    with pytest.raises(ConnectionClosed):
        session.ping(None, "w", now=0.0)


# Keepalive


def test_keepalive_pings_then_closes_a_silent_peer(caplog):
    session = opened(now=100.0, ping_interval=10, ping_timeout=5)
    assert session.keepalive_deadline() == 110.0
    assert session.keepalive(105.0) == 0 and session.data_to_send() == b""
    session.keepalive(110.0)
    ((b0, _, payload),) = parse_frames(session.data_to_send())
    assert b0 == 0x89
    assert session.keepalive_deadline() == 115.0
    # The pong arrives: the next ping is due ping_interval after the last one.
    assert session.receive_data(frame(0xA, payload)) == KEEPALIVE  # re-arm the timer
    assert session.keepalive_deadline() == 120.0
    session.keepalive(115.0)
    assert session.data_to_send() == b""
    session.keepalive(120.0)
    assert parse_frames(session.data_to_send())[0][0] == 0x89
    # No pong this time.
    with caplog.at_level(logging.INFO, logger="websockets_routes"):
        session.keepalive(125.0)
    assert close_code(session.data_to_send()) == 1011
    assert session.conn.state is State.CLOSING
    assert session.keepalive_deadline() is None
    assert "10.0.0.1:4000" in caplog.text and "echo" in caplog.text


def test_any_pong_proves_the_peer_alive():
    session = opened(now=0.0, ping_interval=10, ping_timeout=5)
    session.keepalive(10.0)
    session.data_to_send()
    # An unsolicited pong (a heartbeat, RFC 6455 5.5.3) answers the keepalive too.
    assert session.receive_data(frame(0xA, b"heartbeat")) == KEEPALIVE
    session.keepalive(15.0)
    assert session.data_to_send() == b""  # no 1011
    session.keepalive(20.0)
    assert parse_frames(session.data_to_send())[0][0] == 0x89
    assert len(session.pings) == 1  # the unanswered first ping was forgotten


def test_keepalive_off_and_without_timeout():
    assert opened(ping_interval=None).keepalive_deadline() is None
    session = opened(now=0.0, ping_interval=1, ping_timeout=None)
    session.keepalive(1.0)
    assert session.data_to_send()
    assert session.keepalive_deadline() == 2.0  # pings on, never gives up


# Closing policy


def test_handler_return_closes_1000_once():
    session = opened()
    assert session.handler_returned() == 0
    assert close_code(session.data_to_send()) == 1000
    assert session.handler_returned() == 0 and session.data_to_send() == b""


def test_handler_failure_closes_1011_and_logs_route_and_peer_not_the_query(caplog):
    session = opened()
    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        session.handler_failed(ZeroDivisionError("bug"))
    assert close_code(session.data_to_send()) == 1011
    (record,) = caplog.records
    message = record.getMessage()
    assert "echo" in message and "10.0.0.1:4000" in message
    assert "secret" not in message
    assert record.exc_info is not None


def test_connection_closed_from_a_handler_is_not_a_failure(caplog):
    session = opened()
    with caplog.at_level(logging.DEBUG, logger="websockets_routes"):
        session.handler_failed(ConnectionClosed(1006))
    assert close_code(session.data_to_send()) == 1000
    assert all(r.levelno < logging.ERROR for r in caplog.records)


def test_shutdown_closes_1001():
    session = opened()
    session.shutdown()
    assert close_code(session.data_to_send()) == 1001


def test_bad_close_code_is_refused():
    session = opened()
    with pytest.raises(ValueError):
        session.close(1005)


# Bad input behind good messages


def test_failure_waits_until_the_messages_before_it_are_read():
    session = opened()
    flags = session.receive_data(text("one") + frame(0x5, b"reserved") + text("never"))
    assert flags == MESSAGES | FAILING
    assert session.data_to_send() == b""  # no close frame yet: answer "one" first
    assert session.take() == ("one", False)
    assert session.failure_pending()
    assert session.fail_pending() == CLOSED
    assert close_code(session.data_to_send()) == 1002
    assert not session.failure_pending()


def test_failure_waits_behind_a_message_of_an_earlier_read_until_recv_is_back():
    """Finding F10: the message came in one read, the bad frame in the next, before
    the handler answered the message (it took it, or has not yet)."""
    for handler_took_it in (False, True):
        session = opened()
        assert session.receive_data(text("one")) == MESSAGES
        if handler_took_it:
            assert session.take() == ("one", False)
        assert session.receive_data(frame(0x5, b"reserved")) == FAILING
        assert session.data_to_send() == b""  # the answer to "one" goes first
        if not handler_took_it:
            assert session.take() == ("one", False)
        assert session.answered()  # recv() came back with the queue empty: fail now
        assert session.fail_pending() == CLOSED
        assert close_code(session.data_to_send()) == 1002


def test_once_recv_waits_bad_input_fails_at_once():
    session = opened()
    session.receive_data(text("one"))
    session.take()
    assert not session.answered()  # recv() waits, nothing is pending
    assert session.receive_data(frame(0x5, b"reserved")) == CLOSED
    assert close_code(session.data_to_send()) == 1002


def test_closing_with_a_failure_pending_sends_the_failure_code():
    session = opened()
    session.receive_data(text("one") + frame(0x1, b"\xff"))
    assert session.handler_returned() == CLOSED
    assert close_code(session.data_to_send()) == 1007
