"""Property tests: the indexed matcher agrees with a linear first-match scan, url_for
round-trips any unicode value, and decide() never raises on any bytes."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from websockets_routes import Router
from websockets_routes.core import Accept, Close, Request, Respond, RoutedPath
from websockets_routes.core import matcher as matcher_module
from websockets_routes.core.matcher import Matcher
from websockets_routes.core.paths import split_path
from websockets_routes.core.templates import Template, compile_template, match_segments

# Deterministic and database-less, so a run is the same everywhere and leaves no files.
CORE = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)

# A small alphabet so that templates overlap and paths often hit them.
STATIC = ["a", "b", "c", "a.b", "x-y", "", "1"]
PATH_SEGMENTS = [
    *STATIC,
    "12",
    "123",
    "ab",
    "ba",
    "x.json",
    "1.json",
    "a-b",
    "%61",  # "a", escaped
    "%2F",
    "a%2Fb",
    "%C3%A9",
    "%ff",  # not UTF-8
]


@st.composite
def segment(draw: Any, index: int, last: bool) -> str:
    name = f"p{index}"
    kinds = ["static", "param", "regex", "mixed", "colon"]
    if last:
        kinds += ["tail", "brace_tail", "plus_tail", "prefixed_tail"]
    kind = draw(st.sampled_from(kinds))
    if kind == "static":
        return draw(st.sampled_from(STATIC))
    if kind == "param":
        return "{" + name + "}"
    if kind == "regex":
        regex = draw(st.sampled_from(["[ab]+", "\\d{1,2}", "\\d{2}", "a|b", "[^.]*"]))
        return "{" + name + ":" + regex + "}"
    if kind == "mixed":
        return draw(st.sampled_from(["{%s}.json", "x-{%s}", "{%s}-b"])) % name
    if kind == "colon":
        return ":" + name
    if kind == "tail":
        return "*" + name
    if kind == "brace_tail":
        return "{" + name + ":.*}"
    if kind == "plus_tail":
        return "{" + name + ":.+}"
    return "a*" + name


@st.composite
def templates(draw: Any) -> str:
    length = draw(st.integers(min_value=1, max_value=4))
    return "/" + "/".join(draw(segment(i, i == length - 1)) for i in range(length))


paths = st.lists(st.sampled_from(PATH_SEGMENTS), min_size=1, max_size=5).map(
    lambda segments: "/" + "/".join(segments)
)


def reference(table: list[Template], path: str) -> tuple[int, dict[str, str]] | None:
    """The naive answer: try every route in registration order."""
    segments = split_path(path)
    if segments is None:
        return None
    for index, template in enumerate(table):
        params = match_segments(template.segments, segments, path)
        if params is not None:
            return index, params
    return None


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), templates()),
        st.tuples(st.just("query"), paths),
    ),
    min_size=1,
    max_size=40,
)


@CORE
@given(operations)
def test_matcher_agrees_with_a_linear_first_match_scan(ops: list[tuple[str, str]]) -> None:
    matcher: Matcher[int] = Matcher()
    table: list[Template] = []
    for op, arg in ops:
        if op == "add":
            compiled = compile_template(arg)
            matcher.add(compiled, len(table))
            table.append(compiled)
            continue
        assert matcher.match(arg) == reference(table, arg), (arg, [t.source for t in table])
    # Every path a template of the table builds, as is and with every byte escaped,
    # finds the first route for it.
    for compiled in table:
        try:
            built = compiled.build({name: "1" for name in compiled.names})
        except ValueError:
            continue
        escaped = "/".join("".join(f"%{b:02X}" for b in s.encode()) for s in built.split("/"))
        for path in (built, escaped):
            assert matcher.match(path) == reference(table, path), path
    # Leaf nodes share empty containers: adding routes must never have written to them.
    assert (matcher_module._NO_CHILDREN, matcher_module._NO_PATTERNS) == ({}, [])
    assert matcher_module._NO_TAILS == []


@settings(CORE, max_examples=100)
# Unique: a router refuses a template twice (the Matcher test above takes repeats).
@given(st.lists(templates(), min_size=1, max_size=30, unique=True), st.data())
def test_router_match_agrees_with_the_reference_on_hits(table: list[str], data: Any) -> None:
    router = Router()

    async def view(ws: Any, path: Any) -> None:
        pass

    for index, template in enumerate(table):
        router.route(template, name=f"r{index}")(view)
    compiled = [compile_template(t) for t in table]
    for _ in range(5):
        path = data.draw(paths)
        query = data.draw(st.sampled_from(["", "?", "?a/b=1", "?x=%zz"]))
        found = router.match(path + query)
        expected = reference(compiled, path)
        if expected is None:
            assert found is None
        else:
            assert found is not None and str(found) == path + query
            assert (found.name, found.params) == (f"r{expected[0]}", expected[1])


values = st.text(min_size=1, max_size=20)


@CORE
@given(values, values, st.text(max_size=30))
def test_url_for_round_trips_any_unicode_value(a: str, b: str, rest: str) -> None:
    router = Router()

    async def view(ws: Any, path: Any) -> None:
        pass

    router.route("/one/{a}", name="one")(view)
    router.route("/two/{a}/and/{b}", name="two")(view)
    router.route("/tail/{a}/*rest", name="tail")(view)
    router.route("/any/{rest:.*}", name="any")(view)
    router.route("/file/{a}.json", name="file")(view)
    for name, params in [
        ("one", {"a": a}),
        ("two", {"a": a, "b": b}),
        ("tail", {"a": a, "rest": rest}),
        ("any", {"rest": rest}),
    ]:
        url = router.url_for(name, **params)
        assert url.isascii() and "?" not in url and "#" not in url
        found = router.match(url)
        assert found is not None, url
        assert (found.name, found.params) == (name, params)
    # A mixed segment round-trips, or url_for says the value cannot be built back.
    try:
        url = router.url_for("file", a=a)
    except ValueError:
        return
    found = router.match(url)
    assert found is not None and (found.name, found.params) == ("file", {"a": a})


header_values = st.one_of(st.binary(max_size=12), st.text(max_size=12))
header_names = st.one_of(
    st.sampled_from(
        ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Origin"]
    ),
    header_values,
)
VALID = [
    ("Host", "x"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


@CORE
@given(
    st.one_of(st.binary(max_size=20), st.text(max_size=20), paths),
    st.one_of(st.sampled_from(["GET", "HEAD", "POST"]), st.binary(max_size=5), st.text(max_size=5)),
    st.lists(st.tuples(header_names, header_values), max_size=6),
    st.booleans(),
)
def test_decide_never_raises_on_any_bytes(
    target: str | bytes, method: str | bytes, extra: list[Any], keep_valid: bool
) -> None:
    router = Router(close_unmatched=keep_valid, origins=[None, "https://ok"])

    async def view(ws: Any, path: Any) -> None:
        pass

    router.route("/{a}")(view)
    router.route("/a/{b:\\d+}/*rest")(view)
    router.http("/h")(view)
    request = Request(method, target, (VALID if keep_valid else []) + extra)
    decision = router.decide(request)
    assert isinstance(decision, (Accept, Respond, Close)) or type(decision).__name__ == "ServeHTTP"
    if isinstance(decision, Respond):
        assert decision.body and 400 <= decision.status < 500
    if isinstance(decision, (Accept, Close)):
        assert isinstance(decision.path, RoutedPath)
        assert all(isinstance(n, str) and isinstance(v, str) for n, v in decision.headers)
    assert router.decide(request) == decision  # same request in, same decision out
