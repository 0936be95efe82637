"""The anyio transport's own tests run on both anyio backends."""

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def connect(anyio_backend_name):
    """connect(server, path="/echo", **kwargs): the `websockets` client of the
    running backend (its trio client under trio), as an async context manager."""
    if anyio_backend_name == "trio":
        from websockets.trio.client import connect as ws_connect
    else:
        from websockets.asyncio.client import connect as ws_connect

    def factory(server, path="/echo", **kwargs):
        kwargs.setdefault("proxy", None)
        scheme = "wss" if kwargs.get("ssl") is not None else "ws"
        return ws_connect(f"{scheme}://127.0.0.1:{server.port}{path}", **kwargs)

    return factory
