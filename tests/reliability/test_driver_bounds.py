"""Bounds of the sans-IO driver shared by every transport, measured on the driver
alone (no sockets): what it keeps in memory for a message still arriving."""

from __future__ import annotations

import tracemalloc

import pytest

from tests.reliability.support import client_frame, request
from websockets_routes import Router
from websockets_routes.core.connection import ServerConnection, State


def open_connection(max_size: int) -> ServerConnection:
    router = Router()

    @router.route("/sink")
    async def sink(ws, path):
        pass

    conn = ServerConnection(max_size=max_size, compression=None)
    (event,) = conn.receive_data(request("/sink"))
    conn.carry_out(router.decide(event.request))
    conn.data_to_send()
    assert conn.state is State.OPEN
    return conn


@pytest.mark.parametrize(
    ("opcode", "size"),
    [
        pytest.param(0x1, 1, id="text-1-byte-fragments"),
        pytest.param(0x2, 1, id="binary-1-byte-fragments"),
        pytest.param(0x1, 16, id="text-16-byte-fragments"),
        pytest.param(0x2, 16, id="binary-16-byte-fragments"),
    ],
)
def test_fragmented_message_in_progress_is_held_to_about_max_size(opcode, size):
    """A message of max_size bytes in small fragments, its last fragment not yet
    received: the Python heap held for it stays within 4 x max_size (plus a fixed
    allowance for the frame parser)."""
    max_size = 4096
    conn = open_connection(max_size)
    payload = b"f" * size
    data = client_frame(opcode, payload, fin=False) + client_frame(0x0, payload, fin=False) * (
        max_size // size - 2
    )
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(0, len(data), 65536):
            assert conn.receive_data(data[i : i + 65536]) == []
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert conn.state is State.OPEN
    assert held < 4 * max_size + 16384, f"{held} bytes held for {len(data)} wire bytes"
