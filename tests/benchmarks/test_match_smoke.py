"""benchmarks/match.py runs: a tiny table through every router, so it cannot rot."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

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


def test_unique_table_has_the_issue_mix_and_a_prefix_per_route() -> None:
    bench = load()
    table = bench.unique_table(100)
    kinds = [spec.kind for spec in table]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "static": 40,
        "one": 20,
        "two": 20,
        "regex": 10,
        "tail": 10,
    }
    prefixes = [spec.ours.split("/")[1] for spec in table if spec.ours.startswith("/svc")]
    assert len(prefixes) == len(set(prefixes)) == 50
    assert "/svc4/rooms/{id}" in {spec.ours for spec in table}
    assert "/api/v1/resource1/status" in {spec.ours for spec in table}
    sample = bench.sample_paths(table, 20)
    assert len({table[i].kind for _, i in sample if i is not None}) == 5
    for name, build in bench.PEERS.items():
        bench.check(build(table), sample, name)


def test_run_and_report_on_a_tiny_table() -> None:
    bench = load()
    results = bench.run([10], budget=0.002, hits=5, rounds=1)
    figures = results["match"][10]
    assert set(figures) == {
        *bench.PEERS, bench.OURS_LOOKUP, bench.OURS_LOOKUP_NEW, *bench.NEW_TARGETS.values()
    }
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
    text = out.getvalue()
    assert "targets" in text and "grouped table" in text and "unique table" in text
    assert "unique: ours >= 5x" not in text  # no 1,000-route table: no such target


def test_run_on_the_unique_shape_labels_its_targets() -> None:
    bench = load()
    results = bench.run([10], budget=0.002, hits=5, rounds=1, shape="unique")
    assert results["shape"] == "unique"
    out = io.StringIO()
    bench.report(results, out)
    bench.report_targets([results], out)
    assert "unique table" in out.getvalue() and "unique: decide()" in out.getvalue()


def test_new_targets_never_repeat_and_every_router_agrees() -> None:
    bench = load()
    for shape in bench.SHAPES.values():
        table = shape(100)
        sample = bench.sample_paths(table, 20)
        fresh = bench.fresh_paths(table, sample, 50)
        dynamic = [path for path, i in fresh if i is not None and table[i].kind != "static"]
        assert len(dynamic) >= 50 and len(set(dynamic)) == len(dynamic)
        assert {i for _, i in fresh} == {i for _, i in sample}
        for name, build in bench.PEERS.items():
            bench.check(build(table), fresh, name)


def test_baseline_times_our_router_with_the_matcher_of_a_commit() -> None:
    bench = load()
    root = BENCHMARK.parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    results = bench.run([10], budget=0.002, hits=5, rounds=1, shape="unique", baseline="HEAD")
    assert {"ours @ HEAD", "ours @ HEAD, new targets"} <= set(results["match"][10])
    assert "ours @ HEAD" not in results["build"][10]  # only the peers' build times
    out = io.StringIO()
    bench.report(results, out)
    assert "ours @ HEAD, new targets" in out.getvalue()
