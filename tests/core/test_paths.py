"""Request targets (core.paths): the query string apart, per-segment percent-decoding,
targets that cannot be routed, and RoutedPath."""

from __future__ import annotations

from typing import Any

import pytest

from websockets_routes import RoutedPath, Router
from websockets_routes.core import Headers


async def view(ws: Any, path: RoutedPath) -> None:
    pass


def test_query_string_never_takes_part_in_matching() -> None:
    router = Router()
    router.route("/a")(view)
    router.route("/b/{id}")(view)
    assert router.match("/a?") is not None
    assert router.match("/a?b/c") is not None
    found = router.match("/b/1?id=2")
    assert found is not None and found.params == {"id": "1"} and found.query == "id=2"
    assert router.match("/?a") is None


def test_params_are_percent_decoded_per_segment() -> None:
    router = Router()
    router.route("/thing/{id}")(view)
    router.route("/files/*rest")(view)
    router.route("/caf\u00e9/{x}")(view)
    assert router.match("/thing/a%20b").params == {"id": "a b"}  # type: ignore[union-attr]
    assert router.match("/thing/a%2Fb").params == {"id": "a/b"}  # type: ignore[union-attr]
    assert router.match("/thing/a%2fb/c") is None  # %2F never splits a segment
    assert router.match("/thing/%E2%82%AC").params == {"id": "\u20ac"}  # type: ignore[union-attr]
    assert router.match("/thing/a+b").params == {"id": "a+b"}  # type: ignore[union-attr]
    assert router.match("/files/a%2Fb/c%20d").params == {"rest": "a/b/c d"}  # type: ignore[union-attr]
    assert router.match("/caf%C3%A9/1").params == {"x": "1"}  # type: ignore[union-attr]
    assert router.match("/%74hing/1") is not None  # static text matches decoded too


@pytest.mark.parametrize(
    "target",
    ["thing/1", "", "http://host/thing/1", "/thing/%zz", "/thing/%ff", "/thing/a b", "/thing/1#f"],
)
def test_unroutable_targets_do_not_match(target: str) -> None:
    router = Router()
    router.route("/thing/{id}")(view)
    router.route("/{any:.*}")(view)
    assert router.match(target) is None


def test_routed_path_attributes() -> None:
    router = Router()
    router.route("/thing/{id}", name="thing")(view)
    target = "/thing/a%20b?x=1&y=%20"
    found = router.match(target)
    assert isinstance(found, RoutedPath) and isinstance(found, str)
    assert str(found) == target and found == target
    assert found.params == {"id": "a b"}
    assert found.query == "x=1&y=%20"
    assert found.name == "thing"
    assert found.template == "/thing/{id}"
    assert found.context == {}
    assert found.route.handle is view
    plain = router.match("/thing/1")
    assert plain is not None and plain.query == "" and str(plain) == "/thing/1"


def test_routed_path_made_by_hand_and_pickled() -> None:
    import pickle

    path = RoutedPath("/a/1?q=2", {"x": "1"}, name="a", template="/a/{x}", context={"k": 1})
    assert (path.params, path.name, path.template, path.context, path.query) == (
        {"x": "1"},
        "a",
        "/a/{x}",
        {"k": 1},
        "q=2",
    )
    bare = RoutedPath("/b")
    assert (bare.params, bare.context, bare.route, bare.name, bare.query) == (
        {},
        {},
        None,
        None,
        "",
    )
    bare.context = {"replaced": True}
    assert bare.context == {"replaced": True}
    copy = pickle.loads(pickle.dumps(path))
    assert copy == path and copy.params == path.params and copy.context == {"k": 1}
    assert copy.name == "a" and copy.query == "q=2"
    assert "params={'x': '1'}" in repr(path)


def test_0_2_compatibility_helpers() -> None:
    headers = Headers([("X-A", "1"), ("x-a", "2")])
    assert headers.raw_items() == [("X-A", "1"), ("x-a", "2")]
    path = RoutedPath.create("/thing/1?q", object(), {"id": "1"})
    assert str(path) == "/thing/1?q" and path.params == {"id": "1"} and path.query == "q"
    assert path.context == {}
