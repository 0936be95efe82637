"""core.drain and Session.shutdown(now, code=, at=): what ``server.close(drain=N)``
means for each connection, as actions, with explicit times and no I/O."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from tests.transports.helpers import close, handshake, parse_frames
from websockets_routes import Router
from websockets_routes.core import ServerShutdown, check_drain, drain_schedule
from websockets_routes.core.actions import (
    AbortTCP,
    Action,
    ArmTimer,
    CancelHandler,
    CancelResolve,
    CloseTCP,
    NotifyClosed,
    Resolve,
    StartHandler,
    Write,
)
from websockets_routes.core.connection import State
from websockets_routes.core.options import ServerOptions
from websockets_routes.core.session import Session

router = Router()


@router.route("/echo")
async def echo(ws, path):  # pragma: no cover - never run here
    pass


QUIET = {"open_timeout": None, "ping_interval": None, "close_timeout": 5}


def new(now: float = 0.0, **options: Any) -> Session:
    return Session(ServerOptions(**{**QUIET, **options}), ("10.0.0.1", 4000), now)


def deciding(now: float = 0.0, **options: Any) -> Session:
    session = new(now, **options)
    actions = session.receive_data(handshake("/echo"), now)
    assert [type(action) for action in actions] == [Resolve]
    return session


def opened(now: float = 0.0, **options: Any) -> Session:
    session = deciding(now, **options)
    actions = session.carry_out(session.resolve_now(router), now)
    assert StartHandler in kinds(actions) and session.state is State.OPEN
    return session


def kinds(actions: tuple[Action, ...]) -> list[type]:
    return [type(action) for action in actions]


def written(actions: tuple[Action, ...]) -> bytes:
    return b"".join(action.data for action in actions if type(action) is Write)


def close_code(data: bytes) -> int:
    b0, _, payload = parse_frames(data)[-1]
    assert b0 == 0x88, f"last frame is {b0:#x}, not a close frame"
    return struct.unpack("!H", payload[:2])[0]


def timers(actions: tuple[Action, ...]) -> list[float]:
    return [action.at for action in actions if type(action) is ArmTimer]


# The schedule


def test_the_schedule_spreads_closes_evenly_and_ends_at_the_drains_end():
    assert drain_schedule(4, 0.6, 10.0) == pytest.approx([10.15, 10.3, 10.45, 10.6])
    assert drain_schedule(1, 5.0, 2.0) == [7.0]
    assert drain_schedule(0, 5.0, 2.0) == []
    assert drain_schedule(3, 0, 2.0) == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("drain", [-1, -0.001, math.inf, -math.inf, math.nan])
def test_a_drain_must_be_a_finite_duration(drain):
    with pytest.raises(ValueError, match="drain must be a finite number of seconds >= 0"):
        check_drain(drain)
    with pytest.raises(ValueError):
        ServerShutdown(drain, 0.0)
    with pytest.raises(ValueError):
        drain_schedule(2, drain, 0.0)


@pytest.mark.parametrize("drain", ["10", True, [1]])
def test_a_drain_must_be_a_number(drain):
    with pytest.raises(TypeError, match="drain must be a number of seconds or None"):
        check_drain(drain)


def test_check_drain_gives_seconds_as_float():
    assert check_drain(None) is None
    assert check_drain(0) == 0.0 and type(check_drain(2)) is float


def test_close_without_a_drain_is_1001_at_once():
    plan = ServerShutdown(None, 3.0)
    assert (plan.code, plan.ends) == (1001, 3.0)
    assert plan.moments(2) == [None, None]
    assert plan.give_up_at(5) == 13.0 and plan.give_up_at(None) is None


def test_a_drain_is_1012_spread_over_its_seconds():
    plan = ServerShutdown(2, 3.0)
    assert (plan.code, plan.ends) == (1012, 5.0)
    assert plan.moments(4) == [3.5, 4.0, 4.5, 5.0]
    assert plan.give_up_at(5) == 15.0  # after the last close, not after the start


def test_apply_arms_each_session_at_its_moment():
    plan = ServerShutdown(3, 1.0)
    sessions = [opened() for _ in range(3)]
    results = plan.apply(sessions, 1.0)
    assert results == [(ArmTimer(2.0),), (ArmTimer(3.0),), (ArmTimer(4.0),)]
    for session, at in zip(sessions, (2.0, 3.0, 4.0), strict=True):
        assert session.state is State.OPEN and session.next_deadline() == at
        assert close_code(written(session.on_timer(at))) == 1012


def test_apply_without_a_drain_closes_every_session_at_once():
    sessions = [opened() for _ in range(2)]
    for actions in ServerShutdown(None, 1.0).apply(sessions, 1.0):
        assert close_code(written(actions)) == 1001


def test_a_drain_of_zero_closes_every_session_at_once_with_1012():
    sessions = [opened() for _ in range(3)]
    for actions in ServerShutdown(0, 1.0).apply(sessions, 1.0):
        assert close_code(written(actions)) == 1012


def test_moments_already_past_close_at_once():
    """The transport applies the plan a little after close() began it."""
    sessions = [opened() for _ in range(2)]
    first, second = ServerShutdown(1, 1.0).apply(sessions, 1.6)
    assert close_code(written(first)) == 1012  # its moment, 1.5, is past
    assert first and timers(second) == [2.0] and written(second) == b""


def test_a_connection_accepted_once_closing_is_closed_at_once():
    plan = ServerShutdown(10, 1.0)
    assert kinds(plan.late(new(1.2), 1.2)) == [NotifyClosed, AbortTCP]  # still no request
    session = deciding(1.2)
    assert plan.late(session, 1.2) == (ArmTimer(6.2),)  # a hook's grace
    actions = session.carry_out(session.resolve_now(router), 1.3)
    assert StartHandler not in kinds(actions)
    head, _, frames = written(actions).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ") and close_code(frames) == 1012


# One session draining


def test_a_drained_connection_lives_on_until_its_moment_then_closes_1012():
    session = opened(0.0)
    assert session.shutdown(1.0, code=1012, at=3.0) == (ArmTimer(3.0),)
    assert session.state is State.OPEN and session.next_deadline() == 3.0
    assert session.send("still here")  # the handler goes on as usual
    assert session.on_timer(2.9) == (ArmTimer(3.0),)  # early: nothing due
    actions = session.on_timer(3.0)
    assert close_code(written(actions)) == 1012
    assert timers(actions) == [8.0]  # close_timeout, from the close
    assert not set(kinds(actions)) & {CloseTCP, AbortTCP}
    assert kinds(session.receive_data(close(1012), 3.1)) == [NotifyClosed, CloseTCP]
    assert session.close_code == 1012


def test_the_handler_grace_starts_from_the_connections_close_not_the_drain():
    session = opened(0.0)
    session.shutdown(1.0, code=1012, at=3.0)
    session.on_timer(3.0)
    session.receive_data(close(1012), 3.5)  # TCP over; the handler ignores it all
    assert session.ended and session.next_deadline() == 8.0  # 3.0 + close_timeout
    assert session.on_timer(6.0) == (ArmTimer(8.0),)  # 1.0 + close_timeout: not yet
    assert session.on_timer(8.0) == (CancelHandler(),)
    assert session.handler_cancelled(8.1) == () and session.next_deadline() is None


def test_a_handler_that_ends_before_its_moment_closes_1000():
    session = opened(0.0)
    session.shutdown(1.0, code=1012, at=3.0)
    actions = session.handler_returned(2.0)
    assert close_code(written(actions)) == 1000
    assert kinds(session.receive_data(close(1000), 2.1)) == [NotifyClosed, CloseTCP]
    assert session.close_code == 1000 and session.next_deadline() is None
    assert session.on_timer(3.0) == ()


def test_a_peer_that_leaves_before_its_moment_needs_no_drain():
    session = opened(0.0)
    session.shutdown(1.0, code=1012, at=3.0)
    session.receive_data(close(1000), 2.0)
    assert written(session.handler_returned(2.1)) == b""
    assert session.next_deadline() is None


def test_a_handler_outliving_its_tcp_is_still_cancelled_after_its_moment():
    session = opened(0.0)
    session.shutdown(1.0, code=1012, at=3.0)
    assert kinds(session.receive_eof(2.0)) == [NotifyClosed, CloseTCP]
    assert session.next_deadline() == 3.0  # the handler still runs
    assert session.on_timer(3.0) == (ArmTimer(8.0),)
    assert session.on_timer(8.0) == (CancelHandler(),)


def test_the_timer_is_armed_for_the_moment_only_when_it_comes_first():
    session = opened(0.0, ping_interval=1.0, ping_timeout=5.0)  # keepalive due at 1.0
    assert session.shutdown(0.5, code=1012, at=3.0) == ()  # the timer fires earlier
    ping = session.on_timer(1.0)
    ((opcode, _, _),) = parse_frames(written(ping))
    assert opcode == 0x89 and timers(ping) == [3.0]  # the moment is before the pong's 6.0
    actions = session.on_timer(3.0)
    assert close_code(written(actions)) == 1012 and session.state is State.CLOSING


def test_a_later_shutdown_only_moves_the_moment_earlier():
    session = opened(0.0)
    assert session.shutdown(1.0, code=1012, at=5.0) == (ArmTimer(5.0),)
    assert session.shutdown(1.0, code=1012, at=6.0) == ()
    assert session.shutdown(1.0, code=1012, at=3.0) == (ArmTimer(3.0),)
    assert session.next_deadline() == 3.0
    actions = session.shutdown(2.0)  # close() at once: 1001 now, no drain left
    assert close_code(written(actions)) == 1001
    assert session.next_deadline() == 7.0  # the close's and the grace's, not 3.0
    assert session.shutdown(2.5, code=1012, at=4.0) == ()


def test_a_closed_connection_is_not_drained():
    session = opened(0.0)
    session.handler_returned(0.5)
    session.receive_data(close(1000), 0.6)
    assert session.shutdown(1.0, code=1012, at=3.0) == ()
    assert session.next_deadline() is None


# Handshakes in progress when the drain starts


def test_a_handshake_decided_before_its_moment_runs_its_handler_until_then():
    session = deciding(0.0)
    assert session.shutdown(1.0, code=1012, at=3.0) == (ArmTimer(3.0),)
    actions = session.carry_out(session.resolve_now(router), 2.0)
    assert StartHandler in kinds(actions) and session.state is State.OPEN
    assert close_code(written(session.on_timer(3.0))) == 1012


def test_a_handshake_still_deciding_at_its_moment_gets_its_answer_then_1012():
    session = deciding(0.0)
    session.shutdown(1.0, code=1012, at=3.0)
    assert session.on_timer(3.0) == (ArmTimer(8.0),)  # the hook's grace, from 3.0
    actions = session.carry_out(session.resolve_now(router), 4.0)
    assert StartHandler not in kinds(actions)
    head, _, frames = written(actions).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ") and close_code(frames) == 1012


def test_a_hook_still_deciding_past_its_grace_is_given_up():
    session = deciding(0.0)
    session.shutdown(1.0, code=1012, at=3.0)
    session.on_timer(3.0)
    assert kinds(session.on_timer(8.0)) == [CancelResolve, NotifyClosed, AbortTCP]
    assert session.ended


def test_a_request_still_arriving_at_its_moment_is_dropped():
    session = new(0.0)
    session.receive_data(b"GET /echo HTTP/1.1\r\n", 0.5)
    assert session.shutdown(1.0, code=1012, at=3.0) == (ArmTimer(3.0),)
    assert kinds(session.on_timer(3.0)) == [NotifyClosed, AbortTCP]
    assert session.ended and session.next_deadline() is None


def test_a_request_completed_before_its_moment_is_served_until_then():
    session = new(0.0)
    session.shutdown(1.0, code=1012, at=3.0)
    assert kinds(session.receive_data(handshake("/echo"), 1.5)) == [Resolve]
    session.carry_out(session.resolve_now(router), 1.5)
    assert session.state is State.OPEN
    assert close_code(written(session.on_timer(3.0))) == 1012
