"""core.session.Session alone: a connection's whole life as actions, no I/O, no clock.

Each test plays the transport: it feeds bytes, EOF and timer ticks with an explicit
``now`` and checks the actions it would have to carry out, in order.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Coroutine
from typing import Any

import pytest

from tests.transports.helpers import close, frame, handshake, parse_frames, text
from websockets_routes import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, Router
from websockets_routes.core.actions import (
    AbortTCP,
    Action,
    ArmTimer,
    CancelHandler,
    CancelResolve,
    CloseTCP,
    CompletePing,
    HalfCloseTCP,
    NotifyClosed,
    PauseReading,
    Resolve,
    ResumeReading,
    StartHandler,
    WakeReceiver,
    Write,
)
from websockets_routes.core.connection import State
from websockets_routes.core.decisions import Accept, Close, Respond
from websockets_routes.core.naming import peer_name, route_name
from websockets_routes.core.options import ServerOptions
from websockets_routes.core.session import Session

PEER = ("10.0.0.1", 4000)
TCP_ENDS = (CloseTCP, AbortTCP)

router = Router()


@router.route("/echo", name="echo")
async def echo(ws, path):  # pragma: no cover - never run here
    pass


@router.route("/hooked", name="hooked")
class Hooked:
    async def process_request(self, path, headers):  # never awaits: run() can drive it
        path.context["user"] = "alice"

    async def handle(self, ws, path):  # pragma: no cover - never run here
        pass


# Playing the transport


def new(now: float = 0.0, *, linger: bool = False, **options: Any) -> Session:
    return Session(ServerOptions(**options), PEER, now, linger=linger)


def deciding(
    now: float = 0.0, target: str = "/echo?token=secret", *, linger: bool = False, **options: Any
) -> Session:
    """A session whose request came: state DECIDING, a Resolve to carry out."""
    session = new(now, linger=linger, **options)
    actions = session.receive_data(handshake(target), now)
    assert len(actions) == 1 and type(actions[0]) is Resolve
    assert actions[0].request.target == target and session.request is actions[0].request
    assert session.state is State.DECIDING
    return session


def opened(now: float = 0.0, *, linger: bool = False, **options: Any) -> Session:
    """A session with its handshake accepted and its handler started."""
    session = deciding(now, linger=linger, **options)
    decision = session.resolve_now(router)
    assert isinstance(decision, Accept)
    actions = session.carry_out(decision, now)
    assert kinds(actions)[:1] == [Write] and actions[0].data.startswith(b"HTTP/1.1 101 ")
    (start,) = of(actions, StartHandler)
    assert start.path is session.path and route_name(start.path) == "echo"
    assert session.state is State.OPEN and session.reading
    return session


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never suspends, with no event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the coroutine tried to suspend")


def kinds(actions: tuple[Action, ...]) -> list[type]:
    return [type(action) for action in actions]


def of(actions: tuple[Action, ...], kind: type) -> list[Any]:
    return [action for action in actions if type(action) is kind]


def written(actions: tuple[Action, ...]) -> bytes:
    return b"".join(action.data for action in of(actions, Write))


def close_code(data: bytes) -> int:
    b0, _, payload = parse_frames(data)[-1]
    assert b0 == 0x88, f"last frame is {b0:#x}, not a close frame"
    return struct.unpack("!H", payload[:2])[0]


def notified(actions: tuple[Action, ...]) -> ConnectionClosed:
    """The error of the one NotifyClosed among ``actions``."""
    (notify,) = of(actions, NotifyClosed)
    return notify.error


def timers(actions: tuple[Action, ...]) -> list[float]:
    return [action.at for action in of(actions, ArmTimer)]


def before(actions: tuple[Action, ...], first: type, then: type) -> bool:
    found = kinds(actions)
    return first in found and then in found and found.index(first) < found.index(then)


def no_tcp_end(actions: tuple[Action, ...]) -> bool:
    return not set(kinds(actions)) & {CloseTCP, AbortTCP, HalfCloseTCP}


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


# The opening handshake


def test_accept_gives_the_101_then_starts_the_handler():
    session = deciding(0.0)
    decision = session.resolve_now(router)
    actions = session.carry_out(decision, 1.0)
    assert kinds(actions) == [Write, StartHandler]
    assert actions[0].data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert actions[1].path is decision.path
    assert session.carry_out(decision, 1.0) == ()  # once only


def test_a_hook_is_awaited_through_resolve():
    session = deciding(0.0, "/hooked")
    assert session.resolve_now(router) is None  # the hook needs an await
    decision = run(session.resolve(router))
    assert isinstance(decision, Accept) and decision.path.context == {"user": "alice"}
    actions = session.carry_out(decision, 1.0)
    assert kinds(actions) == [Write, StartHandler]


def test_open_timeout_drops_a_request_that_does_not_come(caplog):
    session = new(100.0, open_timeout=5)
    assert session.next_deadline() == 105.0  # the transport arms its timer there
    assert session.receive_data(b"GET /echo HTTP/1.1\r\nHost: x\r\n", 101.0) == ()
    # Fired early: nothing is due, the timer is armed again for the deadline.
    assert session.on_timer(104.0) == (ArmTimer(105.0),)
    assert not session.ended
    with caplog.at_level(logging.INFO, logger="websockets_routes"):
        actions = session.on_timer(105.0)
    assert kinds(actions) == [NotifyClosed, AbortTCP]  # no answer: dropped
    assert notified(actions).code == 1006
    assert "10.0.0.1:4000" in caplog.text and "within 5" in caplog.text
    assert session.ended and session.next_deadline() is None
    assert session.receive_data(b"\r\n", 106.0) == ()
    assert session.receive_eof(106.0) == ()
    assert session.on_timer(106.0) == ()


def test_open_timeout_while_deciding_cancels_the_resolve(caplog):
    session = deciding(0.0, "/hooked", open_timeout=5)
    assert session.resolve_now(router) is None  # the transport awaits the hook...
    assert session.on_timer(4.0) == (ArmTimer(5.0),)
    with caplog.at_level(logging.INFO, logger="websockets_routes"):
        actions = session.on_timer(5.0)
    assert kinds(actions)[0] is CancelResolve and kinds(actions)[-1] is AbortTCP
    assert before(actions, CancelResolve, AbortTCP)
    assert kinds(actions) == [CancelResolve, NotifyClosed, AbortTCP]
    assert "10.0.0.1:4000" in caplog.text
    assert session.ended
    # ...the hook answered too late (or its cancellation came back with a decision).
    decision = router.decide(session.request)
    assert session.carry_out(decision, 6.0) == ()
    assert session.on_timer(16.0) == ()


def test_the_answer_ends_the_open_deadline():
    session = new(0.0, open_timeout=5, ping_interval=None)
    session.receive_data(handshake(), 1.0)
    session.carry_out(session.resolve_now(router), 2.0)
    assert session.next_deadline() is None
    assert session.on_timer(5.0) == ()  # the timer armed at the start fires: nothing
    assert session.state is State.OPEN and not session.ended


def test_open_timeout_none_arms_nothing():
    session = new(0.0, open_timeout=None)
    assert session.next_deadline() is None
    assert session.receive_data(handshake(), 1000.0)


# Messages and back-pressure


def test_messages_are_queued_and_reading_pauses_at_max_queue():
    session = opened(max_queue=4)
    actions = session.receive_data(text("a") + text("b") + text("c"), 1.0)
    assert kinds(actions) == [WakeReceiver]
    assert session.reading
    actions = session.receive_data(text("d"), 1.0)
    assert kinds(actions) == [WakeReceiver, PauseReading] and not session.reading
    # Reading resumes at a quarter full (hysteresis), not after the first message.
    assert session.next_message(2.0) == ("a", ())
    assert session.next_message(2.0) == ("b", ())
    message, actions = session.next_message(2.0)
    assert message == "c" and kinds(actions) == [ResumeReading]
    assert session.reading
    assert session.next_message(2.0) == ("d", ())
    assert session.next_message(2.0) == (None, ())  # recv() waits for WakeReceiver


def test_max_queue_none_never_pauses():
    session = opened(max_queue=None)
    actions = session.receive_data(b"".join(text(str(i)) for i in range(1000)), 1.0)
    assert kinds(actions) == [WakeReceiver] and len(session.messages) == 1000
    assert session.reading


def test_messages_of_one_read_pause_reading_at_max_queue():
    session = opened(max_queue=2)
    actions = session.receive_data(text("a") + text("b") + text("c"), 1.0)
    assert kinds(actions) == [WakeReceiver, PauseReading] and not session.reading
    assert len(session.messages) == 3  # nothing is dropped


def test_closed_by_peer_after_messages():
    session = opened()
    actions = session.receive_data(text("last") + close(1000, "bye"), 1.0)
    assert close_code(written(actions)) == 1000  # the close echo
    assert before(actions, Write, CloseTCP)  # the echo goes out before TCP ends
    error = notified(actions)
    assert isinstance(error, ConnectionClosedOK) and (error.code, error.reason) == (1000, "bye")
    assert WakeReceiver in kinds(actions) and AbortTCP not in kinds(actions)
    assert session.ended
    assert session.next_message(2.0) == ("last", ())  # the queued message first
    with pytest.raises(ConnectionClosedOK) as raised:
        session.next_message(2.0)
    assert (raised.value.code, raised.value.reason) == (1000, "bye")
    error = session.closed_error()
    assert isinstance(error, ConnectionClosedOK) and (error.code, error.reason) == (1000, "bye")
    assert (session.close_code, session.close_reason) == (1000, "bye")


def test_after_our_close_recv_raises_and_peer_messages_are_dropped():
    session = opened(max_queue=2)
    assert PauseReading in kinds(session.receive_data(text("1") + text("2"), 1.0))
    assert not session.reading
    actions = session.close(4000, "done", 2.0)
    assert close_code(written(actions)) == 4000
    assert NotifyClosed not in kinds(actions) and no_tcp_end(actions)
    assert ResumeReading in kinds(actions) and WakeReceiver in kinds(actions)
    assert session.reading  # the peer's close must be read
    assert session.next_message(2.0)[0] == "1" and session.next_message(2.0)[0] == "2"
    with pytest.raises(ConnectionClosed) as raised:
        session.next_message(2.0)
    assert raised.value.code == 4000
    assert session.closed_error().code == 4000
    assert session.receive_data(text("late"), 3.0) == ()  # dropped
    assert not session.messages
    actions = session.receive_data(close(4000), 3.0)
    assert kinds(actions) == [NotifyClosed, CloseTCP]
    assert notified(actions).code == 4000 and session.ended


def test_eof_is_1006():
    session = opened()
    actions = session.receive_eof(1.0)
    assert kinds(actions) == [NotifyClosed, CloseTCP]
    assert notified(actions).code == 1006
    assert session.closed_error().code == 1006
    assert isinstance(session.closed_error(), ConnectionClosedError)
    assert session.ended and session.receive_eof(2.0) == ()


def test_recv_raises_once_closed_and_drained():
    session = opened()
    session.receive_data(text("one") + text("two"), 1.0)
    session.receive_eof(2.0)
    assert session.next_message(3.0) == ("one", ())
    assert session.next_message(3.0) == ("two", ())
    for _ in range(2):  # and keeps raising
        with pytest.raises(ConnectionClosedError) as raised:
            session.next_message(3.0)
        assert raised.value.code == 1006


def test_untake_puts_a_message_back_first():
    session = opened()
    session.receive_data(text("one") + text("two"), 1.0)
    message, _ = session.next_message(1.0)
    session.untake(message)  # its recv() was cancelled
    assert session.next_message(1.0) == ("one", ())
    assert session.next_message(1.0) == ("two", ())


def test_a_full_queue_is_unpaused_by_close():
    session = opened(max_queue=1)
    assert kinds(session.receive_data(text("a"), 1.0)) == [WakeReceiver, PauseReading]
    actions = session.handler_returned(2.0)
    assert close_code(written(actions)) == 1000 and ResumeReading in kinds(actions)
    assert session.reading
    # The peer's close frame gets through, and TCP ends.
    actions = session.receive_data(close(1000), 3.0)
    assert kinds(actions) == [NotifyClosed, CloseTCP]


def test_bytes_arriving_while_deciding_pause_reading_until_carry_out():
    session = deciding(0.0)
    assert session.receive_data(b"", 0.5) == ()
    assert session.reading
    assert kinds(session.receive_data(text("early"), 0.5)) == [PauseReading]
    assert not session.reading
    assert session.receive_data(text("later"), 0.6) == ()  # paused already
    assert not session.reading
    actions = session.carry_out(session.resolve_now(router), 1.0)
    assert kinds(actions)[0] is Write and actions[0].data.startswith(b"HTTP/1.1 101 ")
    assert ResumeReading in kinds(actions) and StartHandler in kinds(actions)
    assert WakeReceiver in kinds(actions)
    assert session.reading
    assert session.next_message(1.0) == ("early", ())
    assert session.next_message(1.0) == ("later", ())


def test_bytes_while_deciding_then_an_http_answer_read_on_to_eof():
    session = deciding(0.0, "/nope", open_timeout=None)
    assert kinds(session.receive_data(b"body?", 0.5)) == [PauseReading]
    actions = session.carry_out(session.resolve_now(router), 1.0)
    assert written(actions).startswith(b"HTTP/1.1 404 ")
    assert HalfCloseTCP in kinds(actions) and session.reading
    assert kinds(actions)[-1] is not PauseReading


def test_replies_blocked_pauses_reading_until_writes_resume():
    session = opened()
    assert kinds(session.replies_blocked()) == [PauseReading]
    assert not session.reading
    assert session.replies_blocked() == ()  # paused already
    assert kinds(session.writes_resumed()) == [ResumeReading]
    assert session.reading
    assert session.writes_resumed() == ()


def test_replies_blocked_and_a_full_queue_both_hold_reading():
    session = opened(max_queue=1)
    assert PauseReading in kinds(session.receive_data(text("a"), 1.0))
    assert session.replies_blocked() == ()  # paused already
    assert session.writes_resumed() == ()  # the queue still holds it
    assert not session.reading
    message, actions = session.next_message(2.0)
    assert message == "a" and kinds(actions) == [ResumeReading] and session.reading


def test_replies_blocked_is_ignored_once_closed():
    session = opened(linger=True)
    session.receive_eof(1.0)
    assert session.replies_blocked() == ()
    session = opened(linger=True)
    session.receive_data(frame(0x1, b"x", masked=False), 1.0)  # failed: half-closed
    assert session.replies_blocked() == () and session.reading


def test_reading_runs_again_once_closed_with_a_half_close():
    """The trap: a transport that pulls bytes only while ``reading`` must read on to
    the peer's EOF once the connection is CLOSED, or it waits for close_timeout and
    aborts. Here a full queue and the peer's close frame come in the same read."""
    session = opened(linger=True, max_queue=2)
    actions = session.receive_data(text("a") + text("b") + close(1000), 1.0)
    assert HalfCloseTCP in kinds(actions) and not session.ended
    assert PauseReading not in kinds(actions)[kinds(actions).index(HalfCloseTCP) :]
    assert session.reading
    assert kinds(session.receive_eof(2.0)) == [CloseTCP]


@pytest.mark.parametrize("linger", [False, True])
def test_reading_runs_again_once_bad_input_fails_at_its_deadline(linger):
    session = opened(linger=linger, max_queue=2, open_timeout=None, ping_interval=None)
    actions = session.receive_data(text("a") + text("b") + frame(0x5, b"x"), 1.0)
    assert PauseReading in kinds(actions) and not session.reading
    actions = session.on_timer(11.0)
    assert HalfCloseTCP in kinds(actions) and ResumeReading in kinds(actions)
    assert session.reading


@pytest.mark.parametrize("linger", [False, True])
def test_reading_runs_again_once_closed_while_replies_are_blocked(linger):
    # One read: a message, a ping (its pong fills the write buffer), bad input.
    session = opened(linger=linger, open_timeout=None, ping_interval=None)
    actions = session.receive_data(text("a") + frame(0x9, b"p") + frame(0x5, b"x"), 1.0)
    assert parse_frames(written(actions)) == [(0x8A, 1, b"p")]
    assert session.replies_blocked() == () and not session.reading  # paused already
    actions = session.on_timer(11.0)  # the handler never reads "a"
    assert HalfCloseTCP in kinds(actions) and ResumeReading in kinds(actions)
    assert session.reading  # though the pong is still not written
    assert session.writes_resumed() == ()
    assert session.reading


# Errors and HTTP answers: write, then read on to the peer's EOF


@pytest.mark.parametrize("linger", [False, True])
def test_an_error_closes_then_reads_on_to_the_peers_eof(linger):
    session = opened(0.0, linger=linger, open_timeout=None, ping_interval=None, close_timeout=5)
    actions = session.receive_data(text("x", masked=False), 1.0)
    assert kinds(actions) == [Write, NotifyClosed, ResumeReading, HalfCloseTCP, ArmTimer]
    assert close_code(written(actions)) == 1002
    assert notified(actions).code == 1002 and isinstance(notified(actions), ConnectionClosedError)
    assert timers(actions) == [6.0] and session.next_deadline() == 6.0
    assert session.state is State.CLOSED and not session.ended and session.reading
    assert session.receive_data(text("more"), 2.0) == ()  # read and dropped
    assert kinds(session.receive_eof(3.0)) == [CloseTCP]
    assert session.ended and session.next_deadline() is None
    with pytest.raises(ConnectionClosedError) as raised:
        session.next_message(3.0)
    assert raised.value.code == 1002


def test_an_error_without_the_peers_eof_is_aborted_at_close_timeout():
    session = opened(0.0, open_timeout=None, ping_interval=None, close_timeout=5)
    session.receive_data(text("x", masked=False), 1.0)
    assert session.on_timer(5.9) == (ArmTimer(6.0),)
    assert kinds(session.on_timer(6.0)) == [AbortTCP]
    assert session.ended and session.receive_eof(7.0) == ()


def test_a_respond_decision_writes_the_response_then_reads_on_to_eof():
    session = deciding(0.0, "/nope", open_timeout=30)
    decision = session.resolve_now(router)
    assert isinstance(decision, Respond) and decision.status == 404
    actions = session.carry_out(decision, 1.0)
    assert kinds(actions) == [Write, NotifyClosed, ResumeReading, HalfCloseTCP, ArmTimer]
    assert actions[0].data.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert timers(actions) == [11.0]  # close_timeout from now; the open deadline is over
    assert session.next_deadline() == 11.0
    assert StartHandler not in kinds(actions) and not session.ended
    assert kinds(session.receive_eof(2.0)) == [CloseTCP]
    assert session.ended and session.next_deadline() is None


def test_a_respond_decision_without_the_peers_eof_is_aborted():
    session = deciding(0.0, "/nope", open_timeout=30)
    session.carry_out(Respond(403, [], b"no"), 1.0)
    assert kinds(session.on_timer(11.0)) == [AbortTCP]
    assert session.ended


def test_a_malformed_request_gets_400_then_reads_on_to_eof():
    session = new(0.0, open_timeout=30)
    actions = session.receive_data(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 1.0)
    assert kinds(actions) == [Write, NotifyClosed, ResumeReading, HalfCloseTCP, ArmTimer]
    assert actions[0].data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert Resolve not in kinds(actions)
    assert timers(actions) == [11.0] and session.next_deadline() == 11.0
    assert kinds(session.receive_eof(2.0)) == [CloseTCP] and session.ended
    session = new(0.0, open_timeout=30)
    session.receive_data(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 1.0)
    assert kinds(session.on_timer(11.0)) == [AbortTCP] and session.ended


def test_a_close_decision_gives_the_101_and_the_close_frame():
    session = deciding(0.0, open_timeout=None, ping_interval=None, close_timeout=5)
    accept = session.resolve_now(router)
    actions = session.carry_out(Close(4001, "log in", accept.path, accept.headers), 1.0)
    data = written(actions)
    assert data.startswith(b"HTTP/1.1 101 ")
    assert close_code(data.partition(b"\r\n\r\n")[2]) == 4001
    assert StartHandler not in kinds(actions) and timers(actions) == [6.0]
    actions = session.receive_data(close(4001), 2.0)
    assert kinds(actions) == [NotifyClosed, CloseTCP]


# Closing


def test_close_waits_close_timeout_for_the_peers_close_frame():
    session = opened(0.0, open_timeout=None, ping_interval=None, close_timeout=5)
    actions = session.close(1000, "", 1.0)
    assert kinds(actions) == [Write, WakeReceiver, ArmTimer] and timers(actions) == [6.0]
    assert close_code(written(actions)) == 1000
    assert session.close(1000, "", 1.5) == ()  # once
    assert session.on_timer(5.0) == (ArmTimer(6.0),)
    actions = session.receive_data(close(1000), 2.0)
    assert kinds(actions) == [NotifyClosed, CloseTCP]  # no echo: we closed first
    assert isinstance(notified(actions), ConnectionClosedOK) and notified(actions).code == 1000
    assert session.ended and session.next_deadline() is None


def test_close_with_linger_half_closes_then_closes_at_the_peers_eof():
    session = opened(0.0, linger=True, open_timeout=None, ping_interval=None, close_timeout=5)
    assert timers(session.close(1000, "", 1.0)) == [6.0]
    actions = session.receive_data(close(1000), 2.0)
    assert NotifyClosed in kinds(actions) and HalfCloseTCP in kinds(actions)
    assert CloseTCP not in kinds(actions) and AbortTCP not in kinds(actions)
    assert notified(actions).code == 1000
    assert session.reading and not session.ended
    # Now close_timeout from the close frame, for the EOF; the armed timer (6.0) is
    # earlier, so it comes first and is armed again for the new deadline.
    assert session.next_deadline() == 7.0
    assert all(at >= 6.0 for at in timers(actions))
    assert session.on_timer(6.0) == (ArmTimer(7.0),)
    assert not session.ended
    assert kinds(session.receive_eof(3.0)) == [CloseTCP] and session.ended
    assert session.next_deadline() is None


def test_close_with_linger_aborts_without_the_peers_eof():
    session = opened(0.0, linger=True, open_timeout=None, ping_interval=None, close_timeout=5)
    session.close(1000, "", 1.0)
    session.receive_data(close(1000), 2.0)
    assert session.on_timer(6.0) == (ArmTimer(7.0),)
    assert kinds(session.on_timer(7.0)) == [AbortTCP] and session.ended


def test_an_unanswered_close_is_aborted_at_close_timeout_with_the_code_sent():
    """The close code is the peer's, else ours, else 1006 (ConnectionClosed's
    contract): a close the peer never answers reports the code we sent."""
    session = opened(0.0, open_timeout=None, ping_interval=None, close_timeout=5)
    session.ping(None, "waiter", 0.5)
    session.close(1000, "", 1.0)
    assert session.on_timer(5.9) == (ArmTimer(6.0),)
    actions = session.on_timer(6.0)
    assert kinds(actions) == [NotifyClosed, AbortTCP]
    assert of(actions, NotifyClosed)[0].ping_waiters == ("waiter",)
    error = notified(actions)
    assert isinstance(error, ConnectionClosedOK) and error.code == 1000
    assert session.ended and session.next_deadline() is None


def test_the_timer_is_armed_again_only_for_an_earlier_deadline():
    """One timer per connection: an ArmTimer comes only when a deadline is earlier
    than the one armed; a timer that fires early re-arms for the next one."""
    session = new(0.0)  # armed at 10.0, the open deadline
    session.receive_data(handshake(), 1.0)
    actions = session.carry_out(session.resolve_now(router), 1.0)
    assert ArmTimer not in kinds(actions)  # keepalive at 21.0 is later than 10.0
    assert session.next_deadline() == 21.0
    assert session.on_timer(10.0) == (ArmTimer(21.0),)
    actions = session.close(1000, "", 12.0)
    assert ArmTimer not in kinds(actions)  # 22.0: after the armed 21.0
    assert session.next_deadline() == 22.0  # no keepalive once closing
    assert session.on_timer(21.0) == (ArmTimer(22.0),)  # no ping
    assert kinds(session.on_timer(22.0)) == [NotifyClosed, AbortTCP]


def test_close_timeout_none_waits_forever():
    session = opened(0.0, open_timeout=None, ping_interval=None, close_timeout=None)
    assert kinds(session.close(1000, "", 1.0)) == [Write, WakeReceiver]
    assert session.next_deadline() is None
    assert session.on_timer(1e9) == ()
    assert kinds(session.receive_data(close(1000), 2.0)) == [NotifyClosed, CloseTCP]


# Pings


def test_ping_waiters_are_answered_by_their_pong_and_every_later_one():
    session = opened()
    first = session.ping(None, "first", 1.0)
    second = session.ping(b"two", "second", 2.0)
    (_, _, p1), (_, _, p2) = parse_frames(first + second)
    assert p2 == b"two" and len(p1) == 4
    with pytest.raises(RuntimeError, match="same data"):
        session.ping(b"two", "again", 2.0)
    # A pong for the second answers both (RFC 6455 5.5.3).
    actions = session.receive_data(frame(0xA, b"two"), 3.0)
    assert actions == (CompletePing("first", 1.0), CompletePing("second", 2.0))
    assert session.receive_data(frame(0xA, b"unsolicited"), 3.0) == ()


def test_a_ping_from_the_peer_is_answered_with_a_pong():
    session = opened()
    actions = session.receive_data(frame(0x9, b"hi"), 1.0)
    assert parse_frames(written(actions)) == [(0x8A, 2, b"hi")]


def test_unanswered_pings_fail_when_the_connection_closes():
    session = opened()
    session.ping(None, "waiter", 0.0)
    actions = session.receive_eof(1.0)
    (notify,) = of(actions, NotifyClosed)
    assert notify.ping_waiters == ("waiter",) and notify.error.code == 1006


def test_ping_needs_an_open_connection():
    session = opened()
    session.receive_eof(1.0)
    with pytest.raises(ConnectionClosed):
        session.ping(None, "w", 1.0)


# Keepalive


def test_keepalive_pings_then_closes_a_silent_peer(caplog):
    session = opened(now=100.0, ping_interval=10, ping_timeout=5)
    assert session.next_deadline() == 110.0
    assert session.on_timer(105.0) == (ArmTimer(110.0),)  # early: no ping
    actions = session.on_timer(110.0)
    ((b0, _, payload),) = parse_frames(written(actions))
    assert b0 == 0x89
    assert timers(actions) == [115.0] and session.next_deadline() == 115.0
    # The pong arrives: the next ping is due ping_interval after the last one.
    assert session.receive_data(frame(0xA, payload), 112.0) == ()
    assert session.next_deadline() == 120.0
    actions = session.on_timer(115.0)  # the timer armed for 115 fires: re-armed
    assert written(actions) == b"" and timers(actions) == [120.0]
    actions = session.on_timer(120.0)
    assert parse_frames(written(actions))[0][0] == 0x89 and timers(actions) == [125.0]
    # No pong this time.
    with caplog.at_level(logging.INFO, logger="websockets_routes"):
        actions = session.on_timer(125.0)
    assert close_code(written(actions)) == 1011
    assert session.state is State.CLOSING and no_tcp_end(actions)
    assert "10.0.0.1:4000" in caplog.text and "echo" in caplog.text
    # No keepalive deadline remains: only the close deadline.
    assert session.next_deadline() == 135.0 and timers(actions) == [135.0]
    assert written(session.on_timer(130.0)) == b""
    actions = session.receive_data(close(1011), 131.0)
    assert kinds(actions) == [NotifyClosed, CloseTCP]
    assert session.next_deadline() is None


def test_any_pong_proves_the_peer_alive():
    session = opened(now=0.0, ping_interval=10, ping_timeout=5)
    assert parse_frames(written(session.on_timer(10.0)))[0][0] == 0x89
    # An unsolicited pong (a heartbeat, RFC 6455 5.5.3) answers the keepalive too.
    assert session.receive_data(frame(0xA, b"heartbeat"), 11.0) == ()
    assert session.next_deadline() == 20.0
    assert written(session.on_timer(15.0)) == b""  # no 1011
    assert session.state is State.OPEN
    assert parse_frames(written(session.on_timer(20.0)))[0][0] == 0x89
    assert len(session._pings.waiting) == 1  # the unanswered first ping was forgotten


def test_keepalive_off_and_without_timeout():
    assert opened(ping_interval=None).next_deadline() is None
    session = new(0.0, ping_interval=1, ping_timeout=None)
    session.receive_data(handshake(), 0.0)
    actions = session.carry_out(session.resolve_now(router), 0.0)
    assert timers(actions) == [1.0]  # earlier than the open deadline armed
    actions = session.on_timer(1.0)
    assert parse_frames(written(actions))[0][0] == 0x89
    assert session.next_deadline() == 2.0  # pings on, never gives up
    for now in (2.0, 3.0, 100.0):
        actions = session.on_timer(now)
        assert parse_frames(written(actions))[0][0] == 0x89 and session.state is State.OPEN


def test_no_keepalive_before_the_handshake_nor_once_closed():
    session = new(0.0, ping_interval=1, open_timeout=None)
    assert session.next_deadline() is None
    session.receive_data(handshake(), 0.0)
    assert session.next_deadline() is None  # deciding
    session.carry_out(session.resolve_now(router), 0.0)
    assert session.next_deadline() == 1.0
    session.receive_data(close(1000), 0.5)
    assert session.next_deadline() is None and session.on_timer(1.0) == ()


# Handler end and shutdown


def test_handler_return_closes_1000_once():
    session = opened()
    actions = session.handler_returned(1.0)
    assert close_code(written(actions)) == 1000 and no_tcp_end(actions)
    assert session.handler_returned(1.0) == ()


def test_handler_failure_closes_1011_and_logs_route_and_peer_not_the_query(caplog):
    session = opened()
    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        actions = session.handler_failed(ZeroDivisionError("bug"), 1.0)
    assert close_code(written(actions)) == 1011
    (record,) = caplog.records
    message = record.getMessage()
    assert "echo" in message and "10.0.0.1:4000" in message
    assert "secret" not in message
    assert record.exc_info is not None


def test_connection_closed_from_a_handler_is_not_a_failure(caplog):
    session = opened()
    with caplog.at_level(logging.DEBUG, logger="websockets_routes"):
        actions = session.handler_failed(ConnectionClosed(1006), 1.0)
    assert close_code(written(actions)) == 1000
    assert all(r.levelno < logging.ERROR for r in caplog.records)


def test_bad_close_code_is_refused():
    session = opened()
    with pytest.raises(ValueError):
        session.close(1005, "", 1.0)
    assert session.state is State.OPEN


def test_shutdown_while_open_closes_1001():
    session = opened()
    actions = session.shutdown(1.0)
    assert close_code(written(actions)) == 1001 and no_tcp_end(actions)
    assert WakeReceiver in kinds(actions)
    assert session.shutdown(2.0) == ()  # closing already


def test_shutdown_drops_a_request_still_arriving():
    session = new(0.0)
    session.receive_data(b"GET /echo HTTP/1.1\r\n", 0.5)
    actions = session.shutdown(1.0)
    assert kinds(actions) == [NotifyClosed, AbortTCP] and written(actions) == b""
    assert session.ended and session.next_deadline() is None


def test_shutdown_while_deciding_answers_then_closes_1001():
    session = deciding(0.0, open_timeout=None, ping_interval=None, close_timeout=5)
    assert session.shutdown(1.0) == (ArmTimer(6.0),)  # the hook's grace
    actions = session.carry_out(session.resolve_now(router), 2.0)
    assert StartHandler not in kinds(actions)
    data = written(actions)
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert close_code(frames) == 1001
    assert no_tcp_end(actions) and session.next_deadline() == 7.0  # the close's, no grace
    assert session.on_timer(6.0) == (ArmTimer(7.0),)
    assert kinds(session.receive_data(close(1001), 3.0)) == [NotifyClosed, CloseTCP]


def test_a_hook_still_deciding_at_shutdown_is_given_up_after_close_timeout():
    session = deciding(0.0, open_timeout=None, ping_interval=None, close_timeout=5)
    assert session.shutdown(1.0) == (ArmTimer(6.0),)
    assert session.on_timer(5.9) == (ArmTimer(6.0),)
    actions = session.on_timer(6.0)
    assert kinds(actions) == [CancelResolve, NotifyClosed, AbortTCP]
    assert session.ended and session.next_deadline() is None
    assert session.carry_out(session.resolve_now(router), 7.0) == ()


def test_a_handler_still_running_at_shutdown_is_cancelled_after_close_timeout():
    session = new(0.0, open_timeout=None, ping_interval=None, close_timeout=5)
    session.receive_data(handshake(), 0.0)
    assert StartHandler in kinds(session.carry_out(session.resolve_now(router), 0.0))
    actions = session.shutdown(1.0)
    assert close_code(written(actions)) == 1001 and timers(actions) == [6.0]
    # The peer answers at once: TCP is over, the handler still runs.
    assert kinds(session.receive_data(close(1001), 2.0)) == [NotifyClosed, CloseTCP]
    assert session.ended and session.next_deadline() == 6.0  # the handler's grace
    assert session.on_timer(6.0) == (CancelHandler(),)
    assert session.handler_cancelled(6.1) == () and session.next_deadline() is None


def test_a_handler_that_returns_in_its_grace_is_not_cancelled():
    session = new(0.0, open_timeout=None, ping_interval=None, close_timeout=5)
    session.receive_data(handshake(), 0.0)
    session.carry_out(session.resolve_now(router), 0.0)
    session.shutdown(1.0)
    session.handler_returned(2.0)
    assert CancelHandler not in kinds(session.on_timer(6.0))


def test_a_cancelled_handler_closes_with_1001():
    session = opened(close_timeout=5)
    actions = session.handler_cancelled(1.0)
    assert close_code(written(actions)) == 1001


def test_shutdown_while_deciding_then_an_http_answer():
    session = deciding(0.0, "/nope", open_timeout=None)
    assert session.shutdown(1.0) == (ArmTimer(11.0),)  # the grace of a hook
    actions = session.carry_out(session.resolve_now(router), 2.0)
    assert written(actions).startswith(b"HTTP/1.1 404 ") and HalfCloseTCP in kinds(actions)


def test_shutdown_once_closed_does_nothing():
    session = opened()
    session.receive_eof(1.0)
    assert session.shutdown(2.0) == ()
    session = opened(linger=True)
    session.receive_data(text("x", masked=False), 1.0)  # half-closed, reading to EOF
    assert session.shutdown(2.0) == ()
    session = new(0.0)
    session.receive_data(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 1.0)  # 400, half-closed
    assert session.shutdown(2.0) == ()


# Bad input behind good messages


def test_failure_waits_until_the_messages_before_it_are_read():
    session = opened(0.0, open_timeout=None, ping_interval=None, close_timeout=5)
    actions = session.receive_data(text("one") + frame(0x5, b"reserved") + text("never"), 1.0)
    assert kinds(actions) == [WakeReceiver, PauseReading, ArmTimer]
    assert timers(actions) == [6.0] and session.next_deadline() == 6.0
    assert written(actions) == b""  # no close frame yet: answer "one" first
    assert not session.reading
    assert session.next_message(2.0) == ("one", ())
    message, actions = session.next_message(2.0)  # recv() is back: fail now
    assert message is None
    assert close_code(written(actions)) == 1002
    assert notified(actions).code == 1002
    assert HalfCloseTCP in kinds(actions) and ResumeReading in kinds(actions)
    assert session.reading and session.next_deadline() == 7.0
    with pytest.raises(ConnectionClosedError) as raised:
        session.next_message(2.0)
    assert raised.value.code == 1002
    assert kinds(session.receive_eof(3.0)) == [CloseTCP]


def test_failure_waits_behind_a_message_of_an_earlier_read_until_recv_is_back():
    """Finding F10: the message came in one read, the bad frame in the next, before
    the handler answered the message (it took it, or has not yet)."""
    for handler_took_it in (False, True):
        session = opened(0.0, open_timeout=None, ping_interval=None, close_timeout=5)
        assert kinds(session.receive_data(text("one"), 1.0)) == [WakeReceiver]
        if handler_took_it:
            assert session.next_message(1.0) == ("one", ())
        actions = session.receive_data(frame(0x5, b"reserved"), 2.0)
        assert kinds(actions) == [PauseReading, ArmTimer] and timers(actions) == [7.0]
        assert written(actions) == b""  # the answer to "one" goes first
        if not handler_took_it:
            assert session.next_message(3.0) == ("one", ())
        message, actions = session.next_message(3.0)  # back with the queue empty
        assert message is None and close_code(written(actions)) == 1002
        assert notified(actions).code == 1002


def test_the_fail_deadline_fails_bad_input_the_handler_does_not_reach():
    session = opened(0.0, open_timeout=None, ping_interval=None, close_timeout=5)
    session.receive_data(text("one") + frame(0x5, b"reserved"), 1.0)
    assert session.on_timer(5.0) == (ArmTimer(6.0),)
    actions = session.on_timer(6.0)
    assert close_code(written(actions)) == 1002 and notified(actions).code == 1002
    assert before(actions, Write, HalfCloseTCP) and ResumeReading in kinds(actions)
    assert timers(actions) == [11.0] and session.reading
    assert session.next_message(7.0) == ("one", ())  # still there to read
    with pytest.raises(ConnectionClosedError):
        session.next_message(7.0)
    assert kinds(session.on_timer(11.0)) == [AbortTCP]


def test_once_recv_waits_bad_input_fails_at_once():
    session = opened()
    session.receive_data(text("one"), 1.0)
    session.next_message(1.0)
    assert session.next_message(1.0) == (None, ())  # recv() waits, nothing is pending
    actions = session.receive_data(frame(0x5, b"reserved"), 2.0)
    assert close_code(written(actions)) == 1002
    assert NotifyClosed in kinds(actions) and HalfCloseTCP in kinds(actions)


def test_closing_with_a_failure_pending_sends_the_failure_code():
    session = opened()
    session.receive_data(text("one") + frame(0x1, b"\xff"), 1.0)
    actions = session.handler_returned(2.0)
    assert close_code(written(actions)) == 1007
    assert notified(actions).code == 1007 and HalfCloseTCP in kinds(actions)


def test_the_peers_eof_with_a_failure_pending_ends_recv():
    """The peer ends TCP while bad input waits behind a message: recv() gives the
    message, then raises; no deadline is left on the ended session."""
    session = opened()
    session.receive_data(text("one") + frame(0x5, b"reserved"), 1.0)
    actions = session.receive_eof(2.0)
    assert kinds(actions) == [NotifyClosed, CloseTCP] and session.ended
    assert session.next_message(3.0) == ("one", ())
    with pytest.raises(ConnectionClosedError) as raised:
        session.next_message(3.0)
    assert raised.value.code == 1006
    assert session.next_deadline() is None
    assert session.on_timer(50.0) == ()
    assert session.handler_returned(51.0) == ()


def test_shutdown_with_a_failure_pending_sends_the_failure_code():
    session = opened()
    session.receive_data(text("one") + frame(0x5, b"reserved"), 1.0)
    actions = session.shutdown(2.0)
    assert close_code(written(actions)) == 1002
