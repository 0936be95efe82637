"""What the metrics tests share: the router they serve and how they read a registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
from prometheus_client import CollectorRegistry

from websockets_routes import Close, Respond, Router
from websockets_routes.metrics import Metrics

TIMEOUT = 10


def make_router(registry: CollectorRegistry) -> tuple[Router, Metrics]:
    """The routes every test hits, with ``Metrics`` in ``registry`` and ``/metrics``."""
    router = Router()

    @router.route("/echo/{id}", name="echo")
    async def echo(ws: Any, path: Any) -> None:
        async for message in ws:
            await ws.send(message)

    @router.route("/bye")
    async def bye(ws: Any, path: Any) -> None:
        await ws.send("bye")  # then the handler returns: the server closes with 1000

    @router.route("/private", origins=["https://example.com"])
    async def private(ws: Any, path: Any) -> None:  # pragma: no cover - always refused
        pass

    @router.route("/busy/{id}")
    class Busy:
        async def process_request(self, path: Any, headers: Any) -> Respond:
            return Respond(429, [("Retry-After", "1")], b"slow down\n")

        async def handle(self, ws: Any, path: Any) -> None:  # pragma: no cover - refused
            pass

    @router.route("/shut", name="shut")
    class Shut:
        async def process_request(self, path: Any, headers: Any) -> Close:
            return Close(4400, "not today")

        async def handle(self, ws: Any, path: Any) -> None:  # pragma: no cover - closed
            pass

    @router.http("/health")
    async def health(request: Any) -> str:
        return "ok\n"

    metrics = Metrics(router, registry)
    router.http("/metrics")(metrics.view)
    return router, metrics


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0.0 when there is no such sample (yet)."""
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def handshakes(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """Every ``websockets_routes_handshakes_total`` sample, by (route, outcome)."""
    return {
        (sample.labels["route"], sample.labels["outcome"]): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "websockets_routes_handshakes_total"
    }


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    """Every sample called ``name``, by its label values in label-name order."""
    return {
        tuple(value for _, value in sorted(sample.labels.items())): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    }


async def eventually(check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds (at most ``TIMEOUT``): what the server counts once
    a peer is gone may land just after the client is done."""
    with anyio.fail_after(TIMEOUT):
        for _ in range(TIMEOUT * 100):  # polled: counts change without an event
            if check():
                return
            await anyio.sleep(0.01)
        raise AssertionError("never held")


async def close(ws: Any, code: int = 1000, reason: str = "") -> None:
    """Close websockets' client connection: ``close()`` on asyncio, ``aclose()`` on trio."""
    closer = getattr(ws, "close", None) or ws.aclose
    await closer(code, reason)
