"""Fixtures of the websockets transport's tests: websockets' own servers (see servers.py)."""

from tests.transports.websockets.servers import start_legacy_server, start_server

__all__ = ["start_legacy_server", "start_server"]
