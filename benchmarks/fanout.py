"""Loopback fan-out benchmark: one publisher, many subscribers, our Broadcast against
websockets' own broadcast().

    python benchmarks/fanout.py [--quick] [--subscribers N] [--messages M] [--rounds R]
        [--configs ours-memory,ours-redis-2proc,websockets-broadcast,slow-member]
        [--rate R] [--latency-messages L] [--size B] [--json FILE|-]

Configurations, all in the same run:

  ours-memory           our asyncio server (websockets_routes.transports.asyncio.serve);
                        its one route joins every connection to one channel of a
                        ``Broadcast()`` (memory://)
  ours-redis-2proc      two such server processes, each with
                        ``Broadcast("redis://127.0.0.1:PORT/0")``, the subscribers split
                        between them, the publisher in the first; a redis-server started
                        here (persistence off, a free port) and stopped at the end
  websockets-broadcast  websockets' own server (websockets.asyncio.server.serve) whose
                        handler adds each connection to a set, and its
                        ``broadcast(connections, message)``
  slow-member           ours-memory in a process of its own (``max_backlog`` of
                        --slow-max-backlog bytes) plus one subscriber that never reads
                        (a raw socket here, SO_RCVBUF 4096, on a route whose handler
                        shrinks the server side's SO_SNDBUF to 4096: loopback's
                        autotuned buffers would hold megabytes before anything waits in
                        the server); its burst is --slow-messages long, enough to pass
                        max_backlog. Reported: the other subscribers' rate (against
                        ours-memory's), the server's RSS before and after (and its peak
                        in between), whether the slow one got a 1013 close frame (it
                        reads only after the burst, so this server's close_timeout is
                        --slow-close-timeout) and how many members the broadcast closed

The publisher is a task inside the (first) server process, started by a command on
its standard input; it publishes through the server-side API: ``await
broadcast.publish(channel, message)`` for ours, ``broadcast(connections, message)``
then ``await asyncio.sleep(0)`` for websockets (the same one yield to the loop per
message that our publish() makes). Each message is binary, --size bytes (64): a
phase number, a sequence number and ``time.monotonic_ns()`` taken just before the
publish call, then padding. The subscribers are picows connections (on uvloop when
installed) in --client-procs other processes; each delivery's latency is its receive
``time.monotonic_ns()`` minus the send stamp (one host: CLOCK_MONOTONIC is the same
clock in every process), and each subscriber checks that it got every message, in
order.

Every measurement has two phases on the same connections:

  latency   --latency-messages messages at a fixed --rate per second, well below what
            every configuration sustains: p50 and p99 publish-to-receive latency over
            every delivery (the fan-out's own cost, no queueing behind earlier messages)
  burst     --messages messages as fast as the publisher's API goes: deliveries/s =
            messages received by all subscribers / (last receive - first publish), and
            the server side's CPU time (redis-server's included) per delivery, which a
            noisy neighbour disturbs less than a rate; its latencies (mostly queueing
            behind earlier messages) are in the table too

The servers (and redis-server) are pinned to one core, this process and the clients
to the other, as in load.py. Rounds interleave the configurations (the order rotates
each round) and the table shows medians; ratios are between configurations measured
in the same run. Only 127.0.0.1 is contacted; servers listen on port 0 and print
``READY <port>``; every wait is bounded; every process started here is stopped at the
end, also on errors and interrupts (children also exit when their stdin closes).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import select
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from load import Pinning, cpu_ns, log_tail, raise_nofile  # noqa: E402
from servers import HOST, exit_soon  # noqa: E402
from servers import raise_nofile as raise_nofile_to_hard  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THIS = os.path.abspath(__file__)
PATH = "/fanout"
SLOW_PATH = "/fanout/slow"
# The slow member's kernel buffers: its SO_RCVBUF, and the SO_SNDBUF that the server
# gives its side (Linux doubles both).
SLOW_RCVBUF = 4096
SLOW_SNDBUF = 4096
CHANNEL = "fanout"
JOINED = "joined"
# phase, sequence number, send time (time.monotonic_ns()); then padding to --size.
HEADER = struct.Struct("<IIq")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

CONFIGS = ["ours-memory", "ours-redis-2proc", "websockets-broadcast", "slow-member"]
NOTES = {
    "ours-memory": "websockets_routes.transports.asyncio.serve + Broadcast() (memory://)",
    "ours-redis-2proc": "2 processes of ours + Broadcast('redis://...'), subscribers split",
    "websockets-broadcast": "websockets.asyncio.server.serve + broadcast(connections, m)",
    "slow-member": "ours-memory + 1 subscriber that never reads (max_backlog "
    "--slow-max-backlog); rate of the others",
}
# (numerator, denominator, target): the ratios the table reports.
RATIOS = [
    ("ours-memory", "websockets-broadcast", 1.5),
    ("ours-redis-2proc", "ours-memory", 0.5),
    ("slow-member", "ours-memory", None),
]

log = logging.getLogger("fanout")


class BenchError(Exception):
    pass


def message(buffer: bytearray, phase: int, seq: int) -> bytes:
    HEADER.pack_into(buffer, 0, phase, seq, time.monotonic_ns())
    return bytes(buffer)


# The server processes: `fanout.py _server ours|websockets [--broadcast URL] ...`.
#
# Commands on stdin, one per line, answers on stdout:
#   PUBLISH phase count interval_ns size  ->  PUBLISHED {"t_first_ns", "t_end_ns", ...}
#   STATS                                 ->  STATS {"members", "closes", "overflows"}
#   QUIT (or the end of stdin)            ->  the server closes and the process exits


class OverflowCounter(logging.Handler):
    """Counts the broadcast's warnings about a member closed past max_backlog."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "max_backlog" in str(record.msg):
            self.count += 1


async def serve_fanout(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    closes: dict[str, int] = {}
    members = 0
    overflows = OverflowCounter()
    logging.getLogger("websockets_routes.broadcast").addHandler(overflows)
    publish: Callable[[bytes], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]

    if args.kind == "ours":
        from websockets_routes import Router
        from websockets_routes.broadcast import Broadcast
        from websockets_routes.transports.asyncio import serve

        broadcast = Broadcast(args.broadcast, max_backlog=args.max_backlog)
        router = Router()

        @router.route(SLOW_PATH)
        async def slow_subscriber(ws: Any, path: Any) -> None:
            # The slow member's kernel send buffer, shrunk: loopback's autotuned one
            # takes megabytes before anything waits in the server (a client on a thin
            # link gets there after kilobytes).
            sock = ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SLOW_SNDBUF)
            await subscriber(ws, path)

        @router.route(PATH)
        async def subscriber(ws: Any, path: Any) -> None:
            nonlocal members
            async with broadcast.join(CHANNEL, ws):
                members += 1
                try:
                    await ws.send(JOINED)
                    async for _ in ws:
                        pass
                except Exception as exc:  # a connection closed by the broadcast
                    log.debug("subscriber ended: %r", exc)
                finally:
                    members -= 1
                    code = str(ws.close_code)
                    closes[code] = closes.get(code, 0) + 1

        async def publish_ours(data: bytes) -> None:
            await broadcast.publish(CHANNEL, data)

        options: dict[str, Any] = {}
        if args.close_timeout is not None:
            options["close_timeout"] = args.close_timeout
        server: Any = await serve(router, HOST, 0, **options)
        port = server.port
        publish = publish_ours

        async def stop_ours() -> None:
            server.close()
            await server.wait_closed()
            await broadcast.aclose()

        stop = stop_ours
    else:
        from websockets.asyncio.server import broadcast as ws_broadcast
        from websockets.asyncio.server import serve as ws_serve

        connections: set[Any] = set()

        async def handler(ws: Any) -> None:
            nonlocal members
            connections.add(ws)
            members += 1
            try:
                await ws.send(JOINED)
                async for _ in ws:
                    pass
            except Exception as exc:
                log.debug("subscriber ended: %r", exc)
            finally:
                members -= 1
                connections.discard(ws)
                code = str(ws.close_code)
                closes[code] = closes.get(code, 0) + 1

        async def publish_websockets(data: bytes) -> None:
            ws_broadcast(connections, data)
            await asyncio.sleep(0)

        ws_server = await ws_serve(handler, HOST, 0)
        port = ws_server.sockets[0].getsockname()[1]
        publish = publish_websockets

        async def stop_websockets() -> None:
            ws_server.close()
            await ws_server.wait_closed()

        stop = stop_websockets

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    reply("READY", port)
    try:
        while True:
            line = (await reader.readline()).decode().split()
            if not line or line[0] == "QUIT":
                break
            if line[0] == "PUBLISH":
                phase, count, interval_ns, size = map(int, line[1:5])
                try:
                    result = await run_publisher(publish, phase, count, interval_ns, size)
                except Exception as exc:  # BroadcastError: say so, keep serving
                    result = {"error": repr(exc)}
                reply("PUBLISHED", json.dumps(result))
            elif line[0] == "STATS":
                stats = {"members": members, "closes": closes, "overflows": overflows.count}
                reply("STATS", json.dumps(stats))
            else:
                reply("ERROR", json.dumps(f"unknown command {line[0]!r}"))
    finally:
        exit_soon()  # closing 1,000 connections is bounded too
        await stop()


async def run_publisher(
    publish: Callable[[bytes], Awaitable[None]],
    phase: int,
    count: int,
    interval_ns: int,
    size: int,
) -> dict[str, Any]:
    """Publish ``count`` messages: every ``interval_ns`` (0: back to back)."""
    buffer = bytearray(b"." * max(size, HEADER.size))
    start = time.monotonic_ns()
    late = 0
    t_first = 0
    for seq in range(count):
        if interval_ns:
            delay = start + seq * interval_ns - time.monotonic_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
            elif delay < -interval_ns:
                late += 1
        data = message(buffer, phase, seq)
        if seq == 0:
            t_first = HEADER.unpack_from(data)[2]
        await publish(data)
    return {"t_first_ns": t_first, "t_end_ns": time.monotonic_ns(), "count": count, "late": late}


def reply(word: str, *values: Any) -> None:
    sys.stdout.write(" ".join([word, *map(str, values)]) + "\n")
    sys.stdout.flush()


def server_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="fanout.py _server")
    parser.add_argument("kind", choices=["ours", "websockets"])
    parser.add_argument("--broadcast", default="memory://")
    parser.add_argument("--max-backlog", type=int, default=1 << 20)
    parser.add_argument("--close-timeout", type=float)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    raise_nofile_to_hard()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))
    run_loop(serve_fanout(args), args.uvloop)


def run_loop(coro: Any, use_uvloop: bool) -> None:
    if use_uvloop:
        import uvloop

        if hasattr(asyncio, "Runner"):
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(coro)
                return
        uvloop.install()  # Python 3.10
    asyncio.run(coro)


# The client processes: `fanout.py _clients --target PORT:N ...`, picows subscribers.
#
#   at start                                   ->  READY (every subscriber has joined)
#   RUN phase count timeout_s stall_s latfile  ->  ARMED, then RESULT {...} once every
#       subscriber got `count` messages of `phase` (or timeout / stall_s without one);
#       the latencies (ns, int64) go to latfile
#   QUIT (or the end of stdin)                 ->  close every connection and exit


@dataclass
class ClientState:
    phase: int = -1
    target: int = 0
    total: int = 0
    stray: int = 0
    out_of_order: int = 0
    first_ns: int = 0
    last_ns: int = 0
    latencies: array.array[int] = field(default_factory=lambda: array.array("q"))
    done: asyncio.Future[None] | None = None


def make_subscriber_class(picows: Any, state: ClientState) -> type:
    BINARY, TEXT, CLOSE = (
        picows.WSMsgType.BINARY,
        picows.WSMsgType.TEXT,
        picows.WSMsgType.CLOSE,
    )
    unpack = HEADER.unpack_from
    now = time.monotonic_ns

    class Subscriber(picows.WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            loop = asyncio.get_running_loop()
            self.joined: asyncio.Future[None] = loop.create_future()
            self.closed: asyncio.Future[None] = loop.create_future()
            self.count = 0
            self.next_seq = 0
            self.close_code: int | None = None

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            kind = frame.msg_type
            if kind is BINARY:
                t = now()
                phase, seq, sent = unpack(frame.get_payload_as_memoryview())
                if phase != state.phase:
                    state.stray += 1
                    return
                if seq != self.next_seq:
                    state.out_of_order += 1
                self.next_seq = seq + 1
                self.count += 1
                state.latencies.append(t - sent)
                state.last_ns = t
                state.total += 1
                if state.total == state.target and state.done is not None:
                    if not state.done.done():
                        state.done.set_result(None)
            elif kind is TEXT:
                if not self.joined.done():
                    self.joined.set_result(None)
            elif kind is CLOSE:
                self.close_code = int(frame.get_close_code())

        def on_ws_disconnected(self, transport: Any) -> None:
            if not self.joined.done():
                self.joined.set_exception(ConnectionError("disconnected before joining"))
            if not self.closed.done():
                self.closed.set_result(None)

    return Subscriber


def _tcp_socket(url: Any) -> socket.socket:
    """A socket for picows (no name resolution in a worker thread, as in load.py)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def run_clients(targets: list[tuple[int, int]]) -> None:
    import picows

    loop = asyncio.get_running_loop()
    state = ClientState()
    subscriber_class = make_subscriber_class(picows, state)
    gate = asyncio.Semaphore(50)
    subscribers: list[Any] = []

    async def connect(port: int) -> None:
        async with gate:
            listener: Any
            _, listener = await asyncio.wait_for(
                picows.ws_connect(
                    subscriber_class, f"ws://{HOST}:{port}{PATH}", socket_factory=_tcp_socket
                ),
                15.0,
            )
            subscribers.append(listener)
            await asyncio.wait_for(asyncio.shield(listener.joined), 15.0)

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        await asyncio.gather(*(connect(port) for port, n in targets for _ in range(n)))
        reply("READY", len(subscribers))
        while True:
            line = (await reader.readline()).decode().split()
            if not line or line[0] == "QUIT":
                break
            if line[0] != "RUN":
                reply("ERROR", json.dumps(f"unknown command {line[0]!r}"))
                continue
            phase, count = int(line[1]), int(line[2])
            timeout, stall, latfile = float(line[3]), float(line[4]), line[5]
            for subscriber in subscribers:
                subscriber.count = subscriber.next_seq = 0
            state.phase, state.total, state.stray, state.out_of_order = phase, 0, 0, 0
            state.target = count * len(subscribers)
            state.latencies = array.array("q")
            state.done = loop.create_future()
            state.last_ns = 0
            cpu0 = time.process_time()
            reply("ARMED")
            deadline = time.monotonic() + timeout
            progress, seen = time.monotonic(), 0
            for _ in range(int(timeout / 0.25) + 2):  # bounded: checks every 0.25 s
                if state.done.done() or time.monotonic() >= deadline:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(state.done), 0.25)
                if state.total != seen:
                    progress, seen = time.monotonic(), state.total
                elif time.monotonic() - progress > stall:
                    break
            cpu = time.process_time() - cpu0
            write_latencies(latfile, state.latencies)
            counts = [s.count for s in subscribers]
            result = {
                "subscribers": len(subscribers),
                "received": state.total,
                "expected": state.target,
                "complete_subscribers": sum(c == count for c in counts),
                "min_count": min(counts, default=0),
                "out_of_order": state.out_of_order,
                "stray": state.stray,
                "last_ns": state.last_ns,
                "cpu_s": cpu,
                "disconnected": sum(s.closed.done() for s in subscribers),
                "close_codes": sorted({s.close_code for s in subscribers if s.close_code}),
            }
            reply("RESULT", json.dumps(result))
    finally:
        for subscriber in subscribers:
            with contextlib.suppress(Exception):
                subscriber.transport.disconnect(graceful=False)


def write_latencies(path: str, latencies: array.array[int]) -> None:
    with open(path, "wb") as f:
        latencies.tofile(f)


def clients_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="fanout.py _clients")
    parser.add_argument("--target", action="append", default=[], metavar="PORT:N")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("picows").setLevel(logging.CRITICAL)
    raise_nofile_to_hard()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))
    targets = [(int(p), int(n)) for p, n in (t.split(":") for t in args.target)]
    try:
        import uvloop  # noqa: F401

        use_uvloop = True
    except ImportError:
        use_uvloop = False
    run_loop(run_clients(targets), use_uvloop)


# The parent: child processes spoken to in lines.


class Child:
    """A process started here, spoken to on stdin/stdout, its stderr in a log file."""

    def __init__(self, name: str, argv: list[str], logdir: str, preexec: Any = None) -> None:
        self.name = name
        self.log_path = os.path.join(logdir, f"{name}-{time.monotonic_ns()}.log")
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                preexec_fn=preexec,  # noqa: PLW1509 - only sets CPU affinity
                cwd=ROOT,
            )
        self.buffer = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise BenchError(f"{self.name} is gone:\n{self.log_tail()}") from exc

    def expect(self, word: str, timeout: float) -> str:
        """The rest of the next line that starts with ``word``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                line, _, self.buffer = self.buffer.partition(b"\n")
                head, _, rest = line.decode(errors="replace").partition(" ")
                if head == word:
                    return rest
                if head == "ERROR":
                    raise BenchError(f"{self.name}: {rest}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: no {word} in {timeout:.0f} s:\n{self.log_tail()}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BenchError(f"{self.name} exited:\n{self.log_tail()}")
                self.buffer += chunk

    def stop(self, timeout: float = 5.0) -> None:
        """QUIT, then the end of stdin, then SIGTERM, then SIGKILL."""
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.send("QUIT")
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def log_tail(self, lines: int = 15) -> str:
        return log_tail(self.log_path, lines)

    def status_kib(self, field_name: str) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
        raise BenchError(f"no {field_name} for {self.name}")

    def reset_peak_rss(self) -> bool:
        """VmHWM back to the current RSS (Linux: 5 > /proc/PID/clear_refs)."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def cpu_ns(self) -> int:
        return cpu_ns(self.pid)


class Redis:
    """redis-server on a free loopback port, persistence off (as tests/redis_server.py)."""

    def __init__(self, logdir: str, preexec: Any, argv_prefix: list[str]) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = os.path.join(logdir, "redis-server.log")
        for _ in range(5):  # another process may take the free port before redis does
            with socket.socket() as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            with open(self.log_path, "ab") as log_file:
                proc = subprocess.Popen(
                    [
                        *argv_prefix,
                        REDIS_SERVER,
                        "--port",
                        str(port),
                        "--bind",
                        HOST,
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--protected-mode",
                        "no",
                        "--loglevel",
                        "warning",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    preexec_fn=preexec,  # noqa: PLW1509 - only sets CPU affinity
                )
            self.proc = proc
            deadline = time.monotonic() + 10.0
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    socket.create_connection((HOST, port), timeout=0.5).close()
                    self.port = port
                    return
                time.sleep(0.02)  # polling for the port, not waiting a fixed time
            self.stop()
        raise BenchError(f"redis-server did not start:\n{self.log_tail()}")

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def log_tail(self) -> str:
        return log_tail(self.log_path, 10)


class SlowMember:
    """A subscriber that never reads (a small receive buffer), on a blocking socket
    here in the parent; ``outcome()`` reads what reached it, to the close frame."""

    KEY = "dGhlIHNhbXBsZSBub25jZQ=="

    def __init__(self, port: int, rcvbuf: int = SLOW_RCVBUF) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10.0)
        self.sock.connect((HOST, port))
        self.sock.sendall(
            (
                f"GET {SLOW_PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.KEY}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        joined = bytes([0x81, len(JOINED)]) + JOINED.encode()
        received = b""
        for _ in range(1000):
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            received += chunk
            end = received.find(b"\r\n\r\n")
            if end >= 0 and len(received) >= end + 4 + len(joined):
                break
        end = received.find(b"\r\n\r\n")
        if not received.startswith(b"HTTP/1.1 101 ") or received[end + 4 :] != joined:
            self.sock.close()
            raise BenchError(f"slow member: unexpected answer {received[:200]!r}")

    def outcome(self, timeout: float = 30.0, quiet: float = 2.0) -> dict[str, Any]:
        """Read until the close frame, the end of the stream, ``quiet`` seconds without
        a byte (called once the burst is over: what the server decided is on its way)
        or ``timeout``."""
        data = bytearray()
        messages, close_code, ended = 0, None, "timeout"
        deadline = time.monotonic() + timeout
        self.sock.settimeout(quiet)
        pos = 0
        while time.monotonic() < deadline and close_code is None:
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                ended = f"open: no close frame, nothing more in {quiet:g} s"
                break
            except OSError as exc:
                ended = f"error: {exc.strerror or exc}"
                break
            if not chunk:
                ended = "end of stream"
                break
            data += chunk
            while True:  # the complete frames in data[pos:]
                frame = _parse_frame(data, pos)
                if frame is None:
                    break
                opcode, payload, pos = frame
                if opcode == 0x8:
                    close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                    ended = "close frame"
                    with contextlib.suppress(OSError):  # answer it, masked (zero key)
                        self.sock.sendall(
                            bytes([0x88, 0x80 | len(payload[:2]), 0, 0, 0, 0]) + payload[:2]
                        )
                    break
                if opcode in (0x1, 0x2):
                    messages += 1
        self.sock.close()
        return {
            "close_code": close_code,
            "ended": ended,
            "bytes_read": len(data),
            "messages_read": messages,
        }


def _parse_frame(data: bytearray, pos: int) -> tuple[int, bytes, int] | None:
    """(opcode, payload, next position) of the unmasked frame at ``pos``, if complete."""
    if len(data) - pos < 2:
        return None
    b0, b1 = data[pos], data[pos + 1]
    length, at = b1 & 0x7F, pos + 2
    if length == 126:
        if len(data) - at < 2:
            return None
        length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
    elif length == 127:
        if len(data) - at < 8:
            return None
        length, at = int.from_bytes(data[at : at + 8], "big"), at + 8
    if len(data) - at < length:
        return None
    return b0 & 0x0F, bytes(data[at : at + length]), at + length


# One configuration's processes.


@dataclass
class Setup:
    name: str
    servers: list[Child]  # the publisher is servers[0]
    ports: list[int]
    clients: list[Child]
    subscribers: int
    slow: bool = False
    redis_pid: int | None = None

    def server_pids(self) -> list[int]:
        """The server side's processes, redis-server included."""
        return [s.pid for s in self.servers] + ([self.redis_pid] if self.redis_pid else [])

    def all(self) -> list[Child]:
        return [*self.clients, *self.servers]


@dataclass
class Options:
    configs: list[str]
    subscribers: int
    messages: int
    latency_messages: int
    rate: float
    size: int
    rounds: int
    client_procs: int
    slow_max_backlog: int
    slow_messages: int
    slow_close_timeout: float
    uvloop: bool
    quiet: bool
    warmup: int


_T0 = time.monotonic()


def say(options: Options, text: str) -> None:
    if not options.quiet:
        print(f"[{time.monotonic() - _T0:6.1f}s] {text}", file=sys.stderr, flush=True)


class Run:
    """Everything one run started (stopped in ``stop_all``) and everything it measured."""

    def __init__(self, options: Options, pinning: Pinning, logdir: str) -> None:
        self.options = options
        self.pinning = pinning
        self.logdir = logdir
        self.children: list[Child] = []
        self.redis: Redis | None = None
        self.pids: list[int] = []
        self.phase = 0
        self.skipped: dict[str, str] = {}
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.checks: dict[str, dict[str, int]] = {}
        self.slow_rounds: list[dict[str, Any]] = []

    # Processes.

    def start_server(self, name: str, kind: str, *extra: str) -> Child:
        argv = [sys.executable, THIS, "_server", kind, *extra]
        if self.options.uvloop:
            argv.append("--uvloop")
        argv, preexec = self.pinning.server_command(argv)
        child = Child(name, argv, self.logdir, preexec)
        self.children.append(child)
        self.pids.append(child.pid)
        return child

    def start_clients(self, name: str, targets: list[tuple[int, int]]) -> Child:
        argv = [sys.executable, THIS, "_clients"]
        for port, n in targets:
            argv += ["--target", f"{port}:{n}"]
        preexec = None
        cpu = self.pinning.client_cpu
        if cpu is not None:
            if self.pinning.taskset:
                argv = [self.pinning.taskset, "-c", str(cpu), *argv]
            else:
                preexec = lambda: os.sched_setaffinity(0, {cpu})  # noqa: E731
        child = Child(name, argv, self.logdir, preexec)
        self.children.append(child)
        self.pids.append(child.pid)
        return child

    def start_redis(self) -> Redis:
        if self.redis is None:
            prefix, preexec = self.pinning.server_command([])
            self.redis = Redis(self.logdir, preexec, prefix)
            self.pids.append(self.redis.pid)
        return self.redis

    def stop_all(self) -> None:
        # Clients first (their connections end), then the servers, then Redis.
        for child in self.children:
            if child.alive():
                with contextlib.suppress(Exception):
                    child.send("QUIT")
        for child in self.children:
            child.stop()
        if self.redis is not None:
            self.redis.stop()

    def setup(self, name: str) -> Setup:
        """Start a configuration's servers, then its clients, all connected."""
        options = self.options
        n = options.subscribers
        if name == "ours-redis-2proc":
            url = self.start_redis().url
            servers = [
                self.start_server(f"{name}-{i}", "ours", "--broadcast", url) for i in range(2)
            ]
        elif name == "websockets-broadcast":
            servers = [self.start_server(name, "websockets")]
        elif name == "slow-member":
            servers = [
                self.start_server(
                    name,
                    "ours",
                    "--max-backlog",
                    str(options.slow_max_backlog),
                    "--close-timeout",
                    str(options.slow_close_timeout),
                )
            ]
        else:
            servers = [self.start_server(name, "ours")]
        ports = [int(server.expect("READY", 30.0)) for server in servers]
        # Each client process holds an even share of the subscribers, spread evenly
        # over the servers.
        procs = max(1, min(options.client_procs, n))
        shares = [n // procs + (i < n % procs) for i in range(procs)]
        clients = []
        for i, share in enumerate(shares):
            per = [share // len(ports) + (j < share % len(ports)) for j in range(len(ports))]
            targets = [(port, k) for port, k in zip(ports, per, strict=True) if k]
            clients.append(self.start_clients(f"{name}-clients{i}", targets))
        connect_timeout = 30.0 + n / 50
        joined = sum(int(client.expect("READY", connect_timeout)) for client in clients)
        if joined != n:
            raise BenchError(f"{name}: {joined} of {n} subscribers joined")
        redis_pid = self.redis.pid if self.redis and name == "ours-redis-2proc" else None
        return Setup(name, servers, ports, clients, n, name == "slow-member", redis_pid)

    # Measurements.

    def phase_run(
        self, setup: Setup, count: int, interval_ns: int
    ) -> tuple[dict[str, Any], array.array[int]]:
        """One phase: arm the clients, publish, collect. Returns totals and latencies."""
        self.phase += 1
        phase = self.phase
        n = setup.subscribers
        duration = count * interval_ns / 1e9
        timeout = 30.0 + duration + count * n / 20_000
        files = []
        for i, client in enumerate(setup.clients):
            path = os.path.join(self.logdir, f"lat-{setup.name}-{i}.bin")
            files.append(path)
            client.send(f"RUN {phase} {count} {timeout:.1f} 10 {path}")
        for client in setup.clients:
            client.expect("ARMED", 10.0)
        cpu0 = [cpu_ns(pid) for pid in setup.server_pids()]
        publisher = setup.servers[0]
        publisher.send(f"PUBLISH {phase} {count} {interval_ns} {self.options.size}")
        published = json.loads(publisher.expect("PUBLISHED", timeout))
        if "error" in published:
            raise BenchError(f"{setup.name}: publisher failed: {published['error']}")
        results = [json.loads(client.expect("RESULT", timeout + 10.0)) for client in setup.clients]
        cpu1 = [cpu_ns(pid) for pid in setup.server_pids()]
        server_cpu = sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) / 1e9
        latencies: array.array[int] = array.array("q")
        for path in files:
            with open(path, "rb") as f:
                latencies.frombytes(f.read())
            os.unlink(path)
        received = sum(r["received"] for r in results)
        last = max(r["last_ns"] for r in results)
        elapsed = (last - published["t_first_ns"]) / 1e9 if received else 0.0
        totals = {
            "received": received,
            "expected": count * n,
            "incomplete_subscribers": sum(
                r["subscribers"] - r["complete_subscribers"] for r in results
            ),
            "out_of_order": sum(r["out_of_order"] for r in results),
            "stray": sum(r["stray"] for r in results),
            "late_publishes": published.get("late", 0),
            "elapsed_s": elapsed,
            "deliveries_per_s": received / elapsed if elapsed > 0 else 0.0,
            "server_cpu_share": server_cpu / elapsed if elapsed > 0 else 0.0,
            "server_cpu_us_per_delivery": server_cpu * 1e6 / received if received else math.nan,
            "client_cpu_share": sum(r["cpu_s"] for r in results) / elapsed if elapsed > 0 else 0.0,
        }
        return totals, latencies

    def measure(self, setup: Setup, round_no: int) -> None:
        options = self.options
        name = setup.name
        slow: SlowMember | None = None
        slow_info: dict[str, Any] = {}
        server = setup.servers[0]
        if setup.slow:
            slow = SlowMember(setup.ports[0])
        try:
            if slow is not None:
                stats = json.loads(self.stats(server))
                slow_info["members_before"] = stats["members"]
                slow_info["overflows_before"] = stats["overflows"]
                slow_info["rss_before_kib"] = server.status_kib("VmRSS")
                slow_info["peak_reset"] = server.reset_peak_rss()
            interval = round(1e9 / options.rate)
            paced, paced_lat = self.phase_run(setup, options.latency_messages, interval)
            count = options.slow_messages if setup.slow else options.messages
            burst, burst_lat = self.phase_run(setup, count, 0)
        except BaseException:
            if slow is not None:
                slow.sock.close()
            raise
        sample = {
            "deliveries_per_s": burst["deliveries_per_s"],
            "p50_us": percentile(paced_lat, 0.50) / 1000,
            "p99_us": percentile(paced_lat, 0.99) / 1000,
            "burst_p50_us": percentile(burst_lat, 0.50) / 1000,
            "burst_p99_us": percentile(burst_lat, 0.99) / 1000,
            "server_cpu_us_per_delivery": burst["server_cpu_us_per_delivery"],
            "server_cpu_share": burst["server_cpu_share"],
            "client_cpu_share": burst["client_cpu_share"],
        }
        for key, value in sample.items():
            self.samples.setdefault(name, {}).setdefault(key, []).append(value)
        checks = self.checks.setdefault(name, {})
        for phase in (paced, burst):
            for key in (
                "received",
                "expected",
                "incomplete_subscribers",
                "out_of_order",
                "stray",
                "late_publishes",
            ):
                checks[key] = checks.get(key, 0) + phase[key]
        if slow is not None:
            slow_info["rss_after_kib"] = server.status_kib("VmRSS")
            slow_info["rss_peak_kib"] = server.status_kib("VmHWM")
            slow_info["client"] = slow.outcome(timeout=options.slow_close_timeout + 10)
            stats = json.loads(self.stats(server))
            slow_info["members_after"] = stats["members"]
            slow_info["overflow_closes"] = stats["overflows"] - slow_info.pop("overflows_before")
            slow_info["server_close_codes"] = stats["closes"]
            slow_info["others_deliveries_per_s"] = burst["deliveries_per_s"]
            slow_info["others_complete"] = (
                paced["incomplete_subscribers"] + burst["incomplete_subscribers"] == 0
            )
            self.slow_rounds.append(slow_info)
        say(
            options,
            f"round {round_no + 1}/{options.rounds} {name:21} "
            f"{burst['deliveries_per_s']:10.0f} deliveries/s  p50 {sample['p50_us']:8.0f} µs"
            f"  p99 {sample['p99_us']:8.0f} µs  (burst {burst['elapsed_s']:.2f} s; cpu busy:"
            f" servers {burst['server_cpu_share']:.0%}, clients {burst['client_cpu_share']:.0%})"
            + (
                f"  [{burst['received']}/{burst['expected']} delivered]"
                if burst["received"] != burst["expected"]
                else ""
            )
            + (
                f"  slow member: {slow_info['client']['ended']} {slow_info['client']['close_code']},"
                f" RSS {slow_info['rss_before_kib']} -> {slow_info['rss_after_kib']} KiB"
                f" (peak {slow_info['rss_peak_kib']})"
                if slow is not None
                else ""
            ),
        )

    def stats(self, server: Child) -> str:
        server.send("STATS")
        return server.expect("STATS", 10.0)

    def warm_up(self, setup: Setup) -> None:
        if self.options.warmup:
            self.phase_run(setup, self.options.warmup, 0)


def percentile(values: array.array[int], q: float) -> float:
    """Nearest rank; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def median(values: list[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else None


def run(options: Options, run_: Run) -> None:
    setups: dict[str, Setup] = {}
    for name in options.configs:
        if name == "ours-redis-2proc":
            why = redis_missing()
            if why:
                run_.skipped[name] = why
                say(options, f"note: skipping {name}: {why}")
                continue
        say(options, f"starting {name}: {options.subscribers} subscribers")
        try:
            setup = run_.setup(name)
            setups[name] = setup
            run_.warm_up(setup)
        except BenchError as exc:
            run_.skipped[name] = str(exc).splitlines()[0]
            say(options, f"note: {exc}")
    names = list(setups)
    for round_no in range(options.rounds):
        shift = round_no % max(1, len(names))
        for name in names[shift:] + names[:shift]:
            if name in run_.skipped:
                continue
            try:
                run_.measure(setups[name], round_no)
            except BenchError as exc:
                run_.skipped[name] = str(exc).splitlines()[0]
                say(options, f"note: round {round_no + 1} {name}: {exc}")


def redis_missing() -> str | None:
    if not os.path.exists(REDIS_SERVER):
        return f"{REDIS_SERVER} is missing (apt-get install redis-server)"
    try:
        import coredis  # noqa: F401
    except ImportError:
        return "coredis is missing (pip install 'websockets-routes[redis]')"
    return None


# Results.


def to_json(run_: Run, meta: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, metrics in run_.samples.items():
        checks = run_.checks.get(name, {})
        entry: dict[str, Any] = {
            key: {"rounds": values, "median": median(values)} for key, values in metrics.items()
        }
        entry.update(checks)
        entry["complete"] = (
            checks.get("received") == checks.get("expected")
            and checks.get("incomplete_subscribers") == 0
            and checks.get("out_of_order") == 0
        )
        entry["note"] = NOTES[name]
        results[name] = entry
    ratios = {}
    for top, bottom, target in RATIOS:
        value = ratio(results, top, bottom)
        if value is not None:
            ratios[f"{top} / {bottom}"] = {
                "value": value,
                # each round's own ratio: how much the noise moved it
                "rounds": [
                    a / b
                    for a, b in zip(
                        results[top]["deliveries_per_s"]["rounds"],
                        results[bottom]["deliveries_per_s"]["rounds"],
                        strict=False,  # a configuration dropped mid-run has fewer
                    )
                    if a and b
                ],
                # lower is better: top's server CPU per delivery over bottom's
                "cpu_per_delivery": ratio(results, top, bottom, "server_cpu_us_per_delivery"),
                "target": target,
                "met": None if target is None else value >= target,
            }
    slow: dict[str, Any] | None = None
    if run_.slow_rounds:
        slow = {
            "rounds": run_.slow_rounds,
            "max_backlog": run_.options.slow_max_backlog,
            "got_1013": all(r["client"]["close_code"] == 1013 for r in run_.slow_rounds),
            "others_complete": all(r["others_complete"] for r in run_.slow_rounds),
            "rss_growth_kib_max": max(
                r["rss_after_kib"] - r["rss_before_kib"] for r in run_.slow_rounds
            ),
        }
    return {
        "meta": meta,
        "skipped": run_.skipped,
        "pids": run_.pids,
        "results": results,
        "ratios": ratios,
        "slow_member": slow,
    }


def ratio(results: dict[str, Any], top: str, bottom: str, key: str = "deliveries_per_s") -> Any:
    """top's median over bottom's."""
    if top not in results or bottom not in results:
        return None
    a, b = results[top][key]["median"], results[bottom][key]["median"]
    return a / b if a and b else None


COLUMNS = [
    # (header, key, scale, format)
    ("deliveries/s", "deliveries_per_s", 1.0, "{:,.0f}"),
    ("p50 µs", "p50_us", 1.0, "{:,.0f}"),
    ("p99 µs", "p99_us", 1.0, "{:,.0f}"),
    ("server CPU µs/delivery", "server_cpu_us_per_delivery", 1.0, "{:.2f}"),
    ("burst p50 ms", "burst_p50_us", 1000.0, "{:,.1f}"),
    ("burst p99 ms", "burst_p99_us", 1000.0, "{:,.1f}"),
]


def format_table(report: dict[str, Any]) -> str:
    rows = [["configuration", *(c[0] for c in COLUMNS), "all delivered", "busy: servers, clients"]]
    for name, entry in report["results"].items():
        row = [name]
        for _, key, scale, fmt in COLUMNS:
            value = entry[key]["median"]
            row.append("-" if value is None else fmt.format(value / scale))
        row.append("yes" if entry["complete"] else f"NO ({entry['received']}/{entry['expected']})")
        busy = [entry[k]["median"] for k in ("server_cpu_share", "client_cpu_share")]
        row.append(", ".join("-" if v is None else f"{v:.0%}" for v in busy))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    meta = report["meta"]
    out = [
        f"Fan-out to {meta['subscribers']} subscribers, {meta['size']}-byte messages, medians "
        f"of {meta['rounds']} round(s): deliveries/s and server CPU over a burst of "
        f"{meta['messages']} messages (slow-member: {meta['slow_messages']}); p50/p99 "
        f"publish-to-receive latency at {meta['rate']:g} messages/s "
        f"({meta['latency_messages']} messages)",
        *lines,
        "",
    ]
    for label, r in report["ratios"].items():
        line = f"ratio {label}: {r['value']:.2f}x deliveries/s"
        if len(r["rounds"]) > 1:
            line += f" (rounds {min(r['rounds']):.2f}-{max(r['rounds']):.2f})"
        if r["target"] is not None:
            line += f" (target >= {r['target']}x: {'met' if r['met'] else 'NOT met'})"
        if r.get("cpu_per_delivery") is not None:
            bottom = label.split(" / ")[1]
            line += f"; server CPU per delivery {r['cpu_per_delivery']:.2f}x {bottom}'s"
        out.append(line)
    slow = report.get("slow_member")
    if slow:
        out.append(
            f"slow member (max_backlog {slow['max_backlog']} B): closed with 1013 in every "
            f"round: {'yes' if slow['got_1013'] else 'NO'}; the others got every message: "
            f"{'yes' if slow['others_complete'] else 'NO'}; server RSS before -> after "
            "(peak) per round: "
            + ", ".join(
                f"{r['rss_before_kib']} -> {r['rss_after_kib']} ({r['rss_peak_kib']}) KiB"
                for r in slow["rounds"]
            )
        )
    out.append(f"{meta['pinning']}; servers on {meta['servers_loop']}; clients: {meta['client']}")
    changed = meta["uncommitted_in_websockets_routes"]
    out.append(
        f"commit {meta['commit']}"
        + (f" with {len(changed)} uncommitted file(s) in websockets_routes" if changed else "")
        + f", Python {meta['python']}, {meta['cpus']} CPUs"
    )
    return "\n".join(out)


# Command line.


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"configurations: {', '.join(CONFIGS)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds: 100 subscribers, 200 messages, 1 round, 1 client process",
    )
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--subscribers", type=int, help="subscribers (default 1000)")
    parser.add_argument("--messages", type=int, help="messages of the burst phase (1000)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5)")
    parser.add_argument("--latency-messages", type=int, help="messages of the latency phase (60)")
    parser.add_argument("--rate", type=float, help="messages/s of the latency phase (20)")
    parser.add_argument("--size", type=int, default=64, help="message size, bytes (64)")
    parser.add_argument("--client-procs", type=int, help="client processes per config (2)")
    parser.add_argument(
        "--slow-max-backlog",
        type=int,
        default=64 * 1024,
        help="max_backlog of the slow-member server, bytes (65536: the asyncio server "
        "looks at a backlog once past asyncio's 64 KiB high-water mark)",
    )
    parser.add_argument(
        "--slow-close-timeout",
        type=float,
        default=60.0,
        help="close_timeout of the slow-member server: how long its 1013 close waits "
        "for the slow reader, which reads only after the burst (60)",
    )
    parser.add_argument(
        "--slow-messages",
        type=int,
        help="messages of the slow-member burst (default: --messages, at least 2000: "
        "enough to fill the slow member's buffers past max_backlog)",
    )
    parser.add_argument("--warmup", type=int, help="unmeasured messages per config first")
    parser.add_argument("--uvloop", action="store_true", help="run the servers on uvloop")
    parser.add_argument("--client-cpu", type=int)
    parser.add_argument("--server-cpu", type=int)
    parser.add_argument("--json", metavar="FILE", help="write results as JSON ('-': stdout)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    for value, name in [
        (args.subscribers, "--subscribers"),
        (args.messages, "--messages"),
        (args.rounds, "--rounds"),
        (args.latency_messages, "--latency-messages"),
        (args.rate, "--rate"),
        (args.client_procs, "--client-procs"),
        (args.slow_max_backlog, "--slow-max-backlog"),
        (args.slow_close_timeout, "--slow-close-timeout"),
        (args.slow_messages, "--slow-messages"),
    ]:
        if value is not None and value <= 0:
            parser.error(f"{name} must be positive")
    if args.size < HEADER.size:
        parser.error(f"--size must be at least {HEADER.size}")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for name in configs:
        if name not in CONFIGS:
            parser.error(f"unknown configuration {name!r}; known: {', '.join(CONFIGS)}")
    quick = args.quick
    messages = args.messages or (200 if quick else 1000)
    options = Options(
        configs=[c for c in CONFIGS if c in configs],
        subscribers=args.subscribers or (100 if quick else 1000),
        messages=messages,
        slow_messages=args.slow_messages or max(messages, 2000),
        latency_messages=args.latency_messages or (40 if quick else 60),
        rate=args.rate or (100.0 if quick else 20.0),
        size=args.size,
        rounds=args.rounds or (1 if quick else 5),
        client_procs=args.client_procs or (1 if quick else 2),
        slow_max_backlog=args.slow_max_backlog,
        slow_close_timeout=args.slow_close_timeout,
        uvloop=args.uvloop,
        quiet=args.quiet,
        warmup=args.warmup if args.warmup is not None else (20 if quick else 100),
    )
    return options, args


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_state() -> dict[str, Any]:
    """The commit measured, and the files of the measured package that differ from it."""
    changed = git("status", "--porcelain", "--", "websockets_routes")
    return {
        "commit": git("rev-parse", "--short=7", "HEAD"),
        "uncommitted_in_websockets_routes": changed.splitlines() if changed else [],
    }


def main(argv: list[str] | None = None) -> int:
    options, args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    pinning = Pinning(args.client_cpu, args.server_cpu)
    pinning.pin_self()
    raise_nofile(options.subscribers + 200)
    say(options, f"pinning: {pinning.note}")
    try:
        import uvloop  # noqa: F401

        client_loop = "uvloop"
    except ImportError:
        client_loop = "asyncio"
    meta = {
        "command": "python "
        + " ".join(shlex.quote(a) for a in ["benchmarks/fanout.py", *sys.argv[1:]])
        if argv is None
        else "fanout.main(" + repr(argv) + ")",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        **source_state(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "servers_loop": "uvloop" if options.uvloop else "asyncio",
        "client": f"picows on {client_loop}, {options.client_procs} process(es) per config",
        "pinning": pinning.note,
        "subscribers": options.subscribers,
        "messages": options.messages,
        "slow_messages": options.slow_messages,
        "latency_messages": options.latency_messages,
        "rate": options.rate,
        "size": options.size,
        "rounds": options.rounds,
        "configs": {name: NOTES[name] for name in options.configs},
    }

    interrupted = False

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with tempfile.TemporaryDirectory(prefix="ws-fanout-") as logdir:
            run_ = Run(options, pinning, logdir)
            try:
                run(options, run_)
            except KeyboardInterrupt:
                interrupted = True
                say(options, "interrupted: stopping every process")
            finally:
                run_.stop_all()
    finally:
        signal.signal(signal.SIGTERM, previous)

    report = to_json(run_, meta)
    table = format_table(report)
    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        print(table, file=sys.stderr)
    else:
        print(table)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
    for name, why in run_.skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    return 130 if interrupted else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_server"]:
        server_main(sys.argv[2:])
    elif sys.argv[1:2] == ["_clients"]:
        clients_main(sys.argv[2:])
    else:
        sys.exit(main())
