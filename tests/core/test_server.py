"""core.server.BaseServer: what every server keeps once (router, options, limit, the
shutdown plan) and how it starts each connection's session."""

from __future__ import annotations

import pytest

from tests.transports.helpers import handshake
from websockets_routes import Router
from websockets_routes.core import BaseServer, ServerShutdown
from websockets_routes.core.actions import AbortTCP, Resolve

router = Router()


@router.route("/echo")
async def echo(ws, path):  # pragma: no cover - never run here
    pass


def test_options_and_limit_are_checked_once_at_construction() -> None:
    server = BaseServer(router, "127.0.0.1", 0, max_size=10, max_connections=2)
    assert (server.router, server.host, server.requested_port) == (router, "127.0.0.1", 0)
    assert server.options.max_size == 10
    assert server.limit is not None and server.limit.take() and server.limit.take()
    assert not server.limit.take()  # max_connections=2
    unlimited = BaseServer(router).limit  # max_connections=None: never full
    assert all(unlimited.take() for _ in range(10_000))
    with pytest.raises(TypeError, match="max_sise"):
        BaseServer(router, max_sise=10)
    with pytest.raises(ValueError, match="max_connections"):
        BaseServer(router, max_connections=0)
    with pytest.raises(TypeError, match="serve"):
        BaseServer(object())


def test_a_session_of_a_running_server_starts_with_no_actions() -> None:
    server = BaseServer(router, open_timeout=3, ping_interval=None)
    session, actions = server.new_session(("10.0.0.1", 4000), 5.0)
    assert actions == ()
    assert session.next_deadline() == 8.0  # the open timeout, from the server's options
    assert [type(a) for a in session.receive_data(handshake("/echo"), 5.1)] == [Resolve]
    assert session.resolve_now(server.router) is not None


def test_a_connection_accepted_while_closing_is_dropped_at_once() -> None:
    server = BaseServer(router)
    plan = server.begin_shutdown(None, 1.0)
    assert isinstance(plan, ServerShutdown) and server.shutdown is plan
    assert plan.code == 1001
    session, actions = server.new_session(("10.0.0.1", 4000), 2.0)
    assert AbortTCP in [type(a) for a in actions]  # still sending its request
    assert session.ended


def test_begin_shutdown_plans_once_and_checks_the_drain_every_time() -> None:
    server = BaseServer(router)
    with pytest.raises(ValueError, match="drain"):
        server.begin_shutdown(-1.0, 0.0)
    assert server.shutdown is None
    plan = server.begin_shutdown(4.0, 10.0)
    assert plan is not None and plan.code == 1012 and plan.ends == 14.0
    assert server.begin_shutdown(None, 11.0) is None  # closing already: the first plan holds
    assert server.shutdown is plan
    with pytest.raises(ValueError, match="drain"):
        server.begin_shutdown(float("nan"), 12.0)
