"""Plain TCP connections as anyio byte streams of our own, one per event loop.

anyio's socket streams cost, per read, a pause and a resume of reading and an extra
loop pass on asyncio. Two streams of ours avoid that, each through public API only:

- ``SocketIO`` (trio): reads the socket when it has data and waits with
  ``anyio.wait_readable``/``wait_writable`` only when it has none; each ``send()``
  lets other tasks run once, as a trio socket's does, and so does a ``receive()``
  unless a ``send()`` just did.
- ``LoopStream`` (asyncio): an ``asyncio.BufferedProtocol`` on the transport
  ``loop.connect_accepted_socket()`` makes, so the socket stays registered with the
  loop's selector while it is read; ``wait_readable`` would register and unregister
  it, and pass through the loop once more, on every wait.

Both can be cancelled while they wait for input without losing a byte, never drop
unsent bytes when closed, and take a write at once with ``send_now``. TLS and
in-memory streams keep anyio's stream API.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import SocketAttribute

__all__ = ["LoopStream", "PlainStream", "SocketIO", "accept_ready"]

# Bytes read ahead of receive() before asyncio stops reading the socket.
_READ_AHEAD = 256 * 1024


class PlainStream(anyio.abc.ByteStream):
    """A plain TCP connection of ours (see the module docstring)."""

    def send_now(self, data: bytes) -> int:
        """Write what the connection takes without waiting: how many bytes it took."""
        raise NotImplementedError

    def abort(self) -> None:
        """Close at once, whatever is still unsent."""
        raise NotImplementedError


class SocketIO(PlainStream):
    """An anyio byte stream over a connected non-blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._closed = False
        self._yielded = False  # the task let others run since its last receive()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        # A cancellation comes while the read waits, never after bytes were taken
        # from the socket: nothing read is ever lost.
        waited = False
        while True:
            try:
                data = self.sock.recv(max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self.sock)
                waited = True
                continue
            except OSError as exc:
                raise self._error(exc) from exc
            if not data:
                raise anyio.EndOfStream
            if not waited and not self._yielded:
                # Bytes were waiting: let other tasks run, as a read that waited did.
                await anyio.lowlevel.cancel_shielded_checkpoint()
            self._yielded = False
            return data

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        waited = False
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self.sock)
                waited = True
                continue
            except OSError as exc:
                raise self._error(exc) from exc
            view = view[sent:]
        if not waited:
            # A send lets other tasks run, as a trio socket's does: a handler that
            # only sends cannot keep the others (other connections, the timers)
            # waiting while the kernel takes its bytes. On one connection it also
            # shortens the round trip: the peer's answer is often in by the time
            # the task reads again, so the server's core does not halt for it (a
            # virtual machine's core wakes slower from a longer halt), and that
            # read need not let others run again.
            await anyio.lowlevel.cancel_shielded_checkpoint()
        self._yielded = True

    def send_now(self, data: bytes) -> int:
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._error(exc) from exc

    async def send_eof(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._error(exc) from exc

    async def aclose(self) -> None:
        self.abort()  # the kernel still sends what it was given
        await anyio.lowlevel.checkpoint()

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self.sock)  # a task waiting on it gets ClosedResourceError
            self.sock.close()

    def _error(self, exc: OSError) -> Exception:
        return anyio.ClosedResourceError() if self._closed else anyio.BrokenResourceError(exc)

    @property
    def extra_attributes(self) -> Any:
        sock = self.sock
        return {
            SocketAttribute.raw_socket: lambda: sock,
            SocketAttribute.family: lambda: sock.family,
            SocketAttribute.local_address: lambda: sock.getsockname(),
            SocketAttribute.remote_address: lambda: sock.getpeername(),
        }


class LoopStream(PlainStream, asyncio.BufferedProtocol):
    """asyncio only: an anyio byte stream over an asyncio transport of a TCP socket.

    ``await LoopStream.accept(sock, buffer)``: asyncio reads into ``buffer``, shared by
    the streams of one loop (each read is copied out at once), rather than into a new
    256 KiB bytes object per read, which costs an mmap and a munmap. Reading stops
    while more than ``_READ_AHEAD`` bytes wait for ``receive()``; ``send()`` waits
    while the transport is above its high-water mark.
    """

    def __init__(self, buffer: memoryview) -> None:
        self._loop = asyncio.get_running_loop()
        self._buffer = buffer
        self._transport: asyncio.Transport = None  # type: ignore[assignment]
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._read_paused = False
        self._write_paused = False
        self._eof = False
        self._lost = False
        self._error: Exception | None = None
        self._closed = False
        self._reader: asyncio.Future[None] | None = None
        self._writers: list[asyncio.Future[None]] = []

    @classmethod
    async def accept(cls, sock: socket.socket, buffer: memoryview) -> LoopStream:
        """The stream of ``sock``, a connection ``accept()`` gave; on failure the caller
        still owns ``sock``."""
        stream = cls(buffer)
        await stream._loop.connect_accepted_socket(lambda: stream, sock)
        return stream

    # asyncio.Protocol

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self._buffer[:nbytes])
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _READ_AHEAD and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return True  # the connection may still write (a half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._error = exc
        self._wake_reader()
        self._wake_writers()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    # anyio.abc.ByteStream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        # A cancellation comes while the read waits: what arrives stays in _chunks.
        while not self._chunks:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._error is not None:
                raise anyio.BrokenResourceError(self._error)
            if self._eof or self._lost:
                raise anyio.EndOfStream
            self._reader = self._loop.create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        data = self._chunks.popleft()
        if len(data) > max_bytes:
            self._chunks.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        self._buffered -= len(data)
        if self._read_paused and self._buffered <= _READ_AHEAD // 4:
            self._read_paused = False
            self._transport.resume_reading()
        return data

    async def send(self, item: bytes) -> None:
        self._check_writable()
        self._transport.write(item)
        while self._write_paused and not self._lost:
            writer = self._loop.create_future()
            self._writers.append(writer)
            await writer
        self._check_writable()

    def send_now(self, data: bytes) -> int:
        self._check_writable()
        if self._write_paused:
            return 0  # the caller keeps it: what waits is counted there
        self._transport.write(data)
        return len(data)

    async def send_eof(self) -> None:
        self._check_writable()
        self._transport.write_eof()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()  # after what is still buffered
            self._wake_reader()
        await anyio.lowlevel.checkpoint()

    def abort(self) -> None:
        self._closed = True
        self._transport.abort()
        self._wake_reader()

    def _check_writable(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._lost or self._transport.is_closing():
            raise anyio.BrokenResourceError(self._error)

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _wake_writers(self) -> None:
        writers, self._writers = self._writers, []
        for writer in writers:
            if not writer.done():
                writer.set_result(None)

    @property
    def extra_attributes(self) -> Any:
        transport = self._transport
        sock = transport.get_extra_info("socket")
        return {
            SocketAttribute.raw_socket: lambda: sock,
            SocketAttribute.family: lambda: sock.family,
            SocketAttribute.local_address: lambda: transport.get_extra_info("sockname"),
            SocketAttribute.remote_address: lambda: transport.get_extra_info("peername"),
        }


async def accept_ready(listening: socket.socket, limit: int) -> list[tuple[socket.socket, Any]]:
    """Wait until ``listening`` has connections, then take up to ``limit`` of them
    (as asyncio's own server does: a flood of connects cannot starve the rest)."""
    await anyio.wait_readable(listening)
    accepted = []
    for _ in range(limit):
        try:
            sock, address = listening.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            break
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        accepted.append((sock, address))
    return accepted
