"""The sans-IO core: routing, handshake decisions and the connection driver.

Nothing here does I/O or imports an async library; every transport builds on it.
"""

from .decisions import Accept, Close, Decision, Respond, ServeHTTP
from .errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from .handshake import accept_key, decide, resolve
from .http import Headers, Request
from .paths import RoutedPath
from .router import FunctionView, Route, Router

__all__ = [
    "Accept",
    "Close",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Decision",
    "FunctionView",
    "Headers",
    "Request",
    "Respond",
    "Route",
    "RoutedPath",
    "Router",
    "ServeHTTP",
    "accept_key",
    "decide",
    "resolve",
]
