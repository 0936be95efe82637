"""Fixtures of the metrics tests (``websockets_routes.metrics``).

Every test gets its own ``CollectorRegistry`` (``registry``). Tests that take
``serve_router`` run on every own server, as the transport suite does: asyncio,
anyio on asyncio, anyio on trio and the custom transport of
examples/custom_transport.py, which gets the metrics through ``core.Session`` like
the others (the fixtures and the parametrization are those of tests/transports).
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from tests.transports.conftest import (  # noqa: F401 - fixtures and the parametrization
    connect,
    pytest_generate_tests,
    serve_router,
)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()
