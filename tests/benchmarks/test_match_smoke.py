"""benchmarks/match.py runs: a tiny table through every router, so it cannot rot."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import websockets_routes

BENCHMARK = Path(websockets_routes.__file__).resolve().parent.parent / "benchmarks" / "match.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_match", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_mixed_table_has_the_issue_mix_and_every_router_agrees() -> None:
    bench = load()
    table = bench.mixed_table(100)
    kinds = [spec.kind for spec in table]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "static": 40,
        "one": 20,
        "two": 20,
        "regex": 10,
        "tail": 10,
    }
    sample = bench.sample_paths(table, 20)
    assert len(sample) == 21 and sample[-1] == (bench.MISS, None)
    assert len({table[i].kind for _, i in sample if i is not None}) == 5  # a mix, not a stride
    for name, build in bench.PEERS.items():
        bench.check(build(table), sample, name)  # raises if a router disagrees


def test_run_and_report_on_a_tiny_table() -> None:
    bench = load()
    results = bench.run([10], budget=0.002, hits=5, rounds=1)
    figures = results["match"][10]
    assert set(figures) == {*bench.PEERS, bench.OURS_LOOKUP}
    assert all(ns > 0 for ns in figures.values())
    assert set(results["decide"]) == {"match", "decide", "request+decide"}
    out = io.StringIO()
    bench.report(results, out)
    text = out.getvalue()
    assert "ns per match" in text and "werkzeug bound" in text and "decide()" in text
    assert any("decide() <= 3x match()" in line for line, _, _ in bench.targets(results))


def test_main_quick_arguments_parse() -> None:
    bench = load()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--sizes", "10", "--budget", "0.002"]) == 0
    assert "targets" in out.getvalue()
