"""The sans-IO core: routing, handshake decisions and the connection driver.

Nothing here does I/O or imports an async library; every transport builds on it.
"""

from .errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from .handshake import (
    Accept,
    Close,
    Decision,
    Headers,
    Request,
    Respond,
    ServeHTTP,
    accept_key,
    decide,
    resolve,
)
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
