"""The router as an ASGI 3 application (``router.asgi``): uvicorn, hypercorn, ...

This transport only translates: an ASGI scope becomes a core ``Request``, the core's
decision becomes ASGI messages. The ASGI server owns the socket, the HTTP parser and
the WebSocket framing (pings, fragmentation, compression, the closing handshake).

It uses anyio only, so it runs wherever the server runs: asyncio (uvicorn, hypercorn)
or trio (``hypercorn --worker-class trio``).

The router's observer (``core.observe``, metrics), if any, hears of every WebSocket
handshake (``seconds``: from ``websocket.connect`` to the answer sent), and of each
connection opened and closed, with its message counts. The close code is what the
server reports, else ours (a ``Close`` decision's, without waiting for the peer's).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio

from ..core.decisions import Accept, Close, Respond, check_close_code, respond
from ..core.errors import ConnectionClosed, handler_error_is_close
from ..core.http import Request
from ..core.naming import peer_name, route_name
from ..core.observe import report_handshake, route_label
from ..core.paths import RoutedPath, without_query
from ..core.policy import warn_unapplied
from ..core.websocket import MessageIteration

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ..core.router import Router

__all__ = ["ASGIApp", "ASGIWebSocket"]

logger = logging.getLogger("websockets_routes.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DENIAL = "websocket.http.response"

# The server writes these itself when it accepts: passing them again in
# websocket.accept duplicates them under uvicorn (all three implementations append the
# app's headers to their own), and hypercorn raises on Sec-WebSocket-Protocol, which
# travels as the accept message's "subprotocol" instead.
_SERVER_HEADERS = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)

# Characters kept as they are when rebuilding a target from an unescaped scope["path"].
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


class ASGIApp:
    """An ASGI 3 application serving a router's WebSocket and plain-HTTP routes.

    ``router.asgi`` returns one; build one yourself to change ``max_queue``, the number
    of received messages buffered per connection before the app stops reading (the
    server then applies its own back-pressure).
    """

    def __init__(self, router: Router, *, max_queue: int = 16) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.router = router
        self.max_queue = max_queue
        # The ASGI server owns max_size, compression and pings: a route's own cannot
        # apply (core.policy).
        warn_unapplied(router, "an ASGI server (transports.asgi)")

    def __repr__(self) -> str:
        return f"<ASGIApp for {self.router!r}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        else:
            # The ASGI spec asks apps to raise on scope types they do not know.
            raise ValueError(f"websockets-routes cannot serve ASGI scope type {kind!r}")

    # WebSocket

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left before the app ran
        started = time.monotonic()
        request = _request(scope, "GET")
        decision = await self.router.resolve(request)
        peer = peer_name(request.remote_address)
        observer = getattr(self.router, "observer", None)
        if isinstance(decision, Respond):
            await _deny(scope, send, decision, request, peer)
            if observer is not None:
                seconds = time.monotonic() - started
                report_handshake(observer, self.router, request, decision, seconds)
        elif isinstance(decision, Close):
            try:
                await send(_accept_message(decision.headers))
            except OSError:
                observer = None  # nothing was answered
            if observer is not None:
                seconds = time.monotonic() - started
                route = report_handshake(observer, self.router, request, decision, seconds) or ""
                observer.opened(route, None)
                observer.closed(route, decision.code, None)
            try:
                await send(
                    {"type": "websocket.close", "code": decision.code, "reason": decision.reason}
                )
            except OSError:
                logger.debug(
                    "%s left before close %d on %s",
                    peer,
                    decision.code,
                    without_query(request.target),
                )
        elif isinstance(decision, Accept):
            await self._run(scope, receive, send, request, decision, peer, started)
        else:  # resolve() never returns anything else; fail loudly if it starts to
            raise TypeError(f"unexpected handshake decision {decision!r}")

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request: Request,
        decision: Accept,
        peer: str,
        started: float,
    ) -> None:
        path = decision.path
        ws = ASGIWebSocket(
            scope, receive, send, request, path, decision.subprotocol, self.max_queue
        )
        try:
            await send(_accept_message(decision.headers))
        except OSError:
            logger.debug("%s left before the handshake completed on %s", peer, without_query(path))
            ws._closed_by(1006, "")
            ws._streams_close()
            return
        observer = getattr(self.router, "observer", None)
        if observer is not None:
            observer.handshake(route_label(path), "accept", time.monotonic() - started)
            observer.opened(route_label(path), ws)
        route = route_name(path)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ws._read)
                try:
                    await path.route.handle(ws, path)
                except Exception as exc:
                    if handler_error_is_close(exc):
                        # A handler that lets the closed connection's exception out
                        # (alone or from a task group) did nothing wrong: the peer left.
                        logger.debug("route %r for %s: %s", route, peer, exc)
                    else:
                        logger.exception(
                            "handler of route %r failed for %s from %s",
                            route,
                            without_query(path),
                            peer,
                        )
                        await ws._close_quietly(1011, "")
                finally:
                    # The reader must not outlive the handler.
                    tg.cancel_scope.cancel()
            # Returning without closing would make hypercorn close with 1011.
            await ws._close_quietly(1000, "")
        finally:
            ws._streams_close()
            if observer is not None:
                observer.closed(route_label(path), ws.close_code or 1006, ws)

    # Plain HTTP

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        request = _request(scope, method)
        decision = await self.router.resolve(request)
        if not isinstance(decision, Respond):
            # An upgrade request reached us as plain HTTP: the server (or its
            # configuration, e.g. uvicorn --ws none) cannot do WebSocket.
            decision = respond(
                HTTPStatus.NOT_IMPLEMENTED,
                "this ASGI server does not accept WebSocket connections",
            )
        headers = _response_headers(decision)
        await send({"type": "http.response.start", "status": decision.status, "headers": headers})
        body = b"" if method == "HEAD" else decision.body
        await send({"type": "http.response.body", "body": body, "more_body": False})


class _Pong:
    """What ``ping()`` returns: awaiting it completes at once with latency 0.0."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, float]:
        return 0.0
        yield  # a generator that never suspends, so it works under any event loop


class ASGIWebSocket(MessageIteration):
    """The connection object handlers get under ASGI, with the surface of our servers'.

    ``await send(str | bytes)``, ``await recv()``, ``async for message in ws``,
    ``await close(code=1000, reason="")``, ``await ping()``; ``path``, ``request``,
    ``subprotocol``, ``remote_address``, ``local_address``, ``close_code``,
    ``close_reason``, and the raw ASGI ``scope``.

    A task reads the ASGI ``receive()`` channel into a bounded buffer, so ``send`` and
    ``recv`` may run concurrently in different tasks and a client that leaves is
    noticed even by a handler that only sends: the next ``send``/``recv`` raises
    ``ConnectionClosed``. Messages received before the peer closed are still
    returned by ``recv`` first.

    ASGI has no ping message: the server sends keepalive pings itself (uvicorn
    ``--ws-ping-interval``, hypercorn ``websocket_ping_interval``), so ``ping()`` only
    checks the connection is open and returns an awaitable that completes at once
    with a latency of ``0.0``.
    """

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request: Request,
        path: RoutedPath,
        subprotocol: str | None,
        max_queue: int = 16,
    ) -> None:
        self.scope = scope
        self.request = request
        self.path = path
        self.subprotocol = subprotocol
        self.remote_address: Any = request.remote_address
        server = scope.get("server")
        self.local_address: Any = tuple(server) if server else None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.messages_in = 0  # data messages received and sent, for metrics
        self.messages_out = 0
        self._receive = receive
        self._send = send
        self._local_close = False
        self._send_lock = anyio.Lock()
        self._in: MemoryObjectSendStream[str | bytes]
        self._out: MemoryObjectReceiveStream[str | bytes]
        self._in, self._out = anyio.create_memory_object_stream[str | bytes](max_queue)

    def __repr__(self) -> str:
        state = "open" if self.close_code is None else f"closed {self.close_code}"
        return f"<ASGIWebSocket {str(self.path)!r} from {peer_name(self.request.remote_address)} {state}>"

    # Receiving

    async def recv(self) -> str | bytes:
        """The next message; ConnectionClosed once the connection is closed."""
        if self._local_close:
            raise self._closed_error()
        try:
            return await self._out.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise self._closed_error() from None

    # Sending

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send one text (str) or binary (bytes-like) message."""
        if isinstance(message, str):
            event: Message = {"type": "websocket.send", "text": message}
        elif isinstance(message, (bytes, bytearray, memoryview)):
            event = {"type": "websocket.send", "bytes": bytes(message)}
        else:
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        async with self._send_lock:
            if self.close_code is not None:
                raise self._closed_error()
            try:
                await self._send(event)
            except OSError:
                # ASGI 2.4: send() on a connection the client left raises an OSError.
                self._closed_by(1006, "")
                raise self._closed_error() from None
            self.messages_out += 1

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason``; does nothing if already closed."""
        check_close_code(code, reason)
        await self._close_quietly(code, reason)

    async def ping(self, data: str | bytes | None = None) -> Awaitable[float]:
        """No-op under ASGI (the server pings); raises ConnectionClosed if closed."""
        if self.close_code is not None:
            raise self._closed_error()
        return _Pong()

    async def pong(self, data: str | bytes = b"") -> None:
        """No-op under ASGI; raises ConnectionClosed if closed."""
        if self.close_code is not None:
            raise self._closed_error()

    # Internals

    def _closed_error(self) -> ConnectionClosed:
        return ConnectionClosed.for_code(self.close_code or 1006, self.close_reason or "")

    def _closed_by(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason

    def _streams_close(self) -> None:
        self._in.close()
        self._out.close()

    async def _close_quietly(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if self.close_code is not None:
                return
            self._closed_by(code, reason)
            self._local_close = True
            self._in.close()  # wakes a recv() waiting in another task
            try:
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
            except OSError:
                pass  # the client left first: nothing to close

    async def _read(self) -> None:
        try:
            while True:
                message = await self._receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    # hypercorn sends both keys, one of them None.
                    data = message.get("bytes")
                    if data is None:
                        data = message.get("text")
                    if data is None:
                        continue
                    self.messages_in += 1
                    try:
                        await self._in.send(data)
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        pass  # we closed: drop what arrives until the disconnect
                elif kind == "websocket.disconnect":
                    self._closed_by(message.get("code") or 1005, message.get("reason") or "")
                    return
        finally:
            self._in.close()


# Helpers


async def _lifespan(receive: Receive, send: Send) -> None:
    # Nothing to set up: a router is ready when it is built.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _target(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if raw is None:
        raw = quote(scope.get("path", "/"), safe=_PATH_SAFE).encode("ascii")
    # Under a mount (Starlette's Mount, uvicorn --root-path), routes are relative to it.
    root = scope.get("root_path") or ""
    if root:
        prefix = quote(root, safe=_PATH_SAFE).encode("ascii")
        if raw.startswith(prefix) and raw[len(prefix) : len(prefix) + 1] in (b"", b"/"):
            raw = raw[len(prefix) :] or b"/"
    query = scope.get("query_string") or b""
    target = bytes(raw) + (b"?" + bytes(query) if query else b"")
    # latin-1 keeps every byte; the core rejects what is not a valid target with 400.
    return target.decode("latin-1")


def _request(scope: Scope, method: str) -> Request:
    client = scope.get("client")
    headers = [(bytes(name), bytes(value)) for name, value in scope.get("headers", ())]
    offered = scope.get("subprotocols") if scope["type"] == "websocket" else None
    if offered and not any(name.lower() == b"sec-websocket-protocol" for name, _ in headers):
        # uvicorn's wsproto stack drops this header from the scope and passes the
        # offer only as scope["subprotocols"]; the engine chooses from the header.
        headers.append((b"sec-websocket-protocol", ", ".join(offered).encode("latin-1")))
    return Request(
        method, _target(scope), headers, remote_address=tuple(client) if client else None
    )


def _accept_message(headers: Any) -> Message:
    subprotocol = None
    extra: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "sec-websocket-protocol":
            subprotocol = value
        elif lower not in _SERVER_HEADERS:
            extra.append((lower.encode("latin-1"), value.encode("latin-1")))
    return {"type": "websocket.accept", "subprotocol": subprotocol, "headers": extra}


def _response_headers(decision: Respond) -> list[tuple[bytes, bytes]]:
    # ASGI wants lower-case names; a Content-Length lets every server frame the body
    # the same way (no chunked encoding for a tiny rejection body).
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in decision.headers
    ]
    if not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(decision.body)).encode("ascii")))
    return headers


async def _deny(scope: Scope, send: Send, decision: Respond, request: Request, peer: str) -> None:
    try:
        if DENIAL in (scope.get("extensions") or {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": int(decision.status),
                    "headers": _response_headers(decision),
                }
            )
            await send(
                {"type": "websocket.http.response.body", "body": decision.body, "more_body": False}
            )
        else:
            # Without the denial extension the only refusal ASGI has is a close before
            # accept, which servers answer with 403 and no body.
            logger.info(
                "%s: the ASGI server cannot send HTTP %d to %s; it answers 403 instead",
                without_query(request.target),
                decision.status,
                peer,
            )
            await send({"type": "websocket.close", "code": 1008, "reason": ""})
    except OSError:
        logger.debug(
            "%s left before the HTTP %d answer on %s",
            peer,
            decision.status,
            without_query(request.target),
        )
