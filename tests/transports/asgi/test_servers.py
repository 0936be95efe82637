"""router.asgi under real ASGI servers on loopback: uvicorn (3 WebSocket stacks), hypercorn.

The client is websockets' asyncio client, as a user's would be.
"""

from __future__ import annotations

import logging
import uuid

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from tests.transports.asgi.servers import SERVERS, http_request, run_server
from tests.transports.asgi.websockets_routes_test_app import (
    CLOSE_CODES,
    FINISHED,
    closing_router,
    router,
)

pytestmark = [
    pytest.mark.anyio,
    # uvicorn --ws websockets (built on websockets.legacy) is deprecated upstream and
    # warns on import, but many deployments still run it, so it is tested; only these
    # warnings of its own are ignored.
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


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_accept_echo_and_params(server: str) -> None:
    async with run_server(server, router.asgi) as port:
        async with connect(f"ws://127.0.0.1:{port}/echo/a%20b?x=1") as ws:
            assert await ws.recv() == "hello a b query=x=1"
            await ws.send("hi")
            assert await ws.recv() == "hi"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"


async def test_subprotocol_chosen_by_server_preference(server: str) -> None:
    async with run_server(server, router.asgi) as port:
        url = f"ws://127.0.0.1:{port}/chat"
        async with connect(url, subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            assert await ws.recv() == "subprotocol=chat.v2"
            # The handler returned: the connection closes normally.
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
            assert ws.close_code == 1000
            # The server writes these itself; the app must not add them a second time.
            for name in ("Upgrade", "Connection", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol"):
                assert len(ws.response.headers.get_all(name)) == 1, name


async def test_unknown_path_gets_404_with_the_engine_body(server: str) -> None:
    async with run_server(server, router.asgi) as port:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"ws://127.0.0.1:{port}/nowhere"):
                pass
        response = caught.value.response
        assert response.status_code == 404
        assert b"no route for /nowhere" in response.body


async def test_hook_answers_reach_the_client(server: str) -> None:
    async with run_server(server, router.asgi) as port:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"ws://127.0.0.1:{port}/rooms/closed"):
                pass
        response = caught.value.response
        assert response.status_code == 403
        assert response.headers["X-Why"] == "closed room"
        assert response.body == b"this room is closed\n"

        async with connect(f"ws://127.0.0.1:{port}/rooms/gone") as ws:
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4410, "room gone")

        async with connect(f"ws://127.0.0.1:{port}/rooms/lobby") as ws:
            assert await ws.recv() == "welcome to lobby"


async def test_close_unmatched_closes_with_4040(server: str) -> None:
    async with run_server(server, closing_router.asgi) as port:
        async with connect(f"ws://127.0.0.1:{port}/nowhere") as ws:
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4040
        # Known routes still work through the mounted router.
        async with connect(f"ws://127.0.0.1:{port}/echo/x") as ws:
            assert await ws.recv() == "hello x query="


async def test_handler_exception_closes_1011_and_server_keeps_serving(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="websockets_routes")
    async with run_server(server, router.asgi) as port:
        async with connect(f"ws://127.0.0.1:{port}/boom") as ws:
            host, port_, *_ = ws.local_address
            peer = f"{host}:{port_}"
            await ws.send("go")
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1011
        async with connect(f"ws://127.0.0.1:{port}/echo/after") as ws:
            assert await ws.recv() == "hello after query="
    failures = [r for r in caplog.records if r.name == "websockets_routes.asgi"]
    assert len(failures) == 1
    message = failures[0].getMessage()
    assert "'/boom'" in message and peer in message
    assert failures[0].exc_info is not None
    assert str(failures[0].exc_info[1]) == "the handler broke"


async def test_send_and_recv_in_two_tasks_and_client_leaving(server: str) -> None:
    key = uuid.uuid4().hex
    finished = FINISHED[key] = anyio.Event()
    async with run_server(server, router.asgi) as port:
        async with connect(f"ws://127.0.0.1:{port}/ticker/{key}") as ws:
            assert await ws.recv() == "tick"
            await ws.send("hello")
            with anyio.fail_after(5):
                while await ws.recv() != "got hello":
                    pass
            await ws.close(4001, "done")
        # The handler's sending task and receiving loop both end once the client left.
        with anyio.fail_after(5):
            await finished.wait()
        # hypercorn 0.18 reports any close by the client as 1006 to the app (its
        # disconnect event drops the client's code); uvicorn passes the code on.
        assert CLOSE_CODES[key] == (1006 if server == "hypercorn" else 4001)


async def test_http_route_get_and_head(server: str) -> None:
    async with run_server(server, router.asgi) as port:
        status, headers, body = await http_request(port, "GET", "/healthz")
        assert (status, body) == (200, b"ok\n")
        assert headers["x-route"] == "healthz"
        assert headers["content-type"] == "text/plain"

        status, headers, body = await http_request(port, "HEAD", "/healthz")
        assert (status, body) == (200, b"")
        assert headers["x-route"] == "healthz"
        assert headers["content-length"] == "3"

        status, _, body = await http_request(port, "POST", "/healthz")
        assert status == 405


async def test_plain_get_to_websocket_route_gets_426_and_unknown_404(server: str) -> None:
    async with run_server(server, router.asgi) as port:
        status, headers, body = await http_request(port, "GET", "/echo/x")
        assert status == 426
        assert headers["upgrade"].lower() == "websocket"
        assert b"WebSocket endpoint" in body

        status, _, body = await http_request(port, "GET", "/nowhere")
        assert status == 404
        assert b"no route for /nowhere" in body


async def without_denial_extension(scope, receive, send):
    """router.asgi as a server that does not offer websocket.http.response sees it."""
    scope = {k: v for k, v in scope.items() if k != "extensions"}
    await router.asgi(scope, receive, send)


async def test_without_the_denial_extension_servers_answer_403(server: str) -> None:
    async with run_server(server, without_denial_extension) as port:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"ws://127.0.0.1:{port}/nowhere"):
                pass
        # The engine's 404 and its body cannot get through: each server answers 403.
        assert caught.value.response.status_code == 403
        assert b"no route" not in (caught.value.response.body or b"")
        async with connect(f"ws://127.0.0.1:{port}/echo/x") as ws:
            assert await ws.recv() == "hello x query="
