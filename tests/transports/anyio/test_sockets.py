"""The anyio transport's own plain-TCP streams (transports/anyio/sockets.py), over real
loopback connections: LoopStream (asyncio) and SocketIO (asyncio and trio) keep every
byte in order, lose nothing to a cancelled read, bound what they read ahead and wait
for a peer that does not read."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from websockets_routes.transports.anyio.sockets import LoopStream, PlainStream, SocketIO

pytestmark = pytest.mark.anyio

TIMEOUT = 10


async def _connected_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
    accepted.setblocking(False)
    peer.setblocking(False)
    return accepted, peer


@pytest.fixture
async def pair(anyio_backend_name: str) -> AsyncIterator[tuple[PlainStream, anyio.abc.SocketStream]]:
    """Our stream on the accepted side (LoopStream on asyncio, SocketIO on trio), and
    anyio's own stream on the peer's."""
    accepted, peer_sock = await _connected_pair()
    ours: PlainStream
    if anyio_backend_name == "asyncio":
        ours = await LoopStream.accept(accepted, memoryview(bytearray(65536)))
    else:
        ours = SocketIO(accepted)
    peer = await anyio.abc.SocketStream.from_socket(peer_sock)
    try:
        yield ours, peer
    finally:
        ours.abort()
        await anyio.aclose_forcefully(peer)


async def _receive_exactly(stream: anyio.abc.ByteStream, size: int) -> bytes:
    chunks = []
    while size:
        chunk = await stream.receive(min(size, 65536))
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


async def test_bytes_arrive_in_order_and_within_max_bytes(pair) -> None:
    ours, peer = pair
    data = os.urandom(300_000)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.send, data)
            got = []
            while sum(map(len, got)) < len(data):
                chunk = await ours.receive(1000)
                assert 0 < len(chunk) <= 1000
                got.append(chunk)
    assert b"".join(got) == data


async def test_a_cancelled_receive_loses_nothing(pair) -> None:
    ours, peer = pair
    with anyio.fail_after(TIMEOUT):
        for i in range(20):
            with anyio.move_on_after(0.001):
                await ours.receive()
                pytest.fail("nothing was sent yet")  # pragma: no cover
            await peer.send(b"message %d" % i)
            assert await _receive_exactly(ours, len(b"message %d" % i)) == b"message %d" % i


async def test_a_peer_that_does_not_read_makes_send_wait_until_it_reads(pair) -> None:
    ours, peer = pair
    # Small kernel buffers: 4 MiB cannot hide in them.
    ours.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 32768
    )
    peer.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, 32768
    )
    block = os.urandom(1 << 18)
    sent = anyio.Event()

    async def send_a_lot() -> None:
        for _ in range(16):
            await ours.send(block)
        sent.set()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send_a_lot)
            await anyio.wait_all_tasks_blocked()  # the sender waits for the peer
            assert not sent.is_set()
            if isinstance(ours, LoopStream):
                assert ours.send_now(b"x") == 0  # past the high-water mark: not taken
            digest = hashlib.sha256(await _receive_exactly(peer, 16 << 18)).digest()
            await sent.wait()
    assert digest == hashlib.sha256(block * 16).digest()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # LoopStream is asyncio's
async def test_loop_stream_stops_reading_ahead_of_a_slow_receiver() -> None:
    accepted, peer_sock = await _connected_pair()
    ours = await LoopStream.accept(accepted, memoryview(bytearray(65536)))
    peer = await anyio.abc.SocketStream.from_socket(peer_sock)
    data = os.urandom(8 << 20)
    try:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(peer.send, data)
                transport = ours._transport
                while transport.is_reading():  # nobody receives: it must stop reading
                    await anyio.wait_all_tasks_blocked()  # the loop reads meanwhile
                assert await _receive_exactly(ours, len(data)) == data
                assert transport.is_reading()
    finally:
        ours.abort()
        await anyio.aclose_forcefully(peer)


async def test_eof_close_and_abort(pair) -> None:
    ours, peer = pair
    with anyio.fail_after(TIMEOUT):
        await peer.send(b"last")
        await peer.send_eof()
        assert await _receive_exactly(ours, 4) == b"last"
        with pytest.raises(anyio.EndOfStream):
            await ours.receive()
        await ours.send(b"after the peer's EOF")  # a half-close: we may still write
        await ours.send_eof()
        assert await _receive_exactly(peer, 20) == b"after the peer's EOF"
        with pytest.raises(anyio.EndOfStream):
            await peer.receive()
        await ours.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await ours.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await ours.send(b"closed")


async def test_socket_io_send_lets_other_tasks_run() -> None:
    # A handler that only sends, to a peer that keeps up, must not keep every other
    # task (other connections, the timers) waiting, as a trio socket's send does not.
    accepted, peer_sock = await _connected_pair()
    ours = SocketIO(accepted)
    peer = await anyio.abc.SocketStream.from_socket(peer_sock)
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await anyio.lowlevel.checkpoint()

    try:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(other_task)
                for _ in range(10):
                    await ours.send(b"x" * 100)  # the kernel takes each at once
                assert turns >= 9
                tg.cancel_scope.cancel()
            assert await _receive_exactly(peer, 1000) == b"x" * 1000
    finally:
        ours.abort()
        await anyio.aclose_forcefully(peer)
