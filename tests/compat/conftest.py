"""Fixtures of tests/compat: websockets' own servers, as 0.2's tests used them (see
tests/transports/websockets/servers.py)."""

from tests.transports.websockets.servers import start_legacy_server, start_server

__all__ = ["start_legacy_server", "start_server"]
