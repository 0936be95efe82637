"""Metrics under real ASGI servers (uvicorn's three WebSocket stacks, hypercorn): the
handshakes, the connections with their messages and close codes, as the server
reports them: hypercorn reports every close by the client as 1006, uvicorn's wsproto
and websockets-sansio stacks a dropped TCP as 1005 (ASGI's code for "no code")."""

from __future__ import annotations

import anyio
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.metrics.support import TIMEOUT, eventually, handshakes, make_router, samples, value
from tests.transports.asgi.servers import SERVERS, http_request, run_server
from tests.transports.helpers import RawClient

pytestmark = [
    pytest.mark.anyio,
    # As in tests/transports/asgi: uvicorn's deprecated websockets stack warns.
    pytest.mark.filterwarnings(
        "ignore:The `websockets` implementation is deprecated"
        ":uvicorn.config.UvicornDeprecationWarning:uvicorn.protocols.websockets.websockets_impl"
    ),
    pytest.mark.filterwarnings(
        "ignore:websockets.legacy is deprecated:DeprecationWarning:websockets.legacy"
    ),
    pytest.mark.filterwarnings(
        "ignore:remove second argument of ws_handler:DeprecationWarning:websockets.legacy.server"
    ),
]


@pytest.mark.parametrize("server", SERVERS)
async def test_counts_under_asgi(server, registry):
    router, _ = make_router(registry)
    # The client's own close, as the server reports it.
    by_client = "1006" if server == "hypercorn" else "1000"
    peer_code = "1006" if server == "hypercorn" else "4000"
    dropped = "1005" if server in ("uvicorn-wsproto", "uvicorn-websockets-sansio") else "1006"
    with anyio.fail_after(TIMEOUT * 2):
        async with run_server(server, router.asgi) as port:
            url = f"ws://127.0.0.1:{port}"
            async with connect(url + "/echo/1") as ws:
                for message in ["a", b"b"]:
                    await ws.send(message)
                    assert await ws.recv() == message
                assert value(registry, "websockets_routes_connections", route="echo") == 1
            async with connect(url + "/echo/2") as ws:
                await ws.close(4000)
            async with await RawClient.connect(port) as raw:
                await raw.open("/echo/3")
            async with connect(url + "/bye") as ws:
                assert await ws.recv() == "bye"
                await ws.wait_closed()
            for target, status in [("/nowhere", 404), ("/private", 403), ("/busy/7", 429)]:
                with pytest.raises(InvalidStatus) as caught:
                    async with connect(url + target):
                        pass
                assert caught.value.response.status_code == status
            async with connect(url + "/shut") as ws:
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
            status, headers, _ = await http_request(port, "GET", "/metrics")
            assert status == 200 and headers["content-type"] == CONTENT_TYPE_LATEST
            await eventually(
                lambda: value(registry, "websockets_routes_connections", route="echo") == 0
            )
    assert handshakes(registry) == {
        ("echo", "accept"): 3,
        ("/bye", "accept"): 1,
        ("", "404"): 1,
        ("/private", "403"): 1,
        ("/busy/{id}", "429"): 1,
        ("shut", "close"): 1,
    }
    closes = samples(registry, "websockets_routes_closes_total")
    expected = {("1000", "/bye"): 1, ("4400", "shut"): 1}
    for code in (by_client, peer_code, dropped):
        expected[(code, "echo")] = expected.get((code, "echo"), 0) + 1
    assert closes == expected
    assert samples(registry, "websockets_routes_connections") == {
        ("echo",): 0,
        ("/bye",): 0,
        ("shut",): 0,
    }
    assert samples(registry, "websockets_routes_messages_total") == {
        ("in", "echo"): 2,
        ("out", "echo"): 2,
        ("in", "/bye"): 0,
        ("out", "/bye"): 1,
    }
    assert value(registry, "websockets_routes_handshake_seconds_count", route="echo") == 3
    assert value(registry, "websockets_routes_handshake_seconds_count", route="") == 1
