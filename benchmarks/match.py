"""Route matching: ns per match for websockets-routes and its peers, build times, decide().

Run: ``.venv/bin/python benchmarks/match.py`` (``--quick`` for a short run).

Every router gets the same mixed table of N routes (40% static, 20% one param, 20% two
params, 10% regex-typed, 10% greedy tail), in groups of ten under a shared first
segment, as a REST-ish API would have. The lookups are hits spread evenly over the
table plus one miss, all in one process, one router at a time:

- ours: ``Router.match(target)``, the public call (it also builds the RoutedPath);
- Routes: ``routes.Mapper.match(path)``;
- werkzeug bound: ``Map.bind(...)`` once, then ``adapter.match(path)``;
- werkzeug per request: what ``websockets.asyncio.router.Router.route_request`` does for
  each handshake: ``bind()`` with the Host, ``urlparse`` the target, ``match()``, and
  catch ``NotFound``;
- Starlette: the linear ``route.matches(scope)`` scan of ``starlette.routing.Router``.

Each figure is the best of a few repeats (the machine may be shared). Build time is
construction plus whatever the peer compiles lazily on its first match.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
import types
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script from a checkout: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets_routes import Router  # noqa: E402
from websockets_routes.core import Accept, Request  # noqa: E402
from websockets_routes.core.matcher import RECENT_TARGETS  # noqa: E402

KINDS = ["static"] * 4 + ["one"] * 2 + ["two"] * 2 + ["regex", "tail"]
MISS = "/nope/missing/path"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@dataclass(frozen=True)
class Spec:
    """One route of the table, in each router's syntax, and a path that hits it."""

    index: int
    kind: str
    ours: str
    routes: str
    werkzeug: str
    starlette: str
    hit: str


def mixed_table(n: int) -> list[Spec]:
    """N routes: 40% static, 20% one param, 20% two params, 10% regex, 10% tail."""
    table = []
    for i in range(n):
        kind = KINDS[i % 10]
        base = f"/g{i // 10}/r{i}"
        if kind == "static":
            same = f"{base}/list"
            table.append(Spec(i, kind, same, same, same, same, same))
        elif kind == "one":
            table.append(
                Spec(i, kind, base + "/{id}", base + "/{id}", base + "/<id>", base + "/{id}",
                     base + "/abc")
            )  # fmt: skip
        elif kind == "two":
            table.append(
                Spec(i, kind, base + "/{a}/sub/{b}", base + "/{a}/sub/{b}",
                     base + "/<a>/sub/<b>", base + "/{a}/sub/{b}", base + "/x1/sub/y2")
            )  # fmt: skip
        elif kind == "regex":
            table.append(
                Spec(i, kind, base + "/{id:\\d+}", base + "/{id:\\d+}", base + "/<int:id>",
                     base + "/{id:int}", base + "/12345")
            )  # fmt: skip
        else:
            table.append(
                Spec(i, kind, base + "/files/{rest:.*}", base + "/files/{rest:.*}",
                     base + "/files/<path:rest>", base + "/files/{rest:path}",
                     base + "/files/a/b/c.txt")
            )  # fmt: skip
    return table


def unique_table(n: int) -> list[Spec]:
    """N routes, the same mix, each with a first segment (or third) of its own.

    Even routes live under ``/svc{i}`` (``/svc123/rooms/{id}``), odd ones under
    ``/api/v1/resource{i}`` (``/api/v1/resource456/status``), as an API that gives every
    service or resource its own prefix would have: no two routes share the segment that
    tells them apart, so a matcher gains nothing from groups.
    """
    table = []
    for i in range(n):
        kind = KINDS[i % 10]
        base = f"/svc{i}" if i % 2 == 0 else f"/api/v1/resource{i}"
        if kind == "static":
            same = f"{base}/status"
            table.append(Spec(i, kind, same, same, same, same, same))
        elif kind == "one":
            table.append(
                Spec(i, kind, base + "/rooms/{id}", base + "/rooms/{id}", base + "/rooms/<id>",
                     base + "/rooms/{id}", base + "/rooms/lobby")
            )  # fmt: skip
        elif kind == "two":
            table.append(
                Spec(i, kind, base + "/{a}/members/{b}", base + "/{a}/members/{b}",
                     base + "/<a>/members/<b>", base + "/{a}/members/{b}",
                     base + "/r7/members/u42")
            )  # fmt: skip
        elif kind == "regex":
            table.append(
                Spec(i, kind, base + "/items/{id:\\d+}", base + "/items/{id:\\d+}",
                     base + "/items/<int:id>", base + "/items/{id:int}", base + "/items/901")
            )  # fmt: skip
        else:
            table.append(
                Spec(i, kind, base + "/files/{rest:.*}", base + "/files/{rest:.*}",
                     base + "/files/<path:rest>", base + "/files/{rest:path}",
                     base + "/files/docs/a.txt")
            )  # fmt: skip
    return table


# Table shapes: "grouped" (ten routes per first segment), "unique" (one route per prefix).
SHAPES: dict[str, Callable[[int], list[Spec]]] = {"grouped": mixed_table, "unique": unique_table}


def sample_paths(table: Sequence[Spec], hits: int) -> list[tuple[str, int | None]]:
    """``hits`` paths spread evenly over the table, then the miss; with the index hit.

    The k-th hit is in the k-th stretch of the table and cycles through the ten route
    kinds, so that the sample has the table's mix of kinds (a plain stride of a multiple
    of ten would pick only static routes).
    """
    n = len(table)
    if n <= hits:
        indexes = list(range(n))
    else:
        indexes = [min(n - 1, (k * n // hits) // 10 * 10 + k % 10) for k in range(hits)]
    return [*((table[i].hit, i) for i in indexes), (MISS, None)]


def fresh_hit(spec: Spec, k: int) -> str:
    """A path that hits ``spec`` as ``spec.hit`` does, with param values made of ``k``.

    Static routes have only the one path.
    """
    if spec.kind == "static":
        return spec.hit
    parts = spec.hit.split("/")
    if spec.kind == "one":
        parts[-1] = f"v{k}"
    elif spec.kind == "two":
        parts[-3], parts[-1] = f"x{k}", f"y{k}"
    elif spec.kind == "regex":
        parts[-1] = str(k)
    else:
        parts[-1] = f"{k}.txt"
    return "/".join(parts)


def fresh_paths(
    table: Sequence[Spec], sample: Sequence[tuple[str, int | None]], dynamic: int
) -> list[tuple[str, int | None]]:
    """The sample over and over, each time with new param values: at least ``dynamic``
    paths to routes with params, none of them twice (static paths and the miss repeat,
    as they must)."""
    per_copy = sum(1 for _, i in sample if i is not None and table[i].kind != "static")
    copies = dynamic // max(per_copy, 1) + 1
    paths = []
    k = 0
    for _ in range(copies):
        for path, i in sample:
            if i is None:
                paths.append((path, i))
            else:
                k += 1
                paths.append((fresh_hit(table[i], k), i))
    return paths


# Each builder returns a function path -> index of the route found, or None.
Matcher = Callable[[str], "int | None"]


def build_ours(table: Sequence[Spec], matcher_class: Any = None) -> Matcher:
    """Our router; with ``matcher_class``, its matcher is replaced by one of that class
    (see baseline_matcher()), wired in as the router of that commit wired its own."""
    router = Router()
    for spec in table:
        router.route(spec.ours)(_view)  # one view for all, as the peers' endpoints are ints
    if matcher_class is not None:
        _swap_matcher(router, matcher_class)
    match = router.match
    index_of = {spec.ours: spec.index for spec in table}

    def find(path: str) -> int | None:
        found = match(path)
        return None if found is None else index_of[found.template]

    find.router = router  # type: ignore[attr-defined]
    find.raw = match  # type: ignore[attr-defined]
    find.lookup = router.lookup  # type: ignore[attr-defined]
    return find


def _swap_matcher(router: Router, matcher_class: Any) -> None:
    """Give ``router`` a matcher of ``matcher_class`` holding the same routes.

    A matcher with routed() builds RoutedPaths itself and is the router's match, as
    now; an older one answers Router.match() (the class's), which builds them."""
    from websockets_routes.core.router import _path_attributes

    matcher = matcher_class()
    routed = getattr(matcher, "routed", None)
    for template, route in router._matcher:
        if routed is None:
            matcher.add(template, route)
        else:
            matcher.add(template, route, _path_attributes(route))
    router._matcher = matcher
    router.lookup = matcher.match  # type: ignore[method-assign]
    if routed is None:
        router.__dict__.pop("match", None)
    else:
        router.match = routed  # type: ignore[method-assign]


async def _view(ws: Any, path: Any) -> None:
    pass


def build_routes(table: Sequence[Spec]) -> Matcher:
    from routes import Mapper

    mapper = Mapper()
    for spec in table:
        mapper.connect(None, spec.routes, endpoint=spec.index)
    match = mapper.match
    match(MISS)  # Routes compiles its regexes on the first match

    def find(path: str) -> int | None:
        found = match(path)
        return None if found is None else int(found["endpoint"])

    find.raw = match  # type: ignore[attr-defined]
    return find


def _werkzeug_map(table: Sequence[Spec]) -> Any:
    from werkzeug.routing import Map, Rule

    # websockets' router sets websocket=True on every rule, and binds with a ws scheme.
    return Map([Rule(spec.werkzeug, endpoint=spec.index, websocket=True) for spec in table])


def build_werkzeug_bound(table: Sequence[Spec]) -> Matcher:
    from werkzeug.exceptions import NotFound

    adapter = _werkzeug_map(table).bind("example.com", url_scheme="ws")
    match = adapter.match

    def raw(path: str) -> Any:
        try:
            return match(path)
        except NotFound:
            return None

    def find(path: str) -> int | None:
        found = raw(path)
        return None if found is None else found[0]

    find(MISS)  # werkzeug builds its state machine lazily
    find.raw = raw  # type: ignore[attr-defined]
    return find


def build_werkzeug_per_request(table: Sequence[Spec]) -> Matcher:
    from werkzeug.exceptions import NotFound
    from werkzeug.routing import RequestRedirect

    url_map = _werkzeug_map(table)
    host = "example.com"

    # Mirrors websockets.asyncio.router.Router.route_request, minus the response objects.
    def find(target: str) -> int | None:
        adapter = url_map.bind(server_name=host, url_scheme="ws")
        try:
            parsed = urllib.parse.urlparse(target)
            handler, kwargs = adapter.match(path_info=parsed.path, query_args=parsed.query)
        except RequestRedirect:  # pragma: no cover - no redirect rules in the table
            return None
        except NotFound:
            return None
        return handler

    find(MISS)
    return find


def build_starlette(table: Sequence[Spec]) -> Matcher:
    from starlette.routing import Match, WebSocketRoute

    async def endpoint(websocket: Any) -> None:  # pragma: no cover - never called
        pass

    routes = [WebSocketRoute(spec.starlette, endpoint, name=str(spec.index)) for spec in table]
    full = Match.FULL

    # The loop of starlette.routing.Router.app, for a websocket scope.
    def find(path: str) -> int | None:
        scope = {"type": "websocket", "path": path, "root_path": ""}
        for route in routes:
            match, child_scope = route.matches(scope)
            if match is full:
                return int(route.name)
        return None

    return find


def baseline_matcher(commit: str) -> Any:
    """The Matcher class of core/matcher.py as of ``commit`` (``git show``), to time
    our router with it beside the current one, in the same process."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{commit}:websockets_routes/core/matcher.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(f"websockets_routes.core.matcher_at_{commit}")
    module.__package__ = "websockets_routes.core"  # for its relative imports
    exec(compile(source, f"{commit}:websockets_routes/core/matcher.py", "exec"), module.__dict__)
    return module.Matcher


def build_ours_with(matcher_class: Any) -> Callable[[Sequence[Spec]], Matcher]:
    """build_ours(), with the router's matcher replaced by one of ``matcher_class``."""

    def build(table: Sequence[Spec]) -> Matcher:
        return build_ours(table, matcher_class)

    return build


PEERS: dict[str, Callable[[Sequence[Spec]], Matcher]] = {
    "ours": build_ours,
    "Routes": build_routes,
    "werkzeug bound": build_werkzeug_bound,
    "werkzeug per-request": build_werkzeug_per_request,
    "Starlette scan": build_starlette,
}


def time_build(
    builder: Callable[[Sequence[Spec]], Matcher], table: Sequence[Spec], collect: bool = False
) -> tuple[Matcher, float]:
    """The router and the CPU seconds it took to build.

    As timeit does, the garbage collector is off while the clock runs, unless
    ``collect``: its passes cost in proportion to everything alive in the process
    (here, the other routers' tables too), not to the table being built.
    """
    _forget_shared_segments()
    gc.collect()
    enabled = gc.isenabled()
    if not collect:
        gc.disable()
    try:
        start = time.process_time()
        find = builder(table)
        return find, time.process_time() - start
    finally:
        if enabled:
            gc.enable()


def _forget_shared_segments() -> None:
    """Empty our template compiler's cache of segments, so each build starts cold."""
    from websockets_routes.core import templates

    templates._SIMPLE_SEGMENTS.clear()


def interleaved(
    fns: dict[str, Callable[[str], Any]],
    paths: Sequence[str] | dict[str, Sequence[str]],
    budget: float,
    rounds: int,
) -> dict[str, float]:
    """Best ns per call of each function over ``paths``, measured in turns.

    ``paths`` is one list for all, or a list for each function (by name).

    Each round gives every function a turn of about ``budget / rounds`` CPU seconds, so
    that a burst of other load on a shared machine hits all of them alike; the clock
    is this process's CPU time, and each function keeps its best round.
    """
    clock = time.process_time_ns
    turn = budget / rounds * 1e9
    if not isinstance(paths, dict):
        paths = dict.fromkeys(fns, paths)
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # as timeit does; see time_build()
    try:
        return _interleaved(fns, paths, turn, rounds, clock)
    finally:
        if enabled:
            gc.enable()


def _interleaved(
    fns: dict[str, Callable[[str], Any]],
    paths_of: dict[str, Sequence[str]],
    turn: float,
    rounds: int,
    clock: Callable[[], int],
) -> dict[str, float]:
    loops = {}
    for name, fn in fns.items():  # one pass each to size the turns (and warm up)
        paths = paths_of[name]
        start = clock()
        for path in paths:
            fn(path)
        loops[name] = max(1, int(turn / max(clock() - start, 1)))
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            paths = paths_of[name]
            start = clock()
            for _ in range(loops[name]):
                for path in paths:
                    fn(path)
            elapsed = clock() - start
            best[name] = min(best[name], elapsed / (loops[name] * len(paths)))
    return best


def check(find: Matcher, paths: Sequence[tuple[str, int | None]], name: str) -> None:
    """Every router must find the same route for every path, or the timing means nothing."""
    for path, expected in paths:
        got = find(path)
        if got != expected:
            raise AssertionError(f"{name}: {path!r} matched {got!r}, expected {expected!r}")


def handshake(target: str) -> Request:
    return Request(
        "GET",
        target,
        [
            ("Host", "example.com"),
            ("User-Agent", "bench"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
            ("Origin", "https://example.com"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ],
    )


def bench_decide(table: Sequence[Spec], budget: float, rounds: int) -> dict[str, float]:
    """ns for router.match() and router.decide() on the same full valid handshake."""
    router: Router = build_ours(table).router  # type: ignore[attr-defined]
    spec = next((s for s in table if s.kind == "two"), table[-1])
    request = handshake(spec.hit)
    decision = router.decide(request)
    if not isinstance(decision, Accept):
        raise AssertionError(f"the benchmark handshake was not accepted: {decision!r}")
    headers = request.headers.items()
    fns = {
        "match": router.match,
        "decide": lambda _: router.decide(request),
        "request+decide": lambda target: router.decide(Request("GET", target, headers)),
    }
    return interleaved(fns, [spec.hit], budget, rounds)


OURS_LOOKUP = "ours lookup()"
OURS_LOOKUP_NEW = "ours lookup(), new targets"
# Peers also timed on targets never asked for before, and the name of that column.
NEW_TARGETS = {"ours": "ours, new targets", "werkzeug bound": "werkzeug bound, new targets"}
OURS_GC = "ours, gc on"


def run(
    sizes: Sequence[int],
    budget: float,
    hits: int = 100,
    peers: Sequence[str] = tuple(PEERS),
    rounds: int = 5,
    out: Any = None,
    shape: str = "grouped",
    baseline: str | None = None,
) -> dict[str, Any]:
    """Measure every peer at every size; returns ``{"match": {...}, "build": {...}, ...}``.

    ``shape`` names the table (``SHAPES``): ``grouped`` or ``unique``.

    ``budget`` is the CPU seconds each router gets per size, over ``rounds`` turns.
    Besides ``ours`` (``Router.match(target)``), ``ours lookup()`` times
    ``Router.lookup(path)``: path in, (route, params) out, the same job as the peers'
    calls, without checking the target or building the RoutedPath; ``ours lookup(), new
    targets`` does it on the new targets below.

    The sample of targets comes round again and again, so ``ours`` finds its dynamic
    targets among those it matched recently; ``ours, new targets`` (and ``werkzeug
    bound, new targets``) get targets never asked for before, on a router of their own:
    the sample with new param values each time, many more than ``RECENT_TARGETS``.

    ``baseline``: a commit whose core/matcher.py our router is also timed with, on the
    same targets (columns ``ours @ COMMIT`` and ``ours @ COMMIT, new targets``).
    """
    match_ns: dict[int, dict[str, float]] = {}
    build_s: dict[int, dict[str, float]] = {}
    make_table = SHAPES[shape]
    builders = {name: PEERS[name] for name in peers}
    fresh_columns = {name: column for name, column in NEW_TARGETS.items() if name in peers}
    if baseline is not None:
        before = f"ours @ {baseline}"
        builders[before] = build_ours_with(baseline_matcher(baseline))
        fresh_columns[before] = f"{before}, new targets"
    for name in peers:  # imports and one-off set-up are not part of a table's build time
        PEERS[name](make_table(10))
    for n in sizes:
        table = make_table(n)
        sample = sample_paths(table, hits)
        paths: dict[str, Sequence[str]] = {}
        fresh = fresh_paths(table, sample, 3 * RECENT_TARGETS)
        build_s[n] = {}
        fns: dict[str, Callable[[str], Any]] = {}
        for name, builder in builders.items():
            if name == "ours":
                build_s[n][OURS_GC] = time_build(builder, table, collect=True)[1]
            find, seconds = time_build(builder, table)
            check(find, sample, name)
            if name in PEERS:
                build_s[n][name] = seconds
            fns[name] = getattr(find, "raw", find)
            if name in fresh_columns:
                other = builder(table)
                check(other, fresh[: 3 * len(sample)], name)
                fns[fresh_columns[name]] = getattr(other, "raw", other)
                paths[fresh_columns[name]] = [path for path, _ in fresh]
            if name == "ours":
                fns[OURS_LOOKUP] = find.lookup  # type: ignore[attr-defined]
                fns[OURS_LOOKUP_NEW] = builder(table).lookup  # type: ignore[attr-defined]
                paths[OURS_LOOKUP_NEW] = [path for path, _ in fresh]
        for name in fns:
            paths.setdefault(name, [path for path, _ in sample])
        match_ns[n] = interleaved(fns, paths, budget * len(fns), rounds)
        del fns
        if out is not None:
            figures = ", ".join(f"{k} {v:,.0f}" for k, v in match_ns[n].items())
            print(f"  {n:>6,} routes: {figures} ns/match", file=out, flush=True)
    decide = bench_decide(make_table(max(sizes)), budget, rounds)
    return {
        "shape": shape,
        "sizes": list(sizes),
        "match": match_ns,
        "build": build_s,
        "decide": decide,
    }


def targets(results: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The issue's targets, as (description, met, figure)."""
    match, build, sizes = results["match"], results["build"], results["sizes"]
    shape = results.get("shape", "grouped")
    found = []
    pairs = [
        ("ours", "werkzeug bound"),
        (NEW_TARGETS["ours"], NEW_TARGETS["werkzeug bound"]),
        (OURS_LOOKUP, "werkzeug bound"),
        (OURS_LOOKUP_NEW, NEW_TARGETS["werkzeug bound"]),
    ]
    for n in (1000, 10000):
        for ours, peer in pairs:
            if n in match and ours in match[n] and peer in match[n]:
                ratio = match[n][peer] / match[n][ours]
                found.append(
                    (
                        f"{shape}: {ours} >= 5x faster than {peer} at {n:,}",
                        ratio >= 5,
                        f"{ratio:.1f}x",
                    )
                )
    if 10 in match and max(sizes) >= 10000:
        for ours in ("ours", NEW_TARGETS["ours"]):
            if ours in match[10]:
                ratio = match[max(sizes)][ours] / match[10][ours]
                found.append(
                    (
                        f"{shape}: {ours}: cost at {max(sizes):,} / cost at 10 <= 1.2",
                        ratio <= 1.2,
                        f"{ratio:.2f}",
                    )
                )
    if 10000 in build:
        for column in ("ours", OURS_GC):
            seconds = build[10000][column]
            found.append(
                (
                    f"{shape}: {column}: building 10,000 routes < 0.5 s",
                    seconds < 0.5,
                    f"{seconds:.3f} s",
                )
            )
    decide = results["decide"]
    ratio = decide["decide"] / decide["match"]
    found.append((f"{shape}: decide() <= 3x match()", ratio <= 3, f"{ratio:.2f}x"))
    return found


def report(results: dict[str, Any], out: Any = None) -> None:
    out = out if out is not None else sys.stdout
    match, build, sizes = results["match"], results["build"], results["sizes"]
    columns = list(next(iter(match.values())))
    others = [p for p in columns if p != "ours"]
    width = 29

    def row(cells: Sequence[str]) -> None:
        print("".join(c.rjust(width) if i else c.ljust(8) for i, c in enumerate(cells)), file=out)

    print(
        f"\n{results.get('shape', 'grouped')} table: ns per match, CPU time (lower is better);"
        " in brackets: that figure / ours (on new targets: / ours, new targets)",
        file=out,
    )
    row(["routes", *columns])
    fresh = NEW_TARGETS["ours"]
    for n in sizes:
        ours = match[n]["ours"]
        cells = [f"{n:,}", f"{ours:,.0f}"]
        for p in others:
            base = match[n][fresh] if p.endswith(", new targets") and fresh in match[n] else ours
            cells.append(f"{match[n][p]:,.0f} ({match[n][p] / base:,.2f}x)")
        row(cells)
    built = list(next(iter(build.values())))
    print(
        "\nCPU time to build the table (ms), garbage collector off as in timeit"
        f" (and on, for ours: '{OURS_GC}')",
        file=out,
    )
    row(["routes", *built])
    for n in sizes:
        row([f"{n:,}", *(f"{build[n][p] * 1e3:,.1f}" for p in built)])
    decide = results["decide"]
    print(
        f"\nfull valid handshake, {max(sizes):,} routes: match() {decide['match']:,.0f} ns,"
        f" decide() {decide['decide']:,.0f} ns ({decide['decide'] / decide['match']:.2f}x"
        f" match()), Request(...) + decide() {decide['request+decide']:,.0f} ns",
        file=out,
    )


def report_targets(runs: Sequence[dict[str, Any]], out: Any = None) -> None:
    out = out if out is not None else sys.stdout
    print("\ntargets", file=out)
    for results in runs:
        for description, met, figure in targets(results):
            print(f"  [{'met' if met else 'MISSED'}] {description}: {figure}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run, smaller tables")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="comma-separated table sizes (default 10,100,1000,10000; --quick 10,1000)",
    )
    parser.add_argument(
        "--budget", type=float, default=None, help="CPU seconds per router and size"
    )
    parser.add_argument(
        "--shapes",
        type=lambda s: s.split(","),
        default=list(SHAPES),
        help=f"comma-separated table shapes (default {','.join(SHAPES)})",
    )
    parser.add_argument(
        "--baseline",
        metavar="COMMIT",
        help="also time our router with core/matcher.py as of COMMIT, in the same process",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([10, 1000] if args.quick else [10, 100, 1000, 10000])
    budget = args.budget or (0.05 if args.quick else 0.5)
    hits, rounds = (30, 5) if args.quick else (100, 15)
    print(
        f"python {sys.version.split()[0]}; {hits} hits spread over each table + 1 miss;"
        f" {budget} CPU s per router and size, best of {rounds} interleaved rounds"
    )
    runs = []
    for shape in args.shapes:
        print(f"{shape} table", flush=True)
        runs.append(
            run(
                sizes,
                budget,
                hits,
                rounds=rounds,
                out=sys.stdout,
                shape=shape,
                baseline=args.baseline,
            )
        )
    for results in runs:
        report(results)
    report_targets(runs)
    if args.check and not all(met for results in runs for _, met, _ in targets(results)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
