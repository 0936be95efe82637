"""The pytest recipe of docs/testing.md, as written there: an async ``client`` fixture
on both backends (this directory's conftest gives ``anyio_backend`` both params)."""

import pytest

from websockets_routes import Router
from websockets_routes.testing import HandshakeRejected, TestClient

pytestmark = pytest.mark.anyio

router = Router()


@router.route("/echo")
async def echo(ws, path):
    async for message in ws:
        await ws.send(message)


@pytest.fixture
async def client(anyio_backend):
    async with TestClient(router) as client:
        yield client


async def test_echo(client, anyio_backend_name):
    async with client.connect("/echo") as ws:
        await ws.send(anyio_backend_name)
        assert await ws.recv() == anyio_backend_name


async def test_unknown_room_is_404(client):
    with pytest.raises(HandshakeRejected) as info:
        async with client.connect("/rooms/nope"):
            pass
    assert info.value.status == 404
