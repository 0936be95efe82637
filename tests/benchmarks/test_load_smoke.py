"""The load benchmark's machinery works end to end (numbers are not checked: the
machine is shared, so only that every measurement happened and nothing was left over)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import servers  # noqa: E402

ALL_WORKLOADS = [
    "handshake-1",
    "handshake-50",
    "echo32-1",
    "echo32-50",
    "echo64k-1",
    "echo64k-50",
    "idle-mem",
]


def run_load(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / "load.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_quick_run_measures_every_workload_and_stops_every_server(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_load(
        "--quick",
        "--quiet",
        "--servers",
        "websockets,raw",
        "--baseline",
        "websockets",
        "--cpu",
        "--client-procs",
        "2",
        "--json",
        str(out),
        # glibc's heap settings, which the servers inherit, are part of the report.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")},
            "MALLOC_TRIM_THRESHOLD_": "67108864",
        },
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    results = report["results"]
    assert "epoll worker processes" in report["meta"]["client"]
    assert report["meta"]["malloc_env"] == {"MALLOC_TRIM_THRESHOLD_": "67108864"}
    assert done.stdout.rstrip().endswith("MALLOC_TRIM_THRESHOLD_=67108864")

    # A WebSocket server gets every workload, each with a positive rate and no error.
    assert sorted(results["websockets"]) == sorted(ALL_WORKLOADS)
    for name, result in results["websockets"].items():
        assert result["errors"] == 0, name
        assert len(result["rounds"]) == 1 and result["median"] > 0, name
        assert result["ratio"] == 1.0, name
    for name in ALL_WORKLOADS[:-1]:
        assert results["websockets"][name]["server_cpu_us_per_op"]["median"] > 0, name
        # The server's minor page faults per operation: the state of its heap.
        faults = results["websockets"][name]["server_minflt_per_op"]
        assert len(faults["rounds"]) == 1 and faults["median"] >= 0, name
        # How busy each side was, and how long each waited for a core.
        busy = results["websockets"][name]["cpu_busy"]
        assert busy["server_cpu_share"][0] > 0 and busy["client_cpu_share"][0] > 0, name
        assert busy["server_wait_share"][0] >= 0 and busy["client_wait_share"][0] >= 0, name
    # The raw TCP ceiling has no WebSocket handshake, only echo and memory, and its
    # ratios are to the baseline measured in the same run.
    assert sorted(results["raw"]) == sorted(n for n in ALL_WORKLOADS if "handshake" not in n)
    raw, base = results["raw"]["echo32-50"], results["websockets"]["echo32-50"]
    assert raw["ratio"] == pytest.approx(raw["median"] / base["median"])
    assert "echo64k-50" in done.stdout and "idle-mem" in done.stdout

    # --cpu: each server's CPU and page faults per operation in columns beside its
    # throughput, and how busy each side was.
    header = next(line for line in done.stdout.splitlines() if line.startswith("workload"))
    assert header.split() == [
        "workload",
        "websockets",
        "websockets",
        "µs/op",
        "websockets",
        "flt/op",
        "raw",
        "raw",
        "µs/op",
        "raw",
        "flt/op",
    ]
    assert "CPU busy (median; server / client" in done.stdout
    handshake_row = next(
        line for line in done.stdout.splitlines() if line.startswith("handshake-50")
    )
    # name, rate, µs/op, flt/op, and "-" "-" "-" for raw
    assert len(handshake_row.split()) == 7

    # One long-lived process per server plus a fresh one per idle-mem measurement,
    # and none of them outlives the run.
    assert len(report["pids"]) == 4
    assert not [pid for pid in report["pids"] if alive(pid)]
    # The two handshake worker processes (--client-procs 2) are gone too.
    assert len(report["client_pids"]) == 2
    assert not [pid for pid in report["client_pids"] if alive(pid)]


def test_bad_arguments_give_one_line_and_no_server() -> None:
    done = run_load("--servers", "nginx")
    assert done.returncode != 0
    assert "unknown server 'nginx'" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_load("--workloads", "echo1g")
    assert done.returncode != 0 and "unknown workload 'echo1g'" in done.stderr


def test_routed_servers_hit_the_middle_route_of_1000() -> None:
    table = servers.route_table(1000)
    assert len(table) == 1000 and len({t for t, _ in table}) == 1000
    assert table[500] == ("/bench/{room}/user/{user}", "/bench/<room>/user/<user>")

    async def handler(ws: object) -> None: ...

    from werkzeug.routing import Map, Rule

    url_map = Map([Rule(rule, endpoint=handler) for _, rule in table])
    assert url_map.bind("localhost").match(servers.HIT_TARGET) == (
        handler,
        {"room": "lobby", "user": "42"},
    )
    router = servers.ours_router(1000)
    route, params = router.lookup(servers.HIT_TARGET)
    assert router.routes.index(route) == 500
    assert params == {"room": "lobby", "user": "42"}


def test_the_lean_handshake_clients_accept_only_a_real_101_with_the_hello() -> None:
    """HandshakeScript replaces picows for the handshake workloads, so it must fail
    where picows would: a rejected handshake, a wrong accept key, a missing hello."""
    import asyncio

    import load

    import websockets_routes as wr
    from websockets_routes.transports.asyncio import serve

    router = wr.Router()

    @router.route("/bench/{room}/user/{user}")
    async def hello(ws: Any, path: wr.RoutedPath) -> None:
        await ws.send(servers.HELLO)
        await ws.recv()

    @router.route("/silent/{room}/user/{user}")
    async def silent(ws: Any, path: wr.RoutedPath) -> None:
        await ws.recv()

    async def main() -> None:
        server = await serve(router, "127.0.0.1", 0)
        try:
            script = load.HandshakeScript(server.port)
            await script.run()
            await asyncio.to_thread(script.run_blocking)

            wrong_key = load.HandshakeScript(server.port)
            wrong_key.ACCEPT = b"bm90IHRoZSBhY2NlcHQga2V5"
            unknown = load.HandshakeScript(server.port)
            unknown.request = unknown.request.replace(b"/bench/", b"/nowhere/")
            no_hello = load.HandshakeScript(server.port)
            no_hello.request = no_hello.request.replace(b"/bench/", b"/silent/")
            for script in (wrong_key, unknown):
                with pytest.raises(ConnectionError, match="unexpected answer"):
                    await script.run()
                with pytest.raises(ConnectionError, match="unexpected answer"):
                    await asyncio.to_thread(script.run_blocking)
            with pytest.raises(asyncio.TimeoutError):
                await load.within(no_hello.run(), 0.2)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_the_epoll_client_counts_only_real_handshakes_and_gives_up_on_a_stuck_server() -> None:
    """drive(), the default handshake client, counts rounds with a 101, the hello and the
    close; it reports a refusing server's answers as failures and a silent one as a
    stall, instead of counting them or waiting for ever."""
    import asyncio
    import time

    import handshakes

    import websockets_routes as wr
    from websockets_routes.transports.asyncio import serve

    greeting, refusing, silent = wr.Router(), wr.Router(), wr.Router()

    @greeting.route("/bench/{room}/user/{user}")
    async def hello(ws: Any, path: wr.RoutedPath) -> None:
        await ws.send(servers.HELLO)
        await ws.recv()

    @refusing.route("/elsewhere/{room}/user/{user}")
    async def elsewhere(ws: Any, path: wr.RoutedPath) -> None:
        await ws.send(servers.HELLO)

    @silent.route("/bench/{room}/user/{user}")
    async def quiet(ws: Any, path: wr.RoutedPath) -> None:
        await ws.recv()

    async def drive(router: wr.Router, connections: int, **options: Any) -> dict[str, Any]:
        server = await serve(router, "127.0.0.1", 0)
        try:
            now = time.monotonic()
            return await asyncio.to_thread(
                handshakes.drive, server.port, connections, now + 0.05, now + 0.3, **options
            )
        finally:
            server.close()
            await server.wait_closed()

    served = asyncio.run(drive(greeting, 3))
    assert served["error"] is None and served["errors"] == 0
    assert served["count"] > 0 and served["t1"] > served["t0"]

    # One connection at a time: each was answered when the client gives up, so the
    # server has none half-accepted when the test closes it.
    refused = asyncio.run(drive(refusing, 1, max_errors=5))
    assert refused["count"] == 0 and refused["errors"] > 5
    assert "too many failures" in refused["error"] and "404" in refused["error"]

    stalled = asyncio.run(drive(silent, 3, stall=0.5))
    assert stalled["count"] == 0 and "no progress" in stalled["error"]


def test_the_cpu_table_says_in_how_many_rounds_a_server_took_page_faults() -> None:
    """A round whose server took many page faults per operation ran in the slow state
    of its heap: the table gives the median and, when the rounds differ, how many."""
    from types import SimpleNamespace

    from load_results import Results, format_table

    results = Results(meta={})
    rounds = {"ours-hook": [0.0, 18.0, 0.1, 24.5, 0.0], "websockets-router": [0.0] * 5}
    for server, faults in rounds.items():
        for value in faults:
            sample = {"value": 1000.0, "server_cpu_us_per_op": 50.0, "errors": 0}
            results.add(server, "echo64k-1", {**sample, "server_minflt_per_op": value})
    options = SimpleNamespace(
        servers=list(rounds), workloads=["echo64k-1"], baseline="websockets-router"
    )
    row = next(
        line for line in format_table(results, options, "both").splitlines()
        if line.startswith("echo64k-1")
    )  # fmt: skip
    assert "0.1 (2/5 >=1)" in row
    assert row.rstrip().endswith("  0.0")  # websockets' router: every round below 1
    report = results.to_json("websockets-router")["results"]["ours-hook"]["echo64k-1"]
    assert report["server_minflt_per_op"] == {"rounds": rounds["ours-hook"], "median": 0.1}
