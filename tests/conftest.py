"""Shared pytest set-up: async tests run through anyio's pytest plugin.

Mark a test ``@pytest.mark.anyio``; it runs under the backends of the ``anyio_backend``
fixture (asyncio by default). A test module or directory that also applies to trio
overrides ``anyio_backend`` with ``params=["asyncio", "trio"]``.
"""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
