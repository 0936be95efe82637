"""Per-route policy (core.policy): converters, option overrides, handshake rate limits."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from websockets_routes import Router
from websockets_routes.core import Accept, Respond, ServerOptions
from websockets_routes.core.policy import RateLimiter, client_host

from .test_resolve import handshake, run


async def view(ws: Any, path: Any) -> None:
    pass


def resolve(router: Router, target: str, now: float = 0.0, **kw: Any) -> Any:
    kw.setdefault("remote_address", ("10.0.0.1", 40000))
    return run(router.resolve(handshake(target, **kw), now=now))


# Converters


def test_params_hold_converted_values() -> None:
    router = Router()
    router.route("/items/{id}/{key}", convert={"id": int, "key": uuid.UUID})(view)
    key = uuid.uuid4()
    path = router.match(f"/items/42/{key}?x=1")
    assert path is not None and path.params == {"id": 42, "key": key}
    decision = resolve(router, f"/items/42/{key}")
    assert isinstance(decision, Accept) and decision.path.params == {"id": 42, "key": key}


def test_a_failing_conversion_falls_through_to_the_next_route_else_404() -> None:
    router = Router()
    router.route("/u/{id}", name="by_id", convert={"id": int})(view)
    router.route("/u/{name:[a-z]+}", name="by_name")(view)
    assert router.match("/u/7").name == "by_id"  # type: ignore[union-attr]
    assert router.match("/u/bob").name == "by_name"  # type: ignore[union-attr]
    assert router.match("/u/B0B") is None
    decision = resolve(router, "/u/B0B")
    assert isinstance(decision, Respond) and decision.status == 404
    decision = resolve(router, "/u/bob")
    assert isinstance(decision, Accept) and decision.path.params == {"name": "bob"}


def test_fall_through_skips_routes_whose_converter_fails_too() -> None:
    router = Router()
    router.route("/v/{x}", name="int", convert={"x": int})(view)
    router.route("/v/{x:[0-9.e+-]+}", name="float", convert={"x": float})(view)
    router.route("/v/*rest", name="rest")(view)
    assert router.match("/v/3").params == {"x": 3}  # type: ignore[union-attr]
    assert router.match("/v/3.5").params == {"x": 3.5}  # type: ignore[union-attr]
    assert router.match("/v/1e+e").name == "rest"  # type: ignore[union-attr]


def test_a_converter_raising_anything_else_is_a_500_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(value: str) -> Any:
        raise KeyError(value)

    router = Router()
    router.route("/b/{x}", convert={"x": broken})(view)
    with caplog.at_level(logging.ERROR, "websockets_routes"):
        decision = resolve(router, "/b/1")
    assert isinstance(decision, Respond) and decision.status == 500
    assert "converter of 'x'" in caplog.text


def test_http_routes_convert_too() -> None:
    router = Router()

    @router.http("/h/{n}", convert={"n": int})
    async def page(request: Any) -> str:
        return repr(request.path.params["n"])

    decision = run(router.resolve(handshake("/h/5")))
    assert isinstance(decision, Respond) and decision.body == b"5"
    assert run(router.resolve(handshake("/h/x"))).status == 404


@given(st.integers(), st.text(min_size=1).filter(lambda s: "\x00" not in s))
def test_url_for_round_trips_converted_values(number: int, text: str) -> None:
    router = Router()
    router.route("/n/{n}/{s}", name="n", convert={"n": int, "s": str})(view)
    path = router.match(router.url_for("n", n=number, s=text))
    assert path is not None and path.params == {"n": number, "s": text}


def test_routes_show_the_converters() -> None:
    router = Router()
    router.route("/c/{id}", convert={"id": int}, max_size=10, rate_limit=(3, 60))(view)
    (route,) = router.routes
    assert route.policy is not None
    assert route.policy.describe() == "id:int,max_size=10,rate_limit=3/60s"
    assert "id:int" in repr(route)


def test_routes_without_policy_carry_none() -> None:
    router = Router()
    router.route("/plain/{x}")(view)
    assert router.routes[0].policy is None
    assert router.match("/plain/1").policy is None  # type: ignore[union-attr]


def test_mounted_routes_keep_their_policy() -> None:
    inner = Router(rate_limit=(1, 10))
    inner.route("/{id}", convert={"id": int})(view)
    outer = Router()
    outer.include("/api", inner)
    assert outer.match("/api/3").params == {"id": 3}  # type: ignore[union-attr]
    decision = resolve(outer, "/api/3")
    assert isinstance(decision, Accept) and decision.path.params == {"id": 3}
    assert resolve(outer, "/api/3", now=1.0).status == 429


# Errors at decoration


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"convert": {"id": 5}}, TypeError, "not callable"),
        ({"convert": {"nope": int}}, ValueError, "'nope', which is not a param"),
        ({"convert": [("id", int)]}, TypeError, "convert must be a dict"),
        ({"rate_limit": (0, 1)}, ValueError, "count must be an int >= 1"),
        ({"rate_limit": (-1, 1)}, ValueError, "count must be an int >= 1"),
        ({"rate_limit": (1, 0)}, ValueError, "window must be seconds > 0"),
        ({"rate_limit": (1, -2.5)}, ValueError, "window must be seconds > 0"),
        ({"rate_limit": 5}, TypeError, "(count, seconds)"),
        ({"rate_limit_key": "x", "rate_limit": (1, 1)}, TypeError, "rate_limit_key must be"),
        ({"rate_limit_key": client_host}, ValueError, "without a rate_limit"),
        ({"max_size": -1}, ValueError, "max_size must be"),
        ({"max_queue": 0}, ValueError, "max_queue must be at least 1"),
        ({"compression": "gzip"}, ValueError, "compression must be"),
        ({"ping_interval": 0}, ValueError, "ping_interval must be > 0"),
        ({"ping_timeout": "1"}, ValueError, "ping_timeout must be"),
        ({"max_sise": 5}, TypeError, "max_sise"),
    ],
)
def test_bad_policy_is_an_error_at_decoration(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    router = Router()
    with pytest.raises(error) as info:
        router.route("/t/{id}", **kwargs)(view)
    assert message in str(info.value)
    assert router.routes == []


def test_an_http_route_takes_no_limit_or_options() -> None:
    router = Router()
    with pytest.raises(TypeError):
        router.http("/h", rate_limit=(1, 1))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="Router: rate_limit count"):
        Router(rate_limit=(0, 1))


# Options


def test_options_inherit_unless_set_and_none_means_none() -> None:
    router = Router()
    router.route("/big", max_size=None, compression=False, ping_interval=None)(view)
    router.route("/same")(view)
    server = ServerOptions(max_size=100, ping_interval=5.0)
    big = router.routes[0].policy
    assert big is not None and router.routes[1].policy is None
    merged = big.options(server)
    assert merged.max_size is None and merged.compression is None
    assert merged.ping_interval is None and merged.ping_timeout == server.ping_timeout
    assert big.options(server) is merged  # merged once per server
    assert big.options(ServerOptions()) is not merged


def test_session_uses_the_route_options_from_the_answer() -> None:
    from websockets_routes.core import Session

    router = Router()
    router.route("/small", max_size=8, compression=None, max_queue=2)(view)
    session = Session(ServerOptions(), ("10.0.0.1", 1), 0.0)
    request = (
        b"GET /small HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )
    session.receive_data(request, 0.0)
    decision = session.resolve_now(router)
    actions = session.carry_out(decision, 0.0)
    written = b"".join(a.data for a in actions if hasattr(a, "data"))
    assert written.startswith(b"HTTP/1.1 101") and b"permessage-deflate" not in written
    assert session.options.max_size == 8 and session.options.max_queue == 2
    # A 9-byte text message (masked, key 0): over max_size, closed with 1009.
    frame = b"\x81\x89\x00\x00\x00\x00" + b"123456789"
    session.receive_data(frame, 0.1)
    assert session.conn.close_sent is not None and session.conn.close_sent[0] == 1009


# Rate limits


def test_limiter_sliding_window_with_a_fake_clock() -> None:
    limiter = RateLimiter(2, 10.0)
    assert limiter.hit("a", 0.0) == 0
    assert limiter.hit("a", 4.0) == 0
    assert limiter.hit("a", 5.0) == 5  # the first of the two leaves the window at 10
    assert limiter.hit("a", 9.5) == 1  # half a second: still a whole second, >= 1
    assert limiter.hit("b", 9.5) == 0  # per client
    assert limiter.hit("a", 10.0) == 0  # the one of 0.0 is out, refused ones never counted
    assert limiter.hit("a", 13.9) == 1


def test_limiter_state_is_bounded_under_a_flood_of_clients() -> None:
    limiter = RateLimiter(1, 60.0, max_clients=1000)
    for n in range(1_000_000):
        limiter.hit(n, 0.0)
    assert len(limiter) == 1000
    assert limiter.hit(999_999, 1.0) > 0  # the most recent are remembered
    assert limiter.hit(0, 1.0) == 0  # the oldest forgotten first


def test_third_handshake_in_the_window_gets_429_with_retry_after() -> None:
    router = Router()
    router.route("/limited", rate_limit=(2, 30))(view)
    router.route("/free")(view)
    assert isinstance(resolve(router, "/limited", 0.0), Accept)
    assert isinstance(resolve(router, "/limited", 1.0), Accept)
    refused = resolve(router, "/limited", 2.0)
    assert isinstance(refused, Respond) and refused.status == 429
    assert dict(refused.headers)["Retry-After"] == "28"
    assert isinstance(resolve(router, "/limited", 2.0, remote_address=("10.0.0.2", 1)), Accept)
    assert isinstance(resolve(router, "/free", 2.0), Accept)
    assert isinstance(resolve(router, "/limited", 30.0), Accept)


def test_unknown_clients_and_none_keys_are_not_limited() -> None:
    router = Router()
    router.route("/a", rate_limit=(1, 30))(view)
    router.route(
        "/b", rate_limit=(1, 30), rate_limit_key=lambda r: r.headers.get("X-Forwarded-For")
    )(view)
    for _ in range(3):
        assert isinstance(resolve(router, "/a", remote_address=None), Accept)
        assert isinstance(resolve(router, "/b"), Accept)  # no header: key None


def test_router_default_and_the_route_opt_out() -> None:
    router = Router(rate_limit=(1, 30))
    router.route("/default")(view)
    router.route("/own", rate_limit=(2, 30))(view)
    router.route("/open", rate_limit=False)(view)
    assert isinstance(resolve(router, "/default"), Accept)
    assert resolve(router, "/default").status == 429
    assert isinstance(resolve(router, "/own"), Accept)
    assert isinstance(resolve(router, "/own"), Accept)
    assert resolve(router, "/own").status == 429
    for _ in range(3):
        assert isinstance(resolve(router, "/open"), Accept)


def test_resolve_without_now_reads_the_router_clock() -> None:
    times = iter([0.0, 0.5, 100.0])
    router = Router(clock=lambda: next(times))
    router.route("/r", rate_limit=(1, 10))(view)
    request = handshake("/r", remote_address=("10.0.0.1", 1))
    assert isinstance(run(router.resolve(request)), Accept)
    assert run(router.resolve(handshake("/r", remote_address=("10.0.0.1", 2)))).status == 429
    assert isinstance(run(router.resolve(handshake("/r", remote_address=("10.0.0.1", 3)))), Accept)


def test_the_limit_is_checked_before_the_hook() -> None:
    calls: list[str] = []
    router = Router()

    @router.route("/hooked", rate_limit=(1, 30))
    class Hooked:
        async def process_request(self, path: Any, headers: Any) -> None:
            calls.append(str(path))

        async def handle(self, ws: Any, path: Any) -> None:
            pass

    assert isinstance(resolve(router, "/hooked"), Accept)
    assert resolve(router, "/hooked").status == 429
    assert calls == ["/hooked"]


def test_decide_is_not_limited() -> None:
    router = Router()
    router.route("/d", rate_limit=(1, 30))(view)
    for _ in range(3):
        assert isinstance(router.decide(handshake("/d", remote_address=("1.1.1.1", 1))), Accept)


def test_client_host() -> None:
    assert client_host(handshake("/", remote_address=("::1", 5, 0, 0))) == "::1"
    assert client_host(handshake("/", remote_address="/tmp/sock")) == "/tmp/sock"
    assert client_host(handshake("/")) is None


def test_a_converter_costs_one_call_per_converted_param_per_match() -> None:
    calls: list[str] = []

    def counted(value: str) -> int:
        calls.append(value)
        return int(value)

    router = Router()
    router.route("/c/{a}/{b}/{c}", convert={"a": counted, "b": counted})(view)
    router.route("/plain/{x}")(view)
    for _ in range(3):
        assert router.match("/c/1/2/3").params == {"a": 1, "b": 2, "c": "3"}  # type: ignore[union-attr]
        assert isinstance(router.decide(handshake("/c/1/2/3")), Accept)
        router.match("/plain/1")
    assert calls == ["1", "2"] * 6


def test_session_keepalive_follows_the_route() -> None:
    from websockets_routes.core import Session

    router = Router()
    router.route("/pinged", ping_interval=2.0, ping_timeout=1.0)(view)
    router.route("/quiet")(view)
    request = (
        b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    server = ServerOptions(ping_interval=None, open_timeout=None)
    deadlines = {}
    for target in ("/pinged", "/quiet"):
        session = Session(server, ("10.0.0.1", 1), 0.0)
        session.receive_data(request % target.encode(), 0.0)
        session.carry_out(session.resolve_now(router), 10.0)
        deadlines[target] = session.next_deadline()
    assert deadlines == {"/pinged": 12.0, "/quiet": None}


def test_repeated_targets_convert_the_text_each_time() -> None:
    # uuid.UUID(a UUID) raises: converting a value twice would fall through to 404.
    router = Router()
    router.route("/k/{key}", convert={"key": uuid.UUID})(view)
    key = uuid.uuid4()
    for _ in range(50):
        assert router.match(f"/k/{key}").params == {"key": key}  # type: ignore[union-attr]
        decision = router.decide(handshake(f"/k/{key}"))
        assert isinstance(decision, Accept) and decision.path.params == {"key": key}
