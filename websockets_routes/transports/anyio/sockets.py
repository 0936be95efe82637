"""Plain TCP connections read and written on their sockets, waiting through anyio.

anyio's socket streams cost, per message, a pause and a resume of reading and an
extra loop pass on asyncio; reading the socket when it has data, and waiting with
``anyio.wait_readable``/``wait_writable`` only when it has none, is the cheapest
public way on both backends. TLS and in-memory streams keep anyio's stream API.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import SocketAttribute

__all__ = ["SocketIO", "accept_ready"]


class SocketIO(anyio.abc.ByteStream):
    """An anyio byte stream over a connected non-blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._closed = False

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
            if not waited:
                # Bytes were waiting: let other tasks run, as a read that waited did.
                await anyio.lowlevel.cancel_shielded_checkpoint()
            return data

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self.sock)
                continue
            except OSError as exc:
                raise self._error(exc) from exc
            view = view[sent:]

    def send_now(self, data: bytes) -> int:
        """Write what the socket takes without waiting: how many bytes it took."""
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
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self.sock)  # a task waiting on it gets ClosedResourceError
            self.sock.close()
        await anyio.lowlevel.checkpoint()

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
