"""websockets-routes: a WebSocket router with a sans-IO core.

``import websockets_routes`` needs neither ``websockets`` nor any server: the
transport behind each convenience below is imported when first used.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .core import (
    Accept,
    Close,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Headers,
    Request,
    Respond,
    RoutedPath,
)
from .core import Router as _CoreRouter

if TYPE_CHECKING:
    from .transports.websockets import Protocol

__version__ = "1.0.0.dev0"

__all__ = [
    "Accept",
    "Close",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Headers",
    "Protocol",
    "Request",
    "Respond",
    "RoutedPath",
    "Router",
    "__version__",
]

RequestedPath = RoutedPath  # the name used by websockets-routes 0.1


class Router(_CoreRouter):
    """The core Router plus conveniences that bring in their transport when used.

    ``router.handle`` / ``router`` as a ``websockets`` handler, ``router.process_request``
    as its handshake hook, ``router.serve()`` (websockets), ``router.asgi`` (ASGI app).
    """

    def handle(self, ws: Any, path: str | None = None) -> Coroutine[Any, Any, None]:
        """A ``websockets`` connection handler, new ``(ws)`` or legacy ``(ws, path)``."""
        from .transports import websockets as transport

        # The transport's coroutine itself, not one awaiting it: a frame less held for
        # each open connection.
        return transport.handle(self, ws, path)

    def __call__(self, ws: Any, path: str | None = None) -> Coroutine[Any, Any, None]:
        from .transports import websockets as transport

        return transport.handle(self, ws, path)

    async def process_request(self, *args: Any) -> Any:
        """A ``process_request`` hook for ``websockets`` servers, new and legacy."""
        from .transports import websockets as transport

        return await transport.process_request(self, *args)

    def serve(self, host: str | None = None, port: int | None = None, **kwargs: Any) -> Any:
        """Serve with ``websockets``: awaitable, async context manager, 0.2-compatible."""
        from .transports import websockets as transport

        return transport.serve(self, host, port, **kwargs)

    @property
    def asgi(self) -> Any:
        """This router as an ASGI 3 application."""
        app = self.__dict__.get("_asgi")
        if app is None:
            from .transports.asgi import ASGIApp

            app = self.__dict__["_asgi"] = ASGIApp(self)
        return app


def __getattr__(name: str) -> Any:
    if name == "Protocol":
        from .transports.websockets import Protocol

        return Protocol
    raise AttributeError(f"module 'websockets_routes' has no attribute {name!r}")
