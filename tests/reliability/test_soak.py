"""Soak, short version (the full one is stress/soak.py, run by ``make stress``):
2 x 250 connect/handshake/echo/close cycles, 2 x 200 concurrent connections and
100 idle ones, against a server in this process. Open fds come back to exactly
their baseline, live connections to at most the keepalive heap's stale allowance,
RSS no higher after a second run than after the first (the Python object count is
checked by the full run).
"""

from __future__ import annotations

import anyio
import pytest

from stress.soak import (
    check,
    concurrent_round,
    one_cycle,
    raise_fd_limit,
    settle,
    soak_in_process,
)
from tests.reliability.support import Sock, echo_router, open_fds, rss

pytestmark = pytest.mark.anyio


async def test_cycles_and_concurrent_connections_come_back_to_baseline(transport, record_property):
    with anyio.fail_after(60):
        report = await soak_in_process(transport, cycles=250, concurrent=200)
    record_property("soak", report)
    assert check(report, rss_slack=8 * 2**20, count_objects=False) == []


async def test_idle_connections_cost_and_release(serve_router, record_property):
    count = 100
    raise_fd_limit(2 * count + 256)
    at_start = open_fds()
    async with serve_router(echo_router(), ping_interval=None) as server:
        await one_cycle(server.port)
        await concurrent_round(server.port, 20)
        await settle(server, at_start + 1)  # + the listening socket
        fds, before = open_fds(), rss()
        clients: list[Sock] = []
        try:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for _ in range(count):

                        async def open_one() -> None:
                            client = await Sock.connect(server.port)
                            clients.append(client)
                            await client.open("/echo")

                        tg.start_soon(open_one)
            assert open_fds() == fds + 2 * count  # each: our socket and the server's
            per_connection = (rss() - before) / count
            record_property("rss_per_idle_connection_both_ends", round(per_connection))
            # Generous: client and server share this process; 10k idle need < 1 GiB.
            assert per_connection < 100_000, per_connection
            await one_cycle(server.port)  # the server still serves
        finally:
            for client in clients:
                client.close()
        await settle(server, fds)
        assert open_fds() == fds
