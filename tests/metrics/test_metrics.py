"""``Metrics`` itself: its registry, one observer per router, ``uninstall()``, the
missing extra, and the chat example's ``/metrics`` and ``/asyncapi.json``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from tests.metrics.support import TIMEOUT, make_router, samples
from websockets_routes import Router
from websockets_routes.core import observe
from websockets_routes.metrics import Metrics
from websockets_routes.testing import TestClient

ROOT = Path(__file__).resolve().parent.parent.parent
# Makes ``import prometheus_client`` fail, as it does where the extra is not installed.
WITHOUT_PROMETHEUS = "import sys; sys.modules['prometheus_client'] = None\n"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_registry_none_is_the_default_registry() -> None:
    # In a process of its own: the default registry is shared by everything in one.
    result = run_python(
        """
        import anyio
        from prometheus_client import REGISTRY
        from websockets_routes import Router
        from websockets_routes.metrics import Metrics
        from websockets_routes.testing import TestClient

        router = Router()

        @router.route("/echo")
        async def echo(ws, path):
            await ws.send("hi")

        metrics = Metrics(router)
        assert metrics.registry is REGISTRY and router.observer is metrics

        async def main():
            async with TestClient(router) as client:
                async with client.connect("/echo") as ws:
                    assert await ws.recv() == "hi"

        anyio.run(main)
        labels = {"route": "/echo", "outcome": "accept"}
        print(REGISTRY.get_sample_value("websockets_routes_handshakes_total", labels))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.0"


def test_one_observer_per_router_and_uninstall(registry: CollectorRegistry) -> None:
    router, metrics = make_router(registry)
    assert router.observer is metrics and metrics in observe.unrouted
    with pytest.raises(ValueError, match="already has an observer"):
        Metrics(router, CollectorRegistry())
    metrics.uninstall()
    assert router.observer is None and metrics not in observe.unrouted
    assert list(registry.collect()) == []
    again = Metrics(router, registry)  # the names are free again
    assert router.observer is again


def test_names_taken_in_the_registry_leave_the_router_alone(registry: CollectorRegistry) -> None:
    Metrics(Router(), registry)
    other = Router()
    with pytest.raises(ValueError, match="Duplicated"):
        Metrics(other, registry)
    assert other.observer is None
    assert {family.name for family in registry.collect()} == {
        "websockets_routes_handshakes",
        "websockets_routes_handshake_seconds",
        "websockets_routes_closes",
        "websockets_routes_connections",
        "websockets_routes_messages",
    }


def test_without_prometheus_client_the_import_names_the_extra() -> None:
    result = run_python(WITHOUT_PROMETHEUS + "import websockets_routes.metrics\n")
    assert result.returncode == 1
    assert "ImportError: websockets_routes.metrics needs prometheus-client" in result.stderr
    assert "pip install websockets-routes[metrics]" in result.stderr


@pytest.mark.anyio
async def test_the_chat_example_serves_metrics_and_its_asyncapi_document() -> None:
    from examples.chat.app import metrics, router

    assert metrics is not None and router.observer is metrics
    with anyio.fail_after(TIMEOUT):
        async with TestClient(router) as client:
            async with client.connect("/rooms/lobby") as ws:
                assert json.loads(await ws.recv())["type"] == "join"
            response = await client.get("/metrics")
            document = await client.get("/asyncapi.json")
            page = await client.get("/")
    assert response.status == 200 and response.header("Content-Type") == CONTENT_TYPE_LATEST
    assert b'websockets_routes_handshakes_total{outcome="accept",route="room"}' in response.body
    assert document.status == 200 and document.header("Content-Type") == "application/json"
    assert list(json.loads(document.body)["channels"]) == ["room"]
    assert b'<a href="/asyncapi.json">' in page.body


def test_the_chat_example_runs_without_prometheus_client() -> None:
    """What ``make run`` installs: no extras, so no /metrics, and the rest works."""
    result = run_python(
        WITHOUT_PROMETHEUS
        + """
import anyio
from examples.chat.app import metrics, router
from websockets_routes.testing import TestClient

assert metrics is None and router.observer is None

async def main():
    async with TestClient(router) as client:
        print((await client.get("/metrics")).status, (await client.get("/asyncapi.json")).status)

anyio.run(main)
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["404", "200"]


@pytest.mark.anyio
async def test_plain_http_scrapes_are_not_handshakes(registry: CollectorRegistry) -> None:
    router, _ = make_router(registry)
    async with TestClient(router) as client:
        for _ in range(3):
            assert (await client.get("/metrics")).status == 200
        assert (await client.get("/favicon.ico")).status == 404
    assert samples(registry, "websockets_routes_handshakes_total") == {}
