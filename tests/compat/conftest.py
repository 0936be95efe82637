"""Fixtures of tests/compat: see servers.py."""

from .servers import start_legacy_server, start_server

__all__ = ["start_legacy_server", "start_server"]
