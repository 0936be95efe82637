"""Matching, through the Router: static and dynamic routes, first registered wins (the
indexed matcher of core.matcher keeps that order), routes added later are live at once;
and the Matcher itself on tables where every route has a prefix of its own, and the
targets it remembers."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from websockets_routes import RoutedPath, Router
from websockets_routes.core import matcher as matcher_module
from websockets_routes.core.matcher import Matcher
from websockets_routes.core.paths import BadTarget, split_path, split_target
from websockets_routes.core.templates import Template, compile_template, match_segments


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


PREFIXES = ["/svc1", "/svc2", "/svc12", "/api/v1/resource1", "/api/v1/resource2", "/api"]
SHAPES = [
    "/status",
    "/rooms/{id}",
    "/{a}/members/{b}",
    "/items/{id:\\d+}",
    "/files/{rest:.*}",
    "/files/{rest:.+}",
    "/{any}",
    "",
]
VALUES = ["status", "rooms", "members", "items", "files", "v1", "7", "42", "x", "", "a%2Fb"]


def linear(table: list[Template], path: str) -> tuple[int, dict[str, str]] | None:
    segments = split_path(path)
    if segments is None:
        return None
    for index, template in enumerate(table):
        params = match_segments(template.segments, segments, path)
        if params is not None:
            return index, params
    return None


unique_routes = st.lists(
    st.tuples(st.sampled_from(PREFIXES), st.sampled_from(SHAPES)).map("".join),
    min_size=1,
    max_size=25,
)
unique_paths = st.tuples(
    st.sampled_from(PREFIXES), st.lists(st.sampled_from(VALUES), max_size=4)
).map(lambda parts: "/".join([parts[0], *parts[1]]))


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(unique_routes, st.lists(unique_paths, min_size=1, max_size=20), st.integers(0, 25))
def test_prefix_per_route_tables_agree_with_a_linear_scan(
    sources: list[str], queries: list[str], added_late: int
) -> None:
    """Tables shaped like benchmarks/match.py's unique one; every query asked twice
    (the second time the matcher may remember it), through match() and match_target(),
    with some routes added after the first queries."""
    matcher: Matcher[int] = Matcher()
    table: list[Template] = []

    def add(source: str) -> None:
        compiled = compile_template(source)
        matcher.add(compiled, len(table))
        table.append(compiled)

    for source in sources[: len(sources) - added_late]:
        add(source)
    # And a path near each route: its params all "", "7", "x", "a/b" or "%2F".
    queries = queries + [
        re.sub(r"\{[^}]*\}", value, source)
        for source in sources
        for value in ("", "7", "x", "a/b", "%2F")
    ]
    for round_ in range(2):
        for path in queries:
            expected = linear(table, path)
            for query in ("", "?q=1"):
                for _ in range(2):
                    assert matcher.match_target(path + query) == expected, (path, sources)
                    assert matcher.match(path) == expected, (path, sources)
        if round_ == 0:
            for source in sources[len(sources) - added_late :]:
                add(source)


def test_remembered_targets_give_fresh_params_each_time() -> None:
    matcher: Matcher[str] = Matcher()
    matcher.add(compile_template("/rooms/{id}"), "room")
    for match in (matcher.match_target, matcher.match):
        first = match("/rooms/7")
        assert first == ("room", {"id": "7"})
        first[1]["id"] = "changed"  # type: ignore[index]
        assert match("/rooms/7") == ("room", {"id": "7"})


def test_a_route_added_later_is_seen_by_remembered_targets() -> None:
    matcher: Matcher[str] = Matcher()
    matcher.add(compile_template("/rooms/{id}"), "room")
    assert matcher.match_target("/rooms/7/x") is None
    assert matcher.match_target("/rooms/7") == ("room", {"id": "7"})
    matcher.add(compile_template("/rooms/{id}/x"), "x")
    matcher.add(compile_template("/rooms/7"), "beaten")  # the earlier route still wins
    assert matcher.match_target("/rooms/7/x") == ("x", {"id": "7"})
    assert matcher.match_target("/rooms/7") == ("room", {"id": "7"})


def test_remembered_targets_are_bounded() -> None:
    matcher: Matcher[str] = Matcher()
    matcher.add(compile_template("/rooms/{id}"), "room")
    for k in range(3 * matcher_module.RECENT_TARGETS):
        assert matcher.match_target(f"/rooms/{k}") == ("room", {"id": str(k)})
        assert matcher.match(f"/rooms/{k}") == ("room", {"id": str(k)})
        assert len(matcher._recent_targets) <= matcher_module.RECENT_TARGETS
        assert len(matcher._recent_paths) <= matcher_module.RECENT_TARGETS


def test_invalid_targets_are_not_matched_by_a_remembered_path() -> None:
    matcher: Matcher[str] = Matcher()
    matcher.add(compile_template("/rooms/{id}"), "room")
    assert matcher.match("/rooms/é") == ("room", {"id": "é"})  # a path, as lookup() takes
    assert matcher.match_target("/rooms/é") is None  # not a valid request target
    assert matcher.match_target("/rooms/%C3%A9") == ("room", {"id": "é"})


def test_long_targets_are_not_remembered() -> None:
    matcher: Matcher[str] = Matcher()
    matcher.add(compile_template("/files/{rest:.*}"), "files")
    long = "/files/" + "a" * matcher_module.RECENT_LENGTH
    for _ in range(2 * matcher_module.ADMIT_EVERY):
        assert matcher.match_target(long) == ("files", {"rest": "a" * matcher_module.RECENT_LENGTH})
        assert matcher.match(long) is not None
    assert not matcher._recent_targets and not matcher._recent_paths
    assert matcher.match_target("/files/short") == ("files", {"rest": "short"})
    assert list(matcher._recent_targets) == ["/files/short"]


# Templates whose routes often stand alone below a prefix of their own, so that the
# matcher reads the rest of a target with one regex per route; and targets, valid or not.
LONE_SEGMENTS = ["a", "b", "x.y", "", "é", "{p}", "{q:\\d+}", "{r:a|b}", "f-{s}.txt", "{t:[^.]*}"]
LONE_TAILS = ["*rest", "{rest:.+}", "pre*rest", "{rest:.*}"]
TARGET_SEGMENTS = ["a", "b", "x.y", "", "7", "42", "ab", "f-1.txt", "a.b", "é", "a b", "%61", "%2F"]


@st.composite
def lone_template(draw: Any) -> str:
    prefix = draw(st.sampled_from(["/svc1", "/svc2", "/api/v1/r1", "/api/v1/r2", ""]))
    middle = draw(st.lists(st.sampled_from(LONE_SEGMENTS), min_size=1, max_size=3))
    if draw(st.booleans()) and "" not in middle[-1:]:
        middle.append(draw(st.sampled_from(LONE_TAILS)))
    names = iter("pqrstuvw")
    # Rename params so that no name appears twice in a template.
    parts = [re.sub(r"\{([a-z])", lambda _: "{" + next(names), m) for m in middle]
    parts = [p.replace("*rest", "*" + next(names)) for p in parts]
    return prefix + "/" + "/".join(parts)


lone_targets = st.tuples(
    st.sampled_from(["/svc1", "/svc2", "/api/v1/r1", "/api/v1/r2", "", "svc1"]),
    st.lists(st.sampled_from(TARGET_SEGMENTS), max_size=4),
    st.sampled_from(["", "?", "?x=1&y=/a?b", "?x=%20", "?x y", "#frag"]),
).map(lambda parts: "/".join([parts[0], *parts[1]]) + parts[2])


def linear_target(table: list[Template], target: str) -> tuple[int, dict[str, str]] | None:
    try:
        path, _ = split_target(target)
    except BadTarget:
        return None
    return linear(table, path)


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=400,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(lone_template(), min_size=1, max_size=12),
    st.lists(lone_targets, min_size=1, max_size=20),
    st.integers(0, 12),
)
def test_routes_alone_below_a_prefix_agree_with_a_linear_scan(
    sources: list[str], targets: list[str], added_late: int
) -> None:
    """match_target(), routed() and match() on tables where many routes are alone below
    a static prefix, for valid and invalid targets, with some routes added late."""
    matcher: Matcher[int] = Matcher()
    table: list[Template] = []

    def add(source: str) -> None:
        compiled = compile_template(source)
        matcher.add(compiled, len(table), {"name": str(len(table))})
        table.append(compiled)

    for source in sources[: len(sources) - added_late]:
        add(source)
    # And a target near each route: its params all "7", "a", "f-1.txt" or "é".
    targets = targets + [
        re.sub(r"\{[^}]*\}|\*\w+", value, source)
        for source in sources
        for value in ("7", "a", "f-1.txt", "é", "a/b")
    ]
    for round_ in range(2):
        for target in targets:
            expected = linear_target(table, target)
            for _ in range(2):
                assert matcher.match_target(target) == expected, (target, sources)
                routed = matcher.routed(target)
                if expected is None:
                    assert routed is None, (target, sources)
                else:
                    assert routed is not None, (target, sources)
                    assert (routed, routed.name) == (target, str(expected[0]))
                    assert routed.params == expected[1]
            path = target.partition("?")[0].partition("#")[0]
            if path.startswith("/"):  # a path, as lookup() takes it: characters unchecked
                assert matcher.match(path) == linear(table, path), (path, sources)
        if round_ == 0:
            for source in sources[len(sources) - added_late :]:
                add(source)
