"""Soak runs of our servers: many connect/handshake/close cycles, many concurrent
connections, many idle connections; open fds, Python objects and RSS before and after.

    python stress/soak.py [--transport asyncio|anyio-asyncio|anyio-trio|all]
                          [--cycles 10000] [--concurrent 1000] [--idle 10000]

Cycles and concurrent connections run against a server in this process (fds from
/proc/self/fd, RSS from /proc/self/status, objects from gc). Idle connections run
against a server in a child process (``--serve``), so that 10,000 client sockets
and 10,000 server sockets do not share one fd limit, and the RSS per connection is
the server's alone. Exit status 1 if a figure does not come back to its baseline.

tests/reliability/test_soak.py runs the same functions with small counts.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import struct
import sys
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.reliability.support import (  # noqa: E402
    Sock,
    client_frame,
    echo_router,
    open_fds,
    poll,
    rss,
)

TRANSPORTS = ["asyncio", "anyio-asyncio", "anyio-trio"]
CLOSE = client_frame(0x8, struct.pack("!H", 1000))


def backend(transport: str) -> str:
    return "trio" if transport == "anyio-trio" else "asyncio"


def serve(transport: str, **options: Any) -> Any:
    if transport == "asyncio":
        from websockets_routes.transports.asyncio import serve as serve_asyncio

        return serve_asyncio(echo_router(), "127.0.0.1", 0, **options)
    if transport == "custom":
        from examples.custom_transport import serve as serve_custom

        return serve_custom(echo_router(), "127.0.0.1", 0, **options)
    from websockets_routes.transports.anyio import serve as serve_anyio

    return serve_anyio(echo_router(), "127.0.0.1", 0, **options)


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to ``needed`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


async def one_cycle(port: int, message: bytes = b"soak") -> None:
    """Connect, handshake, echo one message, closing handshake, EOF."""
    async with await Sock.connect(port) as client:
        await client.open("/echo")
        await client.send(client_frame(0x2, message))
        frame = await client.read_frame()
        assert frame == (0x82, message), frame
        await client.send(CLOSE)
        code = await client.expect_close()
        assert code == (1000, ""), code
        assert await client.read_to_eof() == b""


async def concurrent_round(port: int, count: int) -> None:
    """``count`` connections open at once: all handshake, then all echo, then all close."""
    clients: list[Sock] = []
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(count):

                async def open_one() -> None:
                    client = await Sock.connect(port)
                    clients.append(client)
                    await client.open("/echo")

                tg.start_soon(open_one)
        async with anyio.create_task_group() as tg:
            for client in clients:

                async def close_one(client: Sock = client) -> None:
                    await client.send(client_frame(0x1, b"together"))
                    assert await client.read_frame() == (0x81, b"together")
                    await client.send(CLOSE)
                    assert await client.expect_close() == (1000, "")
                    assert await client.read_to_eof() == b""

                tg.start_soon(close_one)
    finally:
        for client in clients:
            client.close()


def census() -> tuple[int, int]:
    """Python objects tracked by the garbage collector, and how many of them are
    ServerConnection objects (one per connection, on every transport), after a
    full collection."""
    from websockets_routes.core.connection import ServerConnection

    gc.collect()
    everything = gc.get_objects()
    live = sum(1 for o in everything if type(o) is ServerConnection)
    return len(everything), live


# The anyio transport's keepalive heap keeps closed connections' entries until they
# come up or are swept (more than 64 stale entries and half the heap): that many
# closed connections may stay alive, with all they hold, without being a leak.
STALE_ALLOWANCE = 64
OBJECTS_PER_CONNECTION = 60  # an upper estimate of what one closed connection holds


def server_busy(server: Any) -> int:
    """Connections (and their tasks) the server still tracks."""
    busy = 0
    for name in ("connections", "_connections", "_tasks"):
        busy += len(getattr(server, name, ()) or ())
    return busy + int(getattr(server, "_active", 0) or 0)


async def settle(server: Any, baseline_fds: int, within: float = 10.0) -> None:
    """Wait (bounded) until the server has let go of every connection's socket and
    task: a socket is closed a little before its task ends."""
    with anyio.move_on_after(within):
        await poll(lambda: open_fds() <= baseline_fds and not server_busy(server))


async def quiesce() -> None:
    """A few idle event-loop turns before counting objects: trio keeps the
    coroutines of the tasks that finished in its last batch (tens of thousands of
    objects after 1,000 connections end at once) until the loop runs again."""
    for _ in range(3):
        await anyio.sleep(0.05)


async def soak_in_process(transport: str, cycles: int, concurrent: int) -> dict[str, Any]:
    """Cycles, then concurrent connections, against one server in this process, each
    part run twice: figures at the baseline and after each run. A leak grows with
    every run; a bounded cache (a free list, the keepalive heap's stale entries,
    swept when they pass 64 and half the heap) fills in the first and stays."""
    raise_fd_limit(2 * concurrent + 256)
    report: dict[str, Any] = {"transport": transport}
    fds_at_start = open_fds()
    async with serve(transport) as server:
        port = server.port
        for _ in range(20):  # warm up: imports, caches, allocator arenas
            await one_cycle(port)
        await concurrent_round(port, min(concurrent, 20))
        await settle(server, fds_at_start + 1)
        await quiesce()
        base = {"fds": open_fds(), "rss": rss(), "objects": census()[0]}
        report["baseline"] = base

        async def measure(part: str, run: Any) -> None:
            start = time.perf_counter()
            await run()
            elapsed = time.perf_counter() - start
            await settle(server, base["fds"])
            await quiesce()
            count, live = census()
            report[part] = {
                "seconds": round(elapsed, 2),
                "fds": open_fds(),
                "rss": rss(),
                "objects": count,
                "live_connections": live,
            }

        async def run_cycles() -> None:
            for _ in range(cycles):
                await one_cycle(port)

        for part in ("cycles-1", "cycles-2"):
            await measure(part, run_cycles)
            report[part]["count"] = cycles
            report[part]["per_second"] = round(cycles / report[part]["seconds"])
        for part in ("concurrent-1", "concurrent-2"):
            await measure(part, lambda: concurrent_round(port, concurrent))
            report[part]["count"] = concurrent
    return report


def check(report: dict[str, Any], *, rss_slack: int, count_objects: bool = True) -> list[str]:
    """What did not come back to the baseline (empty: all did).

    fds: exactly the baseline. Live ServerConnection objects: at most the stale
    allowance. Python objects: the second run of a part may not leave more than 1
    object per 10 connections over the first, beyond what the stale allowance holds
    (so at full size, 10,000 cycles, a leak of one object per connection shows).
    RSS: a second run may not grow it by more than ``rss_slack`` (the first run
    raises it to the allocator's high-water mark, which is reported, not judged).
    ``count_objects=False`` leaves out the
    object count (inside pytest, whose own objects come and go, it is noise at
    small counts; the live ServerConnection count still catches a connection kept)."""
    base = report["baseline"]
    problems = []
    for part in ("cycles", "concurrent"):
        first, second = report[f"{part}-1"], report[f"{part}-2"]
        for run in (first, second):
            if run["fds"] != base["fds"]:
                problems.append(f"{part}: {run['fds']} fds open, baseline {base['fds']}")
        if second["rss"] - first["rss"] > rss_slack:
            grown = (second["rss"] - first["rss"]) / 2**20
            problems.append(f"{part}: RSS grew {grown:.1f} MiB more in a second run")
        for run in (first, second):
            if run["live_connections"] > STALE_ALLOWANCE:
                problems.append(f"{part}: {run['live_connections']} connections still alive")
        allowance = first["count"] // 10 + STALE_ALLOWANCE * OBJECTS_PER_CONNECTION
        if count_objects and second["objects"] - first["objects"] > allowance:
            problems.append(
                f"{part}: {second['objects'] - first['objects']} more Python objects "
                f"after a second run of {first['count']}"
            )
    return problems


# Idle connections against a server in a child process


def serve_child(transport: str) -> None:
    """``--serve``: serve /echo, print the port, then answer each line of stdin:
    ``trim`` -> malloc_trim(0) (glibc gives freed heap pages back to the system),
    then print ``ok``; end of stdin -> shut down. Keepalive is armed (ping_interval
    60 s: every connection holds its timer) but does not fire during the run."""
    raise_fd_limit(20000)

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "trim":
                gc.collect()
                try:
                    ctypes.CDLL("libc.so.6").malloc_trim(0)
                except OSError:
                    pass
                print("ok", flush=True)

    async def main() -> None:
        async with serve(transport, ping_interval=60, ping_timeout=60) as server:
            print(server.port, flush=True)
            await anyio.to_thread.run_sync(commands)
            server.close()
            await server.wait_closed()

    anyio.run(main, backend=backend(transport))


def proc_status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def idle_run(transport: str, count: int, rounds: int = 2) -> dict[str, Any]:
    """``rounds`` times: open ``count`` idle connections to a server in a child
    process, check some still answer, close them all; the server's RSS and fds at
    each step, and after malloc_trim(). A second round that needs no more memory
    than the first shows freed memory is reused (RSS itself stays near its peak:
    the allocators keep freed pages)."""
    raise_fd_limit(count + 256)
    command = [sys.executable, __file__, "--serve", "--transport", transport]
    async with await anyio.open_process(command) as child:
        assert child.stdout is not None and child.stdin is not None
        line = b""
        while not line.endswith(b"\n"):
            line += await child.stdout.receive()
        port = int(line)
        await one_cycle(port)  # warm up the server's code paths
        pid = child.pid
        base_rss, base_fds = proc_status(pid, "VmRSS"), proc_fds(pid)
        report: dict[str, Any] = {
            "transport": transport,
            "idle": count,
            "server_rss_before": base_rss,
            "server_fds_before": base_fds,
            "rounds": [],
        }
        limiter = anyio.CapacityLimiter(200)  # handshakes in flight (the backlog)

        async def trim() -> int:
            await child.stdin.send(b"trim\n")
            answer = b""
            while not answer.endswith(b"\n"):
                answer += await child.stdout.receive()
            return proc_status(pid, "VmRSS")

        async def open_one(clients: list[Sock]) -> None:
            async with limiter:
                client = await Sock.connect(port)
                clients.append(client)
                await client.open("/echo")

        for _ in range(rounds):
            clients: list[Sock] = []
            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(count):
                    tg.start_soon(open_one, clients)
            opened = time.perf_counter() - start
            held_rss, held_fds = proc_status(pid, "VmRSS"), proc_fds(pid)
            for client in clients[:: max(1, count // 100)]:  # idle ones still work
                await client.send(client_frame(0x1, b"awake?"))
                assert await client.read_frame() == (0x81, b"awake?")

            async with anyio.create_task_group() as tg:
                for client in clients:

                    async def close_one(client: Sock = client) -> None:
                        async with limiter:
                            await client.send(CLOSE)
                            await client.expect_close()
                            await client.read_to_eof()
                            client.close()

                    tg.start_soon(close_one)
            with anyio.move_on_after(10):
                await poll(lambda: proc_fds(pid) <= base_fds, 0.05)
            after = proc_status(pid, "VmRSS")
            report["rounds"].append(
                {
                    "open_seconds": round(opened, 2),
                    "server_rss_idle": held_rss,
                    "rss_per_connection": round((held_rss - base_rss) / count),
                    "server_fds_idle": held_fds,
                    "server_rss_after": after,
                    "server_rss_after_trim": await trim(),
                    "server_fds_after": proc_fds(pid),
                }
            )
        await child.stdin.aclose()  # the child shuts down gracefully
        with anyio.fail_after(30):
            await child.wait()
        return report


def idle_problems(report: dict[str, Any], rss_slack: int) -> list[str]:
    problems = []
    for i, run in enumerate(report["rounds"], 1):
        if run["server_fds_after"] != report["server_fds_before"]:
            problems.append(f"idle round {i}: server holds {run['server_fds_after']} fds")
    first, last = report["rounds"][0], report["rounds"][-1]
    if last["server_rss_idle"] - first["server_rss_idle"] > rss_slack:
        grown = (last["server_rss_idle"] - first["server_rss_idle"]) / 2**20
        problems.append(f"idle: the server's RSS grew {grown:.1f} MiB more in a later round")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", default="all", choices=[*TRANSPORTS, "all"])
    parser.add_argument("--cycles", type=int, default=10000)
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    transports = TRANSPORTS if args.transport == "all" else [args.transport]
    if args.serve:
        serve_child(transports[0])
        return 0
    failed = False
    for transport in transports:
        if args.cycles and args.concurrent:
            report = anyio.run(
                soak_in_process,
                transport,
                args.cycles,
                args.concurrent,
                backend=backend(transport),
            )
            problems = check(report, rss_slack=8 * 2**20)
            report["problems"] = problems
            print(json.dumps(report), flush=True)
            failed |= bool(problems)
        if args.idle:
            idle = anyio.run(idle_run, transport, args.idle, backend="asyncio")
            idle["problems"] = idle_problems(idle, rss_slack=max(8 * 2**20, args.idle * 1024))
            print(json.dumps(idle), flush=True)
            failed |= bool(idle["problems"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
