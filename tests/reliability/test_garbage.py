"""Random garbage instead of the handshake, and after it, written in pieces split at
random points: the server answers as its sans-IO driver says it must for those
bytes (computed here by feeding the same bytes to a ServerConnection in one piece),
ends that connection, and keeps serving a connection opened before the garbage
and new ones.
"""

from __future__ import annotations

import random
import struct

import anyio
import pytest

from tests.reliability.support import (
    Sock,
    client_frame,
    echo_router,
    echo_works,
    poll,
    request,
    tcp_queues,
)
from tests.transports.helpers import parse_frames
from websockets_routes.core.connection import ServerConnection
from websockets_routes.core.events import RequestReceived

pytestmark = pytest.mark.anyio

TIMEOUT = 20
LIMIT = 4096  # max_header_bytes
SAMPLES = 10


def mutated_request(rng: random.Random) -> bytes:
    """A handshake request, damaged: cut, bytes flipped, lines inserted or doubled."""
    data = bytearray(request("/echo", [("X-Junk", "j" * rng.randrange(0, 200))]))
    for _ in range(rng.randrange(1, 5)):
        how = rng.randrange(5)
        pos = rng.randrange(len(data))
        if how == 0:
            data[pos] = rng.randrange(256)
        elif how == 1:
            data[pos:pos] = rng.choice([b"\r\n", b"\n", b"\r\n\r\n", b":", b" ", b"\x00"])
        elif how == 2:
            del data[pos : pos + rng.randrange(1, 20)]
        elif how == 3:
            data[pos:pos] = rng.randbytes(rng.randrange(1, 50))
        else:
            data = data[:pos]
    return bytes(data)


def garbage_before(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 3000))
    if kind == 1:  # lines of junk ending a head
        lines = [rng.randbytes(rng.randrange(0, 80)) for _ in range(rng.randrange(1, 10))]
        return b"\r\n".join(lines) + b"\r\n\r\n"
    if kind == 2:
        return mutated_request(rng)
    return b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + rng.randbytes(160)  # TLS hello


def garbage_after(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randrange(1, 6)):
        kind = rng.randrange(4)
        if kind == 0:
            parts.append(rng.randbytes(rng.randrange(1, 200)))
        elif kind == 1:  # a frame with random header bits
            b0 = rng.randrange(256)
            payload = rng.randbytes(rng.choice([0, 1, 5, 125, 126, 300]))
            n = len(payload)
            if n < 126:
                head = bytes((b0, 0x80 | n))
            else:
                head = bytes((b0, 0x80 | 126)) + struct.pack("!H", n)
            parts.append(head + b"\x00\x00\x00\x00" + payload)
        elif kind == 2:  # a good message
            parts.append(client_frame(rng.choice([0x1, 0x2]), b"fine"))
        else:  # a header promising more than will come
            parts.append(bytes((0x82, 0xFF)) + struct.pack("!Q", rng.randrange(1, 2**20)))
    return b"".join(parts)


def split(rng: random.Random, data: bytes) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(0, 6))))
    return [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=False)]


def expected_status(data: bytes) -> bytes | None:
    """The status line the driver answers ``data`` + EOF with (None: no answer)."""
    router = echo_router()
    conn = ServerConnection(max_header_bytes=LIMIT)
    out = b""
    for event in conn.receive_data(data):
        if type(event) is RequestReceived:
            conn.carry_out(router.decide(event.request))
    out = conn.data_to_send()
    return out.split(b"\r\n", 1)[0] if out else None


def expected_close(data: bytes) -> int | None:
    """The close code the driver fails ``data`` (after a good handshake) with."""
    router = echo_router()
    conn = ServerConnection(max_header_bytes=LIMIT)
    (event,) = conn.receive_data(request("/echo"))
    conn.carry_out(router.decide(event.request))
    conn.data_to_send()
    conn.receive_data(data)
    return close_code_in(conn.data_to_send())


def close_code_in(data: bytes) -> int | None:
    codes = [
        struct.unpack("!H", payload[:2])[0] if payload else 1005
        for b0, _, payload in parse_frames(data)
        if b0 == 0x88
    ]
    assert len(codes) <= 1, codes
    return codes[0] if codes else None


async def send_in_pieces(client: Sock, server_port: int, pieces: list[bytes]) -> None:
    """Each piece once the server has read the previous one (its kernel receive queue
    is empty), so that the server sees the split; stop if the server closed."""
    try:
        for piece in pieces:
            with anyio.move_on_after(0.05):  # the server may have stopped reading
                await poll(lambda: not tcp_queues(server_port, client.port)[1], 0.005)
            await client.send(piece)
        client.shutdown_write()
    except (BrokenPipeError, ConnectionResetError):
        pass


async def test_garbage_instead_of_the_handshake(serve_router):
    rng = random.Random(8)
    got, want = [], []
    with anyio.fail_after(TIMEOUT):
        async with serve_router(echo_router(), max_header_bytes=LIMIT) as server:
            async with await Sock.connect(server.port) as bystander:
                await bystander.open("/echo")
                for _ in range(SAMPLES):
                    data = garbage_before(rng)
                    async with await Sock.connect(server.port) as client:
                        await send_in_pieces(client, server.port, split(rng, data))
                        reply = await client.read_to_eof()
                    got.append(reply.split(b"\r\n", 1)[0] if reply.startswith(b"HTTP/") else None)
                    want.append(expected_status(data))
                await bystander.send(client_frame(0x1, b"still here"))
                assert await bystander.read_frame() == (0x81, b"still here")
            await echo_works(server.port)
    assert got == want


async def test_garbage_after_the_handshake(serve_router):
    rng = random.Random(6455)
    got, want = [], []
    with anyio.fail_after(TIMEOUT):
        async with serve_router(echo_router(), close_timeout=2) as server:
            async with await Sock.connect(server.port) as bystander:
                await bystander.open("/echo")
                for _ in range(SAMPLES):
                    data = garbage_after(rng)
                    async with await Sock.connect(server.port) as client:
                        await client.open("/echo")
                        await send_in_pieces(client, server.port, split(rng, data))
                        got.append(close_code_in(await client.read_to_eof()))
                    want.append(expected_close(data))
                await bystander.send(client_frame(0x1, b"still here"))
                assert await bystander.read_frame() == (0x81, b"still here")
            await echo_works(server.port)
    assert got == want
