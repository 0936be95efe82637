"""Measuring tools for the reliability suite: what the kernel and the process hold.

The servers under test run in the test's own process (and event loop), so what a
server buffers in user space is found by accounting: every byte a client wrote is
either still in the client's send queue, in the server's kernel receive queue
(both read with ioctl(SIOCOUTQ/SIOCINQ); the server's socket is in this process
too), consumed by the handler, or held by the server process. Kernel buffers on loopback grow to tens of MiB with autotuning, so counting
only what a client managed to send, or RSS alone, could not tell a bounded server
from one that buffers without limit.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from tests.transports.helpers import random_key


def rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def socket_queues(sock: socket.socket) -> tuple[int, int]:
    """``(send queue, receive queue)`` of a TCP socket, in bytes: bytes written but
    not yet acknowledged by the peer, and bytes received but not yet read."""
    out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    into = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", out)[0], struct.unpack("i", into)[0]


def peer_socket(local_port: int, remote_port: int) -> socket.socket | None:
    """A duplicate of this process's TCP socket bound to ``local_port`` and connected
    to ``remote_port`` on the loopback (the server's end of a client connection);
    None if there is none. Close it after use (the original stays open)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            dup = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if (
                dup.family == socket.AF_INET
                and dup.type == socket.SOCK_STREAM
                and dup.getsockname()[1] == local_port
                and dup.getpeername()[1] == remote_port
            ):
                return dup
        except OSError:
            pass
        dup.close()
    return None


def tcp_queues(local_port: int, remote_port: int) -> tuple[int, int]:
    """``(send queue, receive queue)`` of this process's loopback socket from
    ``local_port`` to ``remote_port`` ((0, 0) once it is gone)."""
    sock = peer_socket(local_port, remote_port)
    if sock is None:
        return 0, 0
    with sock:
        return socket_queues(sock)


async def poll(predicate: Callable[[], bool], interval: float = 0.01) -> None:
    """Wait until ``predicate()`` is true. For conditions no event can announce (a
    kernel queue, an fd count); bound it with the caller's fail_after/move_on_after."""
    while not predicate():  # noqa: ASYNC110 - polling the kernel, there is no event
        await anyio.sleep(interval)


async def until_stalled(
    value: Callable[[], int], *, quiet: float = 0.25, within: float = 20.0
) -> int:
    """Wait until ``value()`` has not changed for ``quiet`` seconds; return it.

    How a test sees that a flooding peer is blocked: nothing it can observe says
    "blocked for good", only "no progress for a while"."""
    with anyio.fail_after(within):
        last = value()
        still = anyio.current_time()
        while True:
            await anyio.sleep(0.05)
            now = value()
            if now != last:
                last, still = now, anyio.current_time()
            elif anyio.current_time() - still >= quiet:
                return now


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame with an all-zero masking key (legal, and free to build
    for megabytes: the payload goes out as it is)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0x80 | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, 0x80 | 127)) + struct.pack("!Q", n)
    return head + b"\x00\x00\x00\x00" + payload


def request(target: str, extra: list[tuple[str, str]] | tuple = ()) -> bytes:
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {random_key()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in extra),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Sock:
    """A non-blocking client socket driven through anyio (asyncio or trio) that
    counts exactly what the kernel accepted from it and what it read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = 0
        self.received = 0
        self.buffer = bytearray()
        self.head_bytes = 0  # size of the HTTP response head read by read_head()
        self.request_bytes = 0  # size of the request sent by open()

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None) -> Sock:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            await anyio.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                sock.close()
                raise OSError(error, os.strerror(error)) from None
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def __aenter__(self) -> Sock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Close with a reset (SO_LINGER 0), as a client that crashes does."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self.sock)
                continue
            self.sent += n
            view = view[n:]

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    async def _fill(self) -> bool:
        while True:
            try:
                chunk = self.sock.recv(262144)
            except BlockingIOError:
                await anyio.wait_readable(self.sock)
                continue
            except (ConnectionResetError, BrokenPipeError):
                return False
            if not chunk:
                return False
            self.received += len(chunk)
            self.buffer += chunk
            return True

    async def read_head(self) -> str:
        while b"\r\n\r\n" not in self.buffer:
            if not await self._fill():
                raise EOFError(f"EOF before the end of the response head: {bytes(self.buffer)!r}")
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        self.head_bytes = len(head) + 4
        return head.decode("latin-1")

    def server_holds_in(self, server_port: int, consumed: int) -> int:
        """Bytes we sent that the server process holds: neither in our send queue,
        nor in its kernel receive queue, nor among the ``consumed`` ones its handler
        took (all in wire bytes)."""
        client_tx, _ = socket_queues(self.sock)
        _, server_rx = tcp_queues(server_port, self.port)
        return self.sent - self.request_bytes - client_tx - server_rx - consumed

    def server_holds_out(self, server_port: int, produced: int) -> int:
        """Bytes of the ``produced`` ones (wire bytes after the response head) that
        the server process holds: neither in its kernel send queue, nor in our
        receive queue, nor read by us."""
        server_tx, _ = tcp_queues(server_port, self.port)
        _, client_rx = socket_queues(self.sock)
        return produced - server_tx - client_rx - (self.received - self.head_bytes)

    async def open(self, target: str, extra: list[tuple[str, str]] | tuple = ()) -> str:
        data = request(target, extra)
        self.request_bytes = len(data)
        await self.send(data)
        head = await self.read_head()
        assert head.startswith("HTTP/1.1 101 "), head
        return head

    async def read_frame(self) -> tuple[int, bytes]:
        """The next server frame (first byte, payload); EOFError at EOF."""
        while True:
            data = self.buffer
            if len(data) >= 2:
                n = data[1] & 0x7F
                pos = 2
                if n == 126:
                    pos = 4
                elif n == 127:
                    pos = 10
                if len(data) >= pos:
                    if n == 126:
                        (n,) = struct.unpack("!H", data[2:4])
                    elif n == 127:
                        (n,) = struct.unpack("!Q", data[2:10])
                    if len(data) >= pos + n:
                        frame = data[0], bytes(data[pos : pos + n])
                        del data[: pos + n]
                        return frame
            if not await self._fill():
                raise EOFError(f"EOF before a whole frame: {bytes(self.buffer[:40])!r}")

    async def expect_close(self) -> tuple[int | None, str]:
        """Frames up to the server's close frame (pings and pongs skipped)."""
        while True:
            b0, payload = await self.read_frame()
            if b0 == 0x88:
                if not payload:
                    return None, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")
            assert b0 in (0x89, 0x8A), f"unexpected frame {b0:#x} before the close"

    async def read_to_eof(self) -> bytes:
        while await self._fill():
            pass
        data, self.buffer = bytes(self.buffer), bytearray()
        return data

    async def eof_within(self, seconds: float) -> float:
        """Read (and drop) until EOF; fail after ``seconds``; return the time taken."""
        start = anyio.current_time()
        with anyio.fail_after(seconds):
            await self.read_to_eof()
        return anyio.current_time() - start


async def gather(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the calls concurrently; their results in order."""
    results: list[Any] = [None] * len(calls)

    async def run(i: int, call: Callable[[], Awaitable[Any]]) -> None:
        results[i] = await call()

    async with anyio.create_task_group() as tg:
        for i, call in enumerate(calls):
            tg.start_soon(run, i, call)
    return results


def echo_router(**options: Any) -> Any:
    """A router with ``/echo``, which sends back every message it receives."""
    from websockets_routes import Router

    router = Router(**options)

    @router.route("/echo", name="echo")
    async def echo(ws: Any, path: Any) -> None:
        async for message in ws:
            await ws.send(message)

    return router


async def echo_works(port: int, message: bytes = b"still serving") -> None:
    """A fresh connection to ``/echo`` gets its message back, then closes cleanly."""
    async with await Sock.connect(port) as client:
        await client.open("/echo")
        await client.send(client_frame(0x2, message))
        assert await client.read_frame() == (0x82, message)
        await client.send(client_frame(0x8, struct.pack("!H", 1000)))
        assert await client.expect_close() == (1000, "")
        assert await client.read_to_eof() == b""


def deflate_bomb(mebibytes: int) -> bytes:
    """A permessage-deflate payload inflating to ``mebibytes`` MiB of zeros, built in
    milliseconds: once the window is all zeros, every sync-flushed MiB compresses to
    the same bytes, so one block is repeated instead of compressing it all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(2**20)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
    steady = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = first + steady * (mebibytes - 1)
    assert payload.endswith(b"\x00\x00\xff\xff")
    return payload[:-4]  # RFC 7692 7.2.1
