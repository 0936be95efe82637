"""Matching, through the Router: static and dynamic routes, first registered wins (the
indexed matcher of core.matcher keeps that order), routes added later are live at once."""

from __future__ import annotations

from typing import Any

from websockets_routes import RoutedPath, Router


async def view(ws: Any, path: RoutedPath) -> None:
    pass


async def other_view(ws: Any, path: RoutedPath) -> None:
    pass


def test_static_and_dynamic_matches() -> None:
    router = Router()
    router.route("/static/page")(view)
    router.route("/thing/{id}", name="thing")(other_view)
    static = router.match("/static/page")
    assert static is not None and static.params == {} and static.route.handle is view
    found = router.match("/thing/42")
    assert found is not None
    assert found.params == {"id": "42"} and found.name == "thing"
    assert found.route.handle is other_view
    assert router.match("/thing") is None
    assert router.match("/static/page/") is None
    assert router.match("/nothing") is None


def test_first_registered_route_wins() -> None:
    router = Router()
    router.route("/users/{id}", name="dynamic")(view)
    router.route("/users/me", name="static")(view)
    router.route("/users/{id:\\d+}", name="digits")(view)
    router.route("/{any:.*}", name="tail")(view)
    assert router.match("/users/me").name == "dynamic"  # type: ignore[union-attr]
    assert router.match("/users/7").name == "dynamic"  # type: ignore[union-attr]
    assert router.match("/users/7/x").name == "tail"  # type: ignore[union-attr]


def test_static_wins_when_registered_first() -> None:
    router = Router()
    router.route("/users/me", name="static")(view)
    router.route("/users/{id}", name="dynamic")(view)
    assert router.match("/users/me").name == "static"  # type: ignore[union-attr]
    assert router.match("/users/you").name == "dynamic"  # type: ignore[union-attr]


def test_routes_added_later_are_live_at_once_and_lose_ties() -> None:
    router = Router()
    router.route("/a/{x}", name="first")(view)
    assert router.match("/b/1") is None
    assert router.match("/a/1").name == "first"  # type: ignore[union-attr]
    router.route("/b/{x}", name="b")(view)
    router.route("/a/{y}", name="second")(view)
    router.route("/{t:.*}", name="tail")(view)
    assert router.match("/b/1").name == "b"  # type: ignore[union-attr]
    assert router.match("/a/1").name == "first"  # type: ignore[union-attr]
    assert router.match("/c").name == "tail"  # type: ignore[union-attr]
    early = Router()
    early.route("/{t:.*}", name="tail")(view)
    early.route("/a", name="static")(view)
    assert early.match("/a").name == "tail"  # type: ignore[union-attr]
