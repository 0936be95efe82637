"""The handshake clients of ``benchmarks/load.py``: lean enough that the server is the
busy side.

One handshake round is ``HandshakeScript``: a fixed upgrade request; the 101 checked
(status line and Sec-WebSocket-Accept) and the server's hello frame read; a masked close
sent; the server's close frame and FIN awaited. Three clients run it:

- ``HandshakeClients`` (load.py's default): worker processes, each an epoll loop over
  plain non-blocking sockets (``drive()``), no event loop library and no object per
  connection beyond its socket and a small list. It spends about 50 µs of client CPU per
  handshake at 50 connections on the machine of docs/performance.md, half of what our
  server spends, so the client core stays well under 80% busy while the server's is
  full. Every worker is a process of its own, pinned to one of the client's cores.
- ``HandshakeScript.run()`` with ``HandshakeProbe``: the round as an asyncio Protocol on
  the running loop (load.py's ``--handshake-client probe``; benchmarks/callgrind.py).
  About 90 µs per handshake, so at 50 connections its core was 88% busy.
- ``HandshakeScript.run_blocking()``: the round on a blocking socket.

``python benchmarks/handshakes.py --worker`` is one worker process: it reads one JSON
command per line on stdin (``{"port", "connections", "measure_from", "deadline"}``,
times on the system-wide monotonic clock, which ``time.monotonic()`` reads in every
process), runs ``drive()`` and writes its result as one JSON line on stdout; it ends
at the end of its stdin, so a parent that dies leaves no worker behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from servers import HELLO, HIT_TARGET, HOST  # noqa: E402


class HandshakeScript:
    """One handshake-workload round as bytes, for the lean clients: picows spent
    300-450 µs of client CPU per handshake on this machine, so at 50 connections it
    saturated its core while our server idled at 55-65%."""

    KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the sample key of RFC 6455, section 1.3
    ACCEPT = base64.b64encode(
        hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    )
    HELLO_FRAME = bytes([0x81, len(HELLO)]) + HELLO.encode()
    CLOSE_FRAME = bytes([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])  # code 1000, zero mask

    def __init__(self, port: int) -> None:
        self.request = (
            f"GET {HIT_TARGET} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.port = port

    def hello_end(self, received: bytes) -> int | None:
        """Where the hello frame ends in `received`, None while incomplete; raises
        ConnectionError for anything but a 101 with the right accept and the hello."""
        end = received.find(b"\r\n\r\n")
        if end < 0 or len(received) < end + 4 + len(self.HELLO_FRAME):
            return None
        after = end + 4 + len(self.HELLO_FRAME)
        if (
            not received.startswith(b"HTTP/1.1 101 ")
            or self.ACCEPT not in received[:end]
            or received[end + 4 : after] != self.HELLO_FRAME
        ):
            raise ConnectionError(f"unexpected answer: {received[:200]!r}")
        return after

    def check_close(self, after_hello: bytes) -> None:
        if after_hello[:1] != b"\x88":
            raise ConnectionError(f"no close frame before EOF: {after_hello[:200]!r}")

    def run_blocking(self, timeout: float = 10.0) -> None:
        """The round on a blocking socket."""
        with socket.create_connection((HOST, self.port), timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(self.request)
            received = b""
            after = None
            while after is None:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed early: {received[:200]!r}")
                received += chunk
                after = self.hello_end(received)
            sock.sendall(self.CLOSE_FRAME)
            rest = received[after:]
            while chunk := sock.recv(65536):
                rest += chunk
            self.check_close(rest)

    async def run(self) -> None:
        """The round on the running loop, as a Protocol: many run concurrently."""
        loop = asyncio.get_running_loop()
        sock = _tcp_socket(None)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, (HOST, self.port))
        except BaseException:
            sock.close()
            raise
        done: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.create_connection(lambda: HandshakeProbe(self, done), sock=sock)
        try:
            await done
        finally:
            transport.abort()


class HandshakeProbe(asyncio.Protocol):
    def __init__(self, script: HandshakeScript, done: asyncio.Future[None]) -> None:
        self.script = script
        self.done = done
        self.received = b""
        self.after_hello: int | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.script.request)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.after_hello is not None:
            return
        try:
            self.after_hello = self.script.hello_end(self.received)
        except ConnectionError as exc:
            if not self.done.done():
                self.done.set_exception(exc)
            self.transport.abort()
            return
        if self.after_hello is not None:
            self.transport.write(self.script.CLOSE_FRAME)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        try:
            if self.after_hello is None:
                raise ConnectionError(f"closed early: {self.received[:200]!r}")
            self.script.check_close(self.received[self.after_hello :])
        except ConnectionError as error:
            self.done.set_exception(error)
        else:
            self.done.set_result(None)


def _tcp_socket(url: Any) -> socket.socket:
    """A fresh socket for picows to connect to HOST (an IP address): without one,
    picows resolves the name in a libuv worker thread on every connect, which costs
    the client 100-150 µs per handshake and makes handshake-50 measure the client."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# The epoll client. A connection is a list [socket, bytes received, end of the hello]:
# received is None while the request waits for the connect to finish, the end is -1
# until the hello is in.
SOCKET, RECEIVED, AFTER_HELLO = 0, 1, 2


def drive(
    port: int,
    connections: int,
    measure_from: float,
    deadline: float,
    stall: float = 10.0,
    max_errors: int = 100,
) -> dict[str, Any]:
    """Keep `connections` handshake rounds going against 127.0.0.1:`port` until
    `deadline` (monotonic clock), then let the open ones finish. Returns the rounds
    completed between the first look at the clock at or after `measure_from` and the
    first at or after `deadline` (``count``, with those two times ``t0`` and ``t1``),
    ``errors``, and ``error`` (why the run stopped early, else None)."""
    script = HandshakeScript(port)
    request, close_frame = script.request, script.CLOSE_FRAME
    hello_end, check_close = script.hello_end, script.check_close
    address = (HOST, port)
    poller = select.epoll()
    open_: dict[int, list[Any]] = {}
    completed = errors = 0
    error: str | None = None
    marks: dict[str, float] = {}
    EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
    SOL_TCP, NODELAY = socket.IPPROTO_TCP, socket.TCP_NODELAY

    def start() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(SOL_TCP, NODELAY, 1)
        sock.connect_ex(address)
        fd = sock.fileno()
        # On loopback the connect is usually done by the time connect_ex returns, so
        # the request goes at once, without a wait for writability.
        try:
            sock.send(request)
        except BlockingIOError:
            poller.register(fd, EPOLLOUT)
            open_[fd] = [sock, None, -1]
        except OSError:
            sock.close()
            raise
        else:
            poller.register(fd, EPOLLIN)
            open_[fd] = [sock, b"", -1]

    def drop(fd: int) -> None:
        conn = open_.pop(fd, None)
        if conn is not None:
            conn[SOCKET].close()  # also leaves the epoll set

    running = True
    try:
        for _ in range(connections):
            start()
        last_event = time.monotonic()
        for _ in range(10**9):  # a bound, whatever the clock does
            now = time.monotonic()
            if "t0" not in marks and now >= measure_from:
                marks["t0"], marks["count0"] = now, completed
            if running and now >= deadline:
                marks["t1"], marks["count1"] = now, completed
                running = False
            if not open_:
                break
            next_mark = measure_from if "t0" not in marks else deadline
            wait = last_event + stall - now
            if running:
                wait = min(wait, max(0.0, next_mark - now))
            if wait <= 0:
                error = f"no progress for {stall:g} s with {len(open_)} connections open"
                break
            events = poller.poll(wait)
            if not events:
                continue
            last_event = time.monotonic()
            for fd, _ in events:
                conn = open_[fd]
                sock = conn[SOCKET]
                try:
                    if conn[RECEIVED] is None:
                        sock.send(request)
                        poller.modify(fd, EPOLLIN)
                        conn[RECEIVED] = b""
                        continue
                    data = sock.recv(65536)
                    if data:
                        received = conn[RECEIVED] + data
                        conn[RECEIVED] = received
                        if conn[AFTER_HELLO] < 0:
                            after = hello_end(received)
                            if after is not None:
                                conn[AFTER_HELLO] = after
                                sock.send(close_frame)
                        continue
                    if conn[AFTER_HELLO] < 0:
                        raise ConnectionError(f"closed early: {conn[RECEIVED][:200]!r}")
                    check_close(conn[RECEIVED][conn[AFTER_HELLO] :])
                    completed += 1
                except OSError as exc:  # ConnectionError included
                    errors += 1
                    if errors > max_errors:
                        error = f"too many failures: {exc!r}"
                        running = False
                drop(fd)
                if running:
                    try:
                        start()
                    except OSError as exc:
                        errors += 1
                        error = f"cannot connect: {exc!r}"
                        running = False
            if error is not None and not running:
                break
    finally:
        for fd in list(open_):
            drop(fd)
        poller.close()
    if "t1" not in marks:
        error = error or "stopped before the deadline"
    return {
        "count": marks.get("count1", 0) - marks.get("count0", 0),
        "t0": marks.get("t0", 0.0),
        "t1": marks.get("t1", 0.0),
        "errors": errors,
        "error": error,
    }


class HandshakeClients:
    """`processes` worker processes running ``drive()``, pinned to the cpus of `cpus`
    in turn (unpinned without). ``start()`` splits the connections of one measurement
    among them; ``collect()`` waits for their results. A worker that did not answer
    in time may answer late, which would be taken for the next result: after such a
    failure every later start() raises ConnectionError."""

    def __init__(self, processes: int, cpus: list[int] | None, log_path: str = os.devnull) -> None:
        self.cpus = sorted(set(cpus)) if cpus else []
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.busy: list[subprocess.Popen[bytes]] = []
        self.failed = ""
        try:
            for i in range(processes):
                proc = subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "--worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=self.log,
                )
                self.procs.append(proc)
                if self.cpus:
                    os.sched_setaffinity(proc.pid, {self.cpus[i % len(self.cpus)]})
        except BaseException:
            self.stop()
            raise

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    @property
    def cores(self) -> int:
        """How many cores the workers have between them (for a busy share of 0-1)."""
        if self.cpus:
            return min(len(self.cpus), len(self.procs))
        return min(os.cpu_count() or 1, len(self.procs))

    def start(self, port: int, connections: int, measure_from: float, deadline: float) -> None:
        if self.failed:
            raise ConnectionError(f"handshake clients out of order: {self.failed}")
        share, extra = divmod(connections, len(self.procs))
        self.busy = []
        for i, proc in enumerate(self.procs):
            n = share + (i < extra)
            if not n:
                continue
            command = {
                "port": port,
                "connections": n,
                "measure_from": measure_from,
                "deadline": deadline,
            }
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command).encode() + b"\n")
            proc.stdin.flush()
            self.busy.append(proc)

    def collect(self, timeout: float) -> list[dict[str, Any]]:
        """The result of each worker given work by start(); raises ConnectionError
        when one does not answer within `timeout` seconds or has died."""
        results = []
        end = time.monotonic() + timeout
        for proc in self.busy:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, end - time.monotonic()))
            line = proc.stdout.readline() if ready else b""
            if not line:
                self.failed = f"worker {proc.pid} gave no result within {timeout:g} s"
                raise ConnectionError(self.failed)
            results.append(json.loads(line))
        self.busy = []
        return results

    def stop(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()
        self.log.close()


def worker_main() -> None:
    for line in sys.stdin.buffer:
        result = drive(**json.loads(line))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] != ["--worker"]:
        raise SystemExit(__doc__)
    worker_main()
