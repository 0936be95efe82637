"""decide() is pure: it leaves the request alone and makes no view; resolve() makes it."""

from __future__ import annotations

from typing import Any

from websockets_routes import Router
from websockets_routes.core import Accept, Request, RoutedPath, ServeHTTP

from .test_resolve import handshake, run


def counting_router() -> tuple[Router, list[Any]]:
    made: list[Any] = []
    router = Router()

    @router.route("/room/{room}", name="room")
    class Room:
        def __init__(self) -> None:
            made.append(self)

        async def handle(self, ws: Any, path: RoutedPath) -> None:
            pass

    @router.http("/health")
    async def health(request: Request) -> str:
        return "ok"

    return router, made


def test_decide_neither_changes_the_request_nor_makes_a_view() -> None:
    router, made = counting_router()
    for target in ("/room/1", "/health", "/nope"):
        request = handshake(target)
        first = router.decide(request)
        assert request.path is None
        assert made == []
        assert router.decide(request) == first  # same request in, equal decision out
        assert request.path is None and made == []
    assert isinstance(router.decide(handshake("/health")), ServeHTTP)


def test_route_is_made_on_first_read_once_per_routed_path() -> None:
    router, made = counting_router()
    one, two = router.decide(handshake("/room/1")), router.decide(handshake("/room/1"))
    assert isinstance(one, Accept) and isinstance(two, Accept)
    assert made == []
    assert one.path.route is one.path.route  # kept once made
    assert made == [one.path.route]
    assert two.path.route is not one.path.route  # a new instance per connection
    assert made == [one.path.route, two.path.route]


def test_match_makes_no_view_until_route_is_read() -> None:
    router, made = counting_router()
    path = router.match("/room/7?x=1")
    assert path is not None and made == []
    view = path.route
    assert made == [view]


def test_resolve_makes_the_view_and_routes_the_request() -> None:
    router, made = counting_router()
    request = handshake("/room/2")
    decision = run(router.resolve(request))
    assert isinstance(decision, Accept)
    assert made == [decision.path.route]
    assert request.path is decision.path


def test_a_failing_view_constructor_is_a_500_from_resolve_not_decide() -> None:
    router = Router()

    @router.route("/boom")
    class Boom:
        def __init__(self) -> None:
            raise RuntimeError("bad view")

        async def handle(self, ws: Any, path: RoutedPath) -> None:
            pass

    assert isinstance(router.decide(handshake("/boom")), Accept)
    decision = run(router.resolve(handshake("/boom")))
    assert decision.status == 500
