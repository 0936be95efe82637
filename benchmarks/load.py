"""Loopback WebSocket load benchmark: our servers against websockets, side by side.

    python benchmarks/load.py [--quick] [--rounds N] [--duration S] [--uvloop] [--cpu]
        [--servers ours,websockets-router,...] [--workloads handshake,echo32-50,...]
        [--baseline SERVER] [--client-procs N] [--tree LABEL=PATH] [--json FILE|-]

Every server runs in its own process (``benchmarks/servers.py``), all of them pinned
to one core and running for the whole run; the client runs on the other core(s).
Rounds interleave the servers (the order rotates each round) and the tables show
medians, so a noisy neighbour on the shared machine skews every server alike. Ratios
are to the ``--baseline`` server (websockets' own router) measured in the same run.

The client. This process, on uvloop when installed and pinned to a client core, drives
the echo and memory workloads with picows. The handshake workloads run in worker
processes (``benchmarks/handshakes.py``), each an epoll loop over plain sockets that
sends a fixed upgrade request, checks the 101 and its accept key, reads the hello,
sends a close and awaits the server's close and FIN: about 50 µs of client CPU per
handshake against the 80-330 µs the servers here spend, where picows took 300-450 µs and
an asyncio Protocol about 90 µs (``--handshake-client picows|probe`` runs those in
this process instead). A benchmark measures the server only while the server's core
is the full one, so every measurement reports how busy each side was (``cpu busy``
on the progress lines; ``--cpu`` adds a table): the client's share is the CPU time of
all its handshake workers over the window, divided by the cores they have. There is
one worker per client core by default: on 2 cores one worker on cpu 0, the servers on
cpu 1. More workers on one core (``--client-procs``) only add context switches; on a
bigger machine workers on several cores keep the client under 80% of its cores even
for servers much faster than ours. On loopback the kernel delivers each packet on
the sender's core, so part of every handshake's TCP work shows on the client side,
the same for every server.

``--cpu`` puts each server's CPU time per operation (the ``schedstat`` of its threads
over the measured window, which does not count time spent waiting for a core) in a
column beside its throughput, and adds the median busy shares of both sides; without
it, throughput and CPU time per operation are two tables. Beside the CPU time, ``--cpu``
shows the server's minor page faults per operation (``minflt`` of ``/proc/PID/stat``
around the window; every progress line shows its round's). They tell which state the
C library's heap was in: a server process running the same code for a 64 KiB echo at
1 connection takes either under 1 fault and about 55 µs per message, or 9-25 faults
and 1.5-2x the CPU, when glibc maps the 256 KiB buffer asyncio reads into anew for
each message (its ``mmap`` threshold is still below that size) or gives the top of its
heap back and takes it again. Which state a process lands in follows from its heap's
history, not from the code a message runs; the table says in how many rounds a server
was in the faulting one, so a ratio between two servers in different states reads as
what it is. glibc's ``MALLOC_*`` variables in load.py's environment reach every server
(``MALLOC_MMAP_THRESHOLD_=1048576`` keeps those buffers in the heap, and
``MALLOC_TRIM_THRESHOLD_=67108864`` keeps the heap's top); the report names them.

Workloads:
  handshake-C  connect, receive the server's "hello", close; handshakes/s with C clients
  echo32-C     round trips of a 32-byte text message over C connections; messages/s
  echo64k-C    round trips of a 64 KiB binary message over C connections; messages/s
  idle-mem     server RSS growth per idle connection with --idle-conns open (fresh
               server process each round); KiB per connection, lower is better

The raw asyncio TCP echo (``raw``) is the ceiling for the echo workloads: its client
sends and awaits as many bytes as a masked frame of the same payload takes.
Only 127.0.0.1 is ever contacted; every loop is bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from handshakes import (  # noqa: E402
    HandshakeClients,
    HandshakeProbe,  # noqa: F401 - where benchmarks/callgrind.py and tests find it
    HandshakeScript,
    _tcp_socket,
)
from load_procs import (  # noqa: E402
    TREES,
    BenchError,
    Pinning,
    ServerProcess,
    cpu_ns,  # noqa: F401 - where benchmarks/fanout.py finds it
    kind_of,
    launch_server,
    log_tail,  # noqa: F401 - where benchmarks/fanout.py finds it
    shares,
    snapshot,
    stop_all,
    wait_ready,
)
from load_results import (  # noqa: E402
    WORKLOADS,
    Results,
    Workload,
    busy,
    format_busy,
    format_table,
    summarize_profiles,
)
from servers import HIT_TARGET, HOST, KINDS, Kind, missing_modules  # noqa: E402

DEFAULT_SERVERS = [
    "ours",
    "ours-anyio",
    "ours-hook",
    "websockets-router",
    "websockets",
    "raw",
]
TRIO_SERVERS = ["ours-anyio-trio", "websockets-trio-router", "trio-websocket"]


HANDSHAKE_CLIENTS = {
    "epoll": " (handshakes: epoll worker processes)",
    "probe": " (handshakes: HandshakeProbe)",
    "picows": "",
}

log = logging.getLogger("load")


# Clients (picows), one listener per connection, callback driven: no task per message,
# so the load generator is not what limits the rate.


def client_modules() -> Any:
    import picows

    return picows


class Counter:
    def __init__(self) -> None:
        self.messages = 0
        self.errors = 0


def make_ws_listener(picows: Any) -> type:
    TEXT, BINARY, CONT = (
        picows.WSMsgType.TEXT,
        picows.WSMsgType.BINARY,
        picows.WSMsgType.CONTINUATION,
    )

    class EchoListener(picows.WSListener):  # type: ignore[misc]
        """Waits for the hello, then (when started) keeps one message in flight."""

        def __init__(self) -> None:
            loop = asyncio.get_running_loop()
            self.hello: asyncio.Future[None] = loop.create_future()
            self.closed: asyncio.Future[None] = loop.create_future()
            self.idle: asyncio.Future[None] | None = None
            self.running = False
            self.received = 0
            self.payload = b""
            self.msg_type = TEXT
            self.counter: Counter | None = None

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def start(self, payload: bytes, text: bool, counter: Counter) -> None:
            self.payload, self.msg_type, self.counter = payload, TEXT if text else BINARY, counter
            self.running = True
            self.idle = asyncio.get_running_loop().create_future()
            self.transport.send(self.msg_type, payload)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            kind = frame.msg_type
            if kind is not TEXT and kind is not BINARY and kind is not CONT:
                return  # close/ping/pong: picows answers pings itself
            if not self.hello.done():
                self.hello.set_result(None)
                return
            self.received += frame.payload_size
            if not frame.fin:
                return
            assert self.counter is not None
            if self.received == len(self.payload):
                self.counter.messages += 1
            else:
                self.counter.errors += 1
            self.received = 0
            if self.running:
                transport.send(self.msg_type, self.payload)
            elif self.idle is not None and not self.idle.done():
                self.idle.set_result(None)

        def on_ws_disconnected(self, transport: Any) -> None:
            for future in (self.hello, self.closed, self.idle):
                if future is not None and not future.done():
                    if future is self.closed:
                        future.set_result(None)
                    else:
                        future.set_exception(ConnectionError("disconnected"))

    return EchoListener


class RawEcho(asyncio.Protocol):
    """The raw-TCP counterpart of EchoListener: one frame-sized write in flight."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.hello: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.idle: asyncio.Future[None] | None = None
        self.running = False
        self.received = 0
        self.payload = b""
        self.counter: Counter | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.hello.set_result(None)

    def start(self, payload: bytes, text: bool, counter: Counter) -> None:
        # A masked client frame: 2-byte header, extended length, 4-byte mask.
        extra = 2 + 4 + (0 if len(payload) < 126 else 2 if len(payload) < 65536 else 8)
        self.payload, self.counter = payload + b"x" * extra, counter
        self.running = True
        self.idle = asyncio.get_running_loop().create_future()
        self.transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received < len(self.payload):
            return
        assert self.counter is not None
        self.counter.messages += 1
        self.received -= len(self.payload)
        if self.running:
            self.transport.write(self.payload)
        elif self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.hello, self.closed, self.idle):
            if future is not None and not future.done():
                if future is self.closed:
                    future.set_result(None)
                else:
                    future.set_exception(ConnectionError("disconnected"))


if sys.version_info >= (3, 11):

    async def within(awaitable: Any, timeout: float) -> Any:
        """wait_for without its extra task per call, which cost the client about
        110 µs per handshake and made handshake-50 measure the client."""
        async with asyncio.timeout(timeout):
            return await awaitable

else:
    within = asyncio.wait_for


class Client:
    def __init__(self, server: ServerProcess, websocket: bool) -> None:
        self.server = server
        self.websocket = websocket
        self.url = f"ws://{HOST}:{server.port}{HIT_TARGET}"
        if websocket:
            self.picows = client_modules()
            self.listener_class = make_ws_listener(self.picows)

    async def connect(self, timeout: float = 10.0) -> Any:
        """An open connection whose hello has arrived."""
        if self.websocket:
            _, listener = await within(
                self.picows.ws_connect(
                    self.listener_class,
                    self.url,
                    max_frame_size=1 << 24,
                    socket_factory=_tcp_socket,
                ),
                timeout,
            )
        else:
            _, listener = await within(
                asyncio.get_running_loop().create_connection(RawEcho, HOST, self.server.port),
                timeout,
            )
        try:
            await within(asyncio.shield(listener.hello), timeout)
        except BaseException:
            self.abort(listener)
            raise
        return listener

    def abort(self, listener: Any) -> None:
        if self.websocket:
            listener.transport.disconnect(graceful=False)
        else:
            listener.transport.abort()

    async def close(self, listener: Any, timeout: float = 5.0) -> None:
        """The closing handshake (WebSocket) or a FIN (raw), then wait for the end."""
        if listener.closed.done():
            return
        if self.websocket:
            listener.transport.send_close(self.picows.WSCloseCode.OK)
        else:
            listener.transport.close()
        try:
            await within(asyncio.shield(listener.closed), timeout)
        except asyncio.TimeoutError:
            self.abort(listener)
            with contextlib.suppress(asyncio.TimeoutError):
                await within(asyncio.shield(listener.closed), 1.0)

    async def open_many(self, n: int, parallel: int = 50) -> list[Any]:
        gate = asyncio.Semaphore(parallel)
        listeners: list[Any] = []

        async def one() -> None:
            async with gate:
                listeners.append(await self.connect())

        results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close_many(listeners)
            raise BenchError(
                f"{self.server.name}: {len(errors)}/{n} connections failed: {errors[0]!r}"
            )
        return listeners

    async def close_many(self, listeners: list[Any]) -> None:
        await asyncio.gather(*(self.close(listener) for listener in listeners))


@dataclass
class Timing:
    duration: float
    warmup: float


async def run_lean_handshakes(
    server: ServerProcess, workload: Workload, timing: Timing, clients: HandshakeClients
) -> dict[str, Any]:
    """Rounds of connect, hello, close for the window, run by the worker processes
    of `clients`; this process only reads both sides' CPU time at the window's ends."""
    measure_from = time.monotonic() + timing.warmup
    deadline = measure_from + timing.duration
    try:
        clients.start(server.port, workload.concurrency, measure_from, deadline)
    except (ConnectionError, BrokenPipeError) as exc:
        raise BenchError(f"{server.name}: {exc}") from exc
    await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
    start = snapshot(server, clients.pids)
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    end = snapshot(server, clients.pids)
    try:
        results = await asyncio.to_thread(clients.collect, 30.0)
    except ConnectionError as exc:
        raise BenchError(f"{server.name}: {exc}") from exc
    failures = [r["error"] for r in results if r["error"]]
    if failures:
        raise BenchError(f"{server.name}: {failures[0]}")
    busy = shares(start, end, clients.cores)
    # Each worker counts over its own view of the window (the same to a millisecond).
    rate = sum(r["count"] / (r["t1"] - r["t0"]) for r in results if r["t1"] > r["t0"])
    return {
        "value": rate,
        "count": sum(r["count"] for r in results),
        "server_cpu_us_per_op": busy["server_cpu_share"] / rate * 1e6 if rate else None,
        "server_minflt_per_op": faults_per_op(start, end, rate * (end["t"] - start["t"])),
        **busy,
        "errors": sum(r["errors"] for r in results),
    }


async def run_handshakes(client: Client, workload: Workload, options: Options) -> dict[str, Any]:
    """Rounds of connect, hello, close for the window, in this process: with
    --handshake-client probe, one connection runs blocking rounds in a thread (the loop
    only takes snapshots) and more run as HandshakeProbes; with picows, picows."""
    timing = options.timing
    counter = Counter()
    script = HandshakeScript(client.server.port)
    start = time.monotonic()
    measure_from = start + timing.warmup
    deadline = measure_from + timing.duration
    max_iterations = 1_000_000  # a bound, whatever the clock does
    window: dict[str, Any] = {}
    me = os.getpid()

    def failed(exc: BaseException) -> None:
        counter.errors += 1
        log.debug("handshake failed: %r", exc)
        if counter.errors > 100:
            raise BenchError(f"{client.server.name}: too many failures: {exc!r}") from exc

    def blocking_worker() -> None:
        for _ in range(max_iterations):
            if time.monotonic() >= deadline:
                return
            try:
                script.run_blocking()
            except (OSError, ConnectionError) as exc:
                failed(exc)
                continue
            counter.messages += 1

    async def worker() -> None:
        for _ in range(max_iterations):
            if time.monotonic() >= deadline:
                return
            try:
                if options.handshake_client == "probe":
                    await within(script.run(), 10.0)
                else:
                    await client.close(await client.connect())
            except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                failed(exc)
                continue
            counter.messages += 1

    async def snapshots() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        window["count0"], window["start"] = counter.messages, snapshot(client.server, [me])
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        window["count1"], window["end"] = counter.messages, snapshot(client.server, [me])

    if workload.concurrency == 1 and options.handshake_client == "probe":
        workers = [asyncio.to_thread(blocking_worker)]
    else:
        workers = [worker() for _ in range(workload.concurrency)]
    await asyncio.gather(snapshots(), *workers)
    return sample(window, counter.errors)


def sample(window: dict[str, Any], errors: int) -> dict[str, Any]:
    """A measurement by a client in this process (its own schedstat is the client's)."""
    count = window["count1"] - window["count0"]
    start, end = window["start"], window["end"]
    return {
        "value": count / (end["t"] - start["t"]),
        "count": count,
        "server_cpu_us_per_op": (end["server"] - start["server"]) / 1000 / count if count else None,
        "server_minflt_per_op": faults_per_op(start, end, count),
        **shares(start, end, 1),
        "errors": errors,
    }


def faults_per_op(start: dict[str, Any], end: dict[str, Any], ops: float) -> float | None:
    """The server's minor page faults per operation over the window: near 0 when its
    heap stays put, about 18-24 per 64 KiB echo when the C library trims the top of its
    heap and faults it in again around each message (the same code, 1.5-2x the CPU)."""
    return (end["server_minflt"] - start["server_minflt"]) / ops if ops else None


async def run_echo(client: Client, workload: Workload, timing: Timing) -> dict[str, Any]:
    counter = Counter()
    listeners = await client.open_many(workload.concurrency)
    try:
        payload = (b"x" * workload.size) if workload.text else os.urandom(workload.size)
        for listener in listeners:
            listener.start(payload, workload.text, counter)
        server = client.server
        window: dict[str, Any] = {}
        me = os.getpid()
        await asyncio.sleep(timing.warmup)
        window["count0"], window["start"] = counter.messages, snapshot(server, [me])
        await asyncio.sleep(timing.duration)
        window["count1"], window["end"] = counter.messages, snapshot(server, [me])
        for listener in listeners:
            listener.running = False
        idle = [listener.idle for listener in listeners if listener.idle is not None]
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(asyncio.gather(*idle), 10.0)
    finally:
        await client.close_many(listeners)
    if counter.errors:
        raise BenchError(f"{client.server.name}: {counter.errors} echoes came back wrong")
    return sample(window, 0)


async def run_idle_memory(client: Client, n: int, settle: float) -> dict[str, Any]:
    server = client.server
    # Warm up: lazy imports and first allocations are not per-connection costs.
    await client.close_many(await client.open_many(min(n, 20)))
    await asyncio.sleep(settle)
    before = server.rss_kib()
    listeners = await client.open_many(n)
    try:
        await asyncio.sleep(settle)
        after = server.rss_kib()
    finally:
        await client.close_many(listeners)
    return {
        "value": (after - before) / n,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "connections": n,
        "errors": 0,
    }


# The run.


@dataclass
class Options:
    servers: list[str]
    workloads: list[str]
    rounds: int
    timing: Timing
    idle_conns: int
    uvloop: bool
    baseline: str
    routes: int
    client_cpu: int | None = None
    server_cpu: int | None = None
    quiet: bool = False
    profile_dir: str | None = None
    handshake_client: str = "epoll"
    client_procs: int | None = None
    cpu: bool = False


def applies(kind: Kind, workload: Workload) -> bool:
    return kind.websocket or workload.kind == "echo" or workload.kind == "idle-mem"


async def measure(
    server: ServerProcess,
    workload: Workload,
    options: Options,
    clients: HandshakeClients | None = None,
) -> dict[str, Any]:
    if workload.kind == "handshake" and clients is not None:
        return await run_lean_handshakes(server, workload, options.timing, clients)
    client = Client(server, kind_of(server.name).websocket)
    if workload.kind == "handshake":
        return await run_handshakes(client, workload, options)
    if workload.kind == "echo":
        return await run_echo(client, workload, options.timing)
    settle = 0.2 if options.timing.duration < 1 else 0.5
    return await run_idle_memory(client, options.idle_conns, settle)


_T0 = time.monotonic()


def say(options: Options, text: str) -> None:
    if not options.quiet:
        print(f"[{time.monotonic() - _T0:6.1f}s] {text}", file=sys.stderr, flush=True)


async def run(
    options: Options, results: Results, running: list[ServerProcess], pinning: Pinning, logdir: str
) -> None:
    def launch(name: str) -> ServerProcess:
        server = launch_server(name, pinning, options.uvloop, options.routes, logdir)
        running.append(server)
        results.pids.append(server.pid)
        return server

    def spawn(name: str) -> ServerProcess:
        return wait_ready(launch(name))

    workloads = [WORKLOADS[w] for w in options.workloads]
    throughput = [w for w in workloads if w.kind != "idle-mem"]
    live: dict[str, ServerProcess] = {}
    if throughput:
        # Start them all at once (their start-up overlaps), then wait for each.
        launched = [
            launch(name)
            for name in options.servers
            if any(applies(kind_of(name), w) for w in throughput)
        ]
        for server in launched:
            name = server.name
            try:
                live[name] = wait_ready(server)
            except BenchError as exc:
                results.skipped[name] = str(exc).splitlines()[0]
                say(options, f"note: {exc}")
    clients = None
    if options.handshake_client == "epoll" and any(w.kind == "handshake" for w in workloads):
        clients = HandshakeClients(
            options.client_procs or pinning.client_procs(),
            pinning.client_cpus,
            os.path.join(logdir, "handshake-clients.log"),
        )
        results.client_pids += clients.pids
    try:
        for round_no in range(options.rounds):
            shift = round_no % max(1, len(options.servers))
            order = options.servers[shift:] + options.servers[:shift]
            for workload in workloads:
                for name in order:
                    if name in results.skipped or not applies(kind_of(name), workload):
                        continue
                    fresh = workload.kind == "idle-mem"
                    try:
                        server = spawn(name) if fresh else live[name]
                    except BenchError as exc:
                        results.skipped[name] = str(exc).splitlines()[0]
                        say(options, f"note: {exc}")
                        continue
                    profiler = start_py_spy(options, server, workload, round_no)
                    try:
                        sample = await measure(server, workload, options, clients)
                    except BenchError as exc:
                        sample = None
                        say(options, f"note: round {round_no + 1} {workload.name} {name}: {exc}")
                        tail = server.log_tail()
                        if tail:
                            say(options, f"{name} server log:\n{tail}")
                    finally:
                        stop_py_spy(profiler)
                        if fresh:
                            server.stop()
                    if not server.alive() and not fresh:
                        results.skipped[name] = f"server died:\n{server.log_tail()}"
                        say(options, f"note: {name} died; skipped from now on\n{server.log_tail()}")
                    if sample is not None:
                        results.add(name, workload.name, sample)
                        say(
                            options,
                            f"round {round_no + 1}/{options.rounds} {workload.name:13} "
                            f"{name:24} {sample['value']:12.1f}{workload.unit}{busy(sample)}",
                        )
    finally:
        if clients is not None:
            clients.stop()


def start_py_spy(
    options: Options, server: ServerProcess, workload: Workload, round_no: int
) -> subprocess.Popen[bytes] | None:
    """Sample the server with py-spy during one measurement (--profile DIR)."""
    if not options.profile_dir or workload.kind == "idle-mem":
        return None
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    out = os.path.join(options.profile_dir, f"{server.name}-{workload.name}-r{round_no + 1}.txt")
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(server.pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            out,
            "--nonblocking",
        ],  # fmt: skip
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_py_spy(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is None:
        return
    profiler.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait(5)


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def parse_list(text: str, known: dict[str, Any], what: str) -> list[str]:
    chosen: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item == "all":
            matches = list(known)
        elif item == "trio" and what == "server":
            matches = TRIO_SERVERS
        elif what == "workload":
            matches = [k for k in known if k == item or k.startswith(item + "-")]
        elif "@" in item and what == "server":
            kind, _, tree = item.partition("@")
            if tree not in TREES:
                raise SystemExit(f"load.py: {item!r}: no --tree {tree}=PATH given")
            matches = [item] if kind in known else []
        else:
            matches = [item] if item in known else []
        if not matches:
            raise SystemExit(f"load.py: unknown {what} {item!r}; known: {', '.join(known)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"servers: {', '.join(KINDS)} (or 'all', 'trio')\n"
        f"workloads: {', '.join(WORKLOADS)} (a prefix like 'echo32' selects both)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds in all: 1 round, 0.2 s per measurement, 50 idle conns",
    )
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    parser.add_argument("--workloads", default="all")
    parser.add_argument("--rounds", type=int, help="rounds (default 5)")
    parser.add_argument("--duration", type=float, help="seconds per measurement (default 1.5)")
    parser.add_argument("--warmup", type=float, help="seconds before each measurement")
    parser.add_argument("--idle-conns", type=int, help="connections for idle-mem (1000)")
    parser.add_argument("--uvloop", action="store_true", help="run asyncio servers on uvloop")
    parser.add_argument("--baseline", default="websockets-router")
    parser.add_argument("--routes", type=int, default=1000, help="routes in routed servers")
    parser.add_argument("--client-cpu", type=int)
    parser.add_argument("--server-cpu", type=int)
    parser.add_argument("--json", metavar="FILE", help="write results as JSON ('-': stdout)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--handshake-client",
        choices=["epoll", "probe", "picows"],
        default="epoll",
        help="client of the handshake workloads: epoll loops in worker processes "
        "(default; benchmarks/handshakes.py), HandshakeProbe on this process's loop, or "
        "picows; the last two use most of their core at 50 connections",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        metavar="N",
        help="handshake worker processes (default: one per client core)",
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="one table: each server's CPU time per operation beside its throughput, "
        "and how busy server and client were",
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a source tree holding another websockets_routes (e.g. from `git archive`); "
        "then --servers may name KIND@LABEL (ours@old) to run that kind from it",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record each server with py-spy during each measurement into DIR "
        "(collapsed stacks) and write DIR/summary.txt (top functions)",
    )
    args = parser.parse_args(argv)

    for item in args.tree:
        label, _, path = item.partition("=")
        if not label or not os.path.isdir(os.path.join(path, "websockets_routes")):
            parser.error(f"--tree {item!r}: want LABEL=PATH with PATH/websockets_routes")
        TREES[label] = os.path.abspath(path)

    def positive(value: float | None, name: str) -> None:
        if value is not None and value <= 0:
            parser.error(f"{name} must be positive")

    for value, name in [
        (args.rounds, "--rounds"),
        (args.duration, "--duration"),
        (args.idle_conns, "--idle-conns"),
        (args.routes, "--routes"),
        (args.client_procs, "--client-procs"),
    ]:
        positive(value, name)
    if args.warmup is not None and args.warmup < 0:
        parser.error("--warmup must not be negative")
    quick = args.quick
    options = Options(
        servers=parse_list(args.servers, KINDS, "server"),
        workloads=parse_list(args.workloads, WORKLOADS, "workload"),
        # Many short interleaved rounds beat few long ones on a shared machine: a
        # noisy spell then hits every server alike instead of one server's sample.
        rounds=args.rounds or (1 if quick else 5),
        timing=Timing(
            duration=args.duration or (0.2 if quick else 1.5),
            warmup=args.warmup if args.warmup is not None else (0.05 if quick else 0.3),
        ),
        idle_conns=args.idle_conns or (50 if quick else 1000),
        uvloop=args.uvloop,
        baseline=args.baseline,
        routes=args.routes,
        client_cpu=args.client_cpu,
        server_cpu=args.server_cpu,
        quiet=args.quiet,
        profile_dir=args.profile,
        handshake_client=args.handshake_client,
        client_procs=args.client_procs,
        cpu=args.cpu,
    )
    if options.profile_dir:
        os.makedirs(options.profile_dir, exist_ok=True)
    kind, _, tree = options.baseline.partition("@")
    if kind not in KINDS or (tree and tree not in TREES):
        parser.error(f"unknown --baseline {options.baseline!r}")
    return options, args


def main(argv: list[str] | None = None) -> int:
    options, args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("picows").setLevel(logging.CRITICAL)  # expected disconnects
    pinning = Pinning(options.client_cpu, options.server_cpu)
    pinning.pin_self()
    raise_nofile(options.idle_conns + 200)
    say(options, f"pinning: {pinning.note}")

    chosen = []
    results = Results(meta={})
    for name in options.servers:
        missing = missing_modules(kind_of(name))
        if missing:
            results.skipped[name] = f"not available: needs {', '.join(missing)}"
            say(options, f"note: skipping {name}: needs {', '.join(missing)}")
        else:
            chosen.append(name)
    if options.baseline not in chosen:
        say(options, f"note: baseline {options.baseline} not in this run: no ratios")
    options.servers = chosen

    try:
        import uvloop

        client_loop = "uvloop"
        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        client_loop = "asyncio"
        loop_factory = asyncio.new_event_loop
    results.meta = {
        "command": "python "
        + " ".join(shlex.quote(a) for a in ["benchmarks/load.py", *sys.argv[1:]])
        if argv is None
        else "load.main(" + repr(argv) + ")",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "servers_loop": "uvloop" if options.uvloop else "asyncio",
        "client": f"picows on {client_loop}" + HANDSHAKE_CLIENTS[options.handshake_client],
        "pinning": pinning.note,
        "rounds": options.rounds,
        "duration": options.timing.duration,
        "warmup": options.timing.warmup,
        "idle_conns": options.idle_conns,
        "routes": options.routes,
        "baseline": options.baseline,
        "servers": {name: kind_of(name).note for name in options.servers},
        # glibc's heap settings (MALLOC_TRIM_THRESHOLD_...), which the servers inherit:
        # they decide whether large messages take page faults (the flt/op column).
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }

    running: list[ServerProcess] = []
    interrupted = False

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with tempfile.TemporaryDirectory(prefix="ws-bench-") as logdir:
            try:
                loop = loop_factory()
                try:
                    loop.run_until_complete(run(options, results, running, pinning, logdir))
                finally:
                    with contextlib.suppress(Exception):
                        loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()
            except KeyboardInterrupt:
                interrupted = True
                say(options, "interrupted: stopping servers")
            finally:
                stop_all(running)
    finally:
        signal.signal(signal.SIGTERM, previous)

    if options.cpu:
        table = format_table(results, options, "both") + "\n" + format_busy(results, options)
    else:
        table = format_table(results, options) + "\n" + format_table(results, options, "cpu")
    table += f"baseline: {options.baseline}; {results.meta['pinning']}; asyncio servers on "
    table += (
        f"{results.meta['servers_loop']}, trio servers on trio; client {results.meta['client']}"
    )
    if results.meta["malloc_env"]:
        table += "; " + " ".join(f"{k}={v}" for k, v in sorted(results.meta["malloc_env"].items()))

    if args.json == "-":
        json.dump(results.to_json(options.baseline), sys.stdout, indent=2)
        sys.stdout.write("\n")
        print(table, file=sys.stderr)
    else:
        print(table)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results.to_json(options.baseline), f, indent=2)
    if options.profile_dir:
        summary = summarize_profiles(options.profile_dir)
        with open(os.path.join(options.profile_dir, "summary.txt"), "w") as f:
            f.write(summary)
        print(f"profiles: {options.profile_dir}/summary.txt", file=sys.stderr)
    for name, why in results.skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
