"""Prometheus metrics of a router's handshakes and connections (extra ``[metrics]``).

::

    from websockets_routes.metrics import Metrics

    metrics = Metrics(router)                   # prometheus-client's default registry
    router.http("/metrics")(metrics.view)       # the Prometheus text format

``Metrics`` is the router's observer (``core.observe``): our servers, the TestClient,
the websockets hook and ASGI report to it. The metrics:

- ``websockets_routes_handshakes_total{route,outcome}``: handshakes answered; outcome
  ``accept``, ``close`` (101, then a close frame), the HTTP status (``404``, ``403``,
  ``429``, ``503``...) or ``timeout``;
- ``websockets_routes_handshake_seconds{route}``: a histogram, from the complete
  request head to the answer written;
- ``websockets_routes_connections{route}``: WebSocket connections open now;
- ``websockets_routes_messages_total{route,direction}``: data messages, ``in`` and
  ``out``, read from the connections' own counts when scraped (nothing is done per
  message);
- ``websockets_routes_closes_total{route,code}``: closed connections by close code
  (the peer's close frame's if one came, else ours, else 1006).

``route`` is the route's name, else its template, never the path; ``""`` when no route
matched. Plain-HTTP requests (``/metrics`` itself) are not handshakes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
    )
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "websockets_routes.metrics needs prometheus-client: "
        "pip install websockets-routes[metrics]"
    ) from exc

from .core import observe
from .core.http import Request

__all__ = ["BUCKETS", "Metrics"]

# Handshakes take well under a millisecond on our servers, seconds behind a slow hook.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Route:
    """One route's connections: open now, and the messages of those closed."""

    __slots__ = ("open", "live", "messages_in", "messages_out", "counted")

    def __init__(self) -> None:
        self.open = 0
        self.live: set[Any] = set()  # open connections that count their messages
        self.messages_in = 0
        self.messages_out = 0
        self.counted = False  # some connection of this route counted its messages


class _Connections:
    """The collector of ``websockets_routes_connections`` and ``..._messages_total``,
    which read the open connections when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[Any]:
        return iter(self._families())

    def collect(self) -> Iterator[Any]:
        return iter(self._families(self.metrics._snapshot()))

    @staticmethod
    def _families(rows: Sequence[tuple[str, int, int | None, int | None]] = ()) -> list[Any]:
        connections = GaugeMetricFamily(
            "websockets_routes_connections",
            "WebSocket connections open now, by route",
            labels=["route"],
        )
        messages = CounterMetricFamily(
            "websockets_routes_messages",
            "WebSocket data messages, by route and direction (in: received, out: sent)",
            labels=["route", "direction"],
        )
        for route, count, received, sent in rows:
            connections.add_metric([route], count)
            if received is not None and sent is not None:
                messages.add_metric([route, "in"], received)
                messages.add_metric([route, "out"], sent)
        return [connections, messages]


class Metrics:
    """Prometheus metrics of ``router``'s handshakes and connections, in ``registry``
    (None: prometheus-client's default ``REGISTRY``).

    Installs itself as ``router.observer`` (ValueError if the router has another one):
    serve that router. ``metrics.view`` is an HTTP view answering the Prometheus text
    format, for ``router.http("/metrics")(metrics.view)``. ``uninstall()`` undoes it
    all (the metrics leave the registry).
    """

    def __init__(self, router: Any, registry: CollectorRegistry | None = None) -> None:
        if getattr(router, "observer", None) is not None:
            raise ValueError(f"{router!r} already has an observer: {router.observer!r}")
        self.router = router
        self.registry: CollectorRegistry = REGISTRY if registry is None else registry
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        self._handshake_children: dict[tuple[str, str], Any] = {}
        self._seconds_children: dict[str, Any] = {}
        self._close_children: dict[tuple[str, int], Any] = {}
        self._collectors: list[Any] = []
        try:
            self._handshakes = self._add(
                Counter,
                "websockets_routes_handshakes",
                "WebSocket opening handshakes answered, by route and outcome "
                "(accept, close, the HTTP status, or timeout)",
                ["route", "outcome"],
            )
            self._seconds = self._add(
                Histogram,
                "websockets_routes_handshake_seconds",
                "Seconds from the complete request head to the handshake's answer",
                ["route"],
                buckets=BUCKETS,
            )
            self._closes = self._add(
                Counter,
                "websockets_routes_closes",
                "Closed WebSocket connections, by route and close code",
                ["route", "code"],
            )
            connections = _Connections(self)
            self.registry.register(connections)
            self._collectors.append(connections)
        except BaseException:
            self._unregister()
            raise
        router.observer = self
        observe.unrouted.add(self)

    def _add(self, kind: Any, name: str, documentation: str, labels: list[str], **kw: Any) -> Any:
        metric = kind(name, documentation, labels, registry=self.registry, **kw)
        self._collectors.append(metric)
        return metric

    def _unregister(self) -> None:
        for collector in self._collectors:
            self.registry.unregister(collector)
        self._collectors = []

    def uninstall(self) -> None:
        """Stop observing the router and take the metrics out of the registry."""
        if getattr(self.router, "observer", None) is self:
            self.router.observer = None
        observe.unrouted.discard(self)
        self._unregister()

    def __repr__(self) -> str:
        return f"<Metrics of {self.router!r}>"

    # The HTTP view

    def view(self, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        """The Prometheus text format of the registry (``GET /metrics``)."""
        return 200, [("Content-Type", CONTENT_TYPE_LATEST)], generate_latest(self.registry)

    # The observer (core.observe)

    def handshake(self, route: str, outcome: str, seconds: float | None) -> None:
        key = (route, outcome)
        child = self._handshake_children.get(key)
        if child is None:
            child = self._handshake_children[key] = self._handshakes.labels(route, outcome)
        child.inc()
        if seconds is not None:
            histogram = self._seconds_children.get(route)
            if histogram is None:
                histogram = self._seconds_children[route] = self._seconds.labels(route)
            histogram.observe(max(0.0, seconds))

    def opened(self, route: str, connection: Any) -> None:
        with self._lock:
            counts = self._routes.get(route)
            if counts is None:
                counts = self._routes[route] = _Route()
            counts.open += 1
            if connection is not None:
                counts.live.add(connection)
                counts.counted = True

    def closed(self, route: str, code: int, connection: Any) -> None:
        key = (route, code)
        child = self._close_children.get(key)
        if child is None:
            child = self._close_children[key] = self._closes.labels(route, str(code))
        child.inc()
        with self._lock:
            counts = self._routes.get(route)
            if counts is None:  # pragma: no cover - closed() always follows opened()
                return
            counts.open = max(0, counts.open - 1)
            if connection is not None and connection in counts.live:
                counts.live.discard(connection)
                counts.messages_in += connection.messages_in
                counts.messages_out += connection.messages_out

    def _snapshot(self) -> list[tuple[str, int, int | None, int | None]]:
        """(route, open, messages in, messages out) per route, now; None: not counted."""
        rows: list[tuple[str, int, int | None, int | None]] = []
        with self._lock:
            for route, counts in self._routes.items():
                if not counts.counted:
                    rows.append((route, counts.open, None, None))
                    continue
                received, sent = counts.messages_in, counts.messages_out
                for connection in counts.live:
                    received += connection.messages_in
                    sent += connection.messages_out
                rows.append((route, counts.open, received, sent))
        return rows
