"""Test a router without sockets: ``TestClient``.

```python
from websockets_routes.testing import TestClient, HandshakeRejected

async with TestClient(router) as client:                  # asyncio or trio
    async with client.connect("/thing/42", headers=[("X-Token", "t")]) as ws:
        await ws.send("hi")
        reply = await ws.recv()
```

Every connection runs the real server code, the one ``transports.anyio`` runs on
TCP: the sans-IO driver parses the HTTP request and the frames, the router decides,
the handler runs with the same connection object, keepalive and close policy. Only
the byte stream differs: a pair of in-memory anyio streams instead of a socket. On
the other end is a wsproto client, so the handshake and every frame are checked by
an independent implementation. No socket, no thread, no port.

- An HTTP answer instead of a 101 (404, 403, a hook's status...) raises
  ``HandshakeRejected`` with ``.status``, ``.headers`` (``(str, str)`` pairs) and
  ``.body`` from ``client.connect(...)``.
- Accept-then-close (``Close(4040)`` for an unknown path under ``close_unmatched``, or
  a hook's ``Close``): the handshake succeeds and ``ws.recv()`` raises
  ``ConnectionClosed`` with that code.
- A handler that raises closes its connection with 1011, as on a server; with
  ``raise_server_exceptions=True`` (the default) the exception is also raised again
  in the test when the ``client.connect(...)`` block ends (or, if the block already
  ended, when the ``TestClient`` block ends).
- ``await client.request("GET", "/health")`` (or ``client.get``) sends a plain HTTP
  request, for ``router.http`` routes and rejections, and returns an
  ``HTTPResponse(status, headers, body)``.

Server options (``max_size``, ``max_queue``, ``ping_interval``, ``close_timeout``...)
go to ``TestClient(router, **options)``. Keepalive pings are off by default in
tests (``ping_interval=None``); pass ``ping_interval=`` to test them.

A pytest recipe for asyncio and trio, with anyio's plugin: docs/testing.md.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, NamedTuple

import anyio
import anyio.abc
import h11
import wsproto
import wsproto.events as wse
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .core.errors import ConnectionClosed
from .core.websocket import MessageIteration
from .transports.anyio import Connection as ServerSideConnection
from .transports.anyio import PongWaiter, Server
from .transports.anyio.server import exit_task_group

__all__ = ["TestClient", "TestWebSocket", "HandshakeRejected", "HTTPResponse"]

# Chunks (not bytes) a direction of the in-memory stream holds before send() waits:
# enough to never stall a test, few enough that back-pressure is real.
_PIPE_CHUNKS = 32


class HandshakeRejected(Exception):
    """The server answered the opening handshake with HTTP instead of 101."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        super().__init__(status, headers, body)
        self.status = status
        self.headers = headers
        self.body = body

    def __str__(self) -> str:
        return f"handshake rejected with HTTP {self.status}: {self.body[:200]!r}"

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        return _header(self.headers, name, default)


class HTTPResponse(NamedTuple):
    """What ``TestClient.request()`` returns."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        return _header(self.headers, name, default)


def _header(headers: list[tuple[str, str]], name: str, default: str | None) -> str | None:
    lower = name.lower()
    for key, value in headers:
        if key.lower() == lower:
            return value
    return default


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


class _MemoryStream(anyio.abc.ByteStream):
    """One end of an in-memory, bidirectional byte stream (see ``_stream_pair``)."""

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._rest = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = self._rest
        if not data:
            data = await self._receive.receive()  # EndOfStream after the peer's EOF
        if len(data) > max_bytes:
            data, self._rest = data[:max_bytes], data[max_bytes:]
        else:
            self._rest = b""
        return data

    async def send(self, item: bytes) -> None:
        if item:
            # BrokenResourceError once the peer closed: what a reset socket says.
            await self._send.send(bytes(item))

    async def send_eof(self) -> None:
        self._send.close()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        # Synchronous, so it cannot be interrupted by a cancellation half-way.
        self._send.close()
        self._receive.close()


def _stream_pair() -> tuple[_MemoryStream, _MemoryStream]:
    a_send, b_receive = anyio.create_memory_object_stream[bytes](_PIPE_CHUNKS)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](_PIPE_CHUNKS)
    return _MemoryStream(a_send, a_receive), _MemoryStream(b_send, b_receive)


class TestWebSocket(MessageIteration):
    """The client end of a test connection.

    ``await send(str | bytes)``, ``await recv()``, ``async for message in ws``,
    ``await close(code=1000, reason="")``, ``await ping(data=None)`` (returns an
    awaitable latency); ``subprotocol``, ``extensions`` (the negotiated
    Sec-WebSocket-Extensions value or None), ``response_headers`` (the 101's
    ``(str, str)`` pairs), ``close_code``/``close_reason`` (None until closed),
    ``server`` (the server-side connection object the handler got).
    """

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, stream: _MemoryStream, target: str, linger: float = math.inf) -> None:
        self.target = target
        self._linger = linger  # how long close() waits for the server's answer
        self.subprotocol: str | None = None
        self.extensions: str | None = None
        self.response_headers: list[tuple[str, str]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.server: ServerSideConnection | None = None
        self.protocol_error: AssertionError | None = None
        self._stream = stream
        self._ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self._messages: deque[str | bytes] = deque()
        self._parts: list[Any] = []
        self._changed = anyio.Event()
        self._closed = anyio.Event()
        self._close_sent = False
        self._write_lock = anyio.Lock()
        self._pings: dict[bytes, tuple[PongWaiter, float]] = {}
        self._counter = itertools.count()

    def __repr__(self) -> str:
        state = "open" if self.close_code is None else f"closed {self.close_code}"
        return f"<TestWebSocket {self.target!r} {state}>"

    # Handshake

    async def _handshake(
        self,
        host: str,
        headers: Sequence[tuple[str, str]],
        subprotocols: Sequence[str],
        compression: str | None,
    ) -> None:
        extensions = [PerMessageDeflate()] if compression == "deflate" else []
        request = wse.Request(
            host=host,
            target=self.target,
            extra_headers=[
                (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers
            ],
            subprotocols=list(subprotocols),
            extensions=extensions,
        )
        await self._stream.send(self._ws.send(request))
        head = b""
        reject: wse.RejectConnection | None = None
        body = b""
        while True:
            try:
                data = await self._stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                if reject is not None:
                    break
                raise ConnectionClosed.for_code(
                    1006, "the server closed before answering"
                ) from None
            if b"\r\n\r\n" not in head:
                head += data
            try:
                self._ws.receive_data(data)
                for event in self._ws.events():
                    if isinstance(event, wse.AcceptConnection):
                        self.subprotocol = event.subprotocol
                        self.response_headers = _parse_head(head)
                        self.extensions = _header(
                            self.response_headers, "Sec-WebSocket-Extensions", None
                        )
                        # Frames that came with the 101 (a close, say) are handled too.
                        for reply in self._on_events(self._ws.events()):
                            await self._send_reply(reply)
                        return
                    if isinstance(event, wse.RejectConnection):
                        reject = event
                        if not event.has_body:
                            break
                    elif isinstance(event, wse.RejectData):
                        body += event.data
                        if event.body_finished:
                            break
                else:
                    continue
                break
            except RemoteProtocolError as exc:
                raise AssertionError(f"the server's handshake answer is invalid: {exc}") from exc
        assert reject is not None
        # The head as sent (h11 lower-cases names): (str, str) pairs in arrival order.
        raise HandshakeRejected(reject.status_code, _parse_head(head), body)

    # Receiving

    async def recv(self) -> str | bytes:
        """The next message; ConnectionClosed (with the server's code) once closed."""
        while True:
            if self._messages:
                return self._messages.popleft()
            if self.close_code is not None:
                if self.protocol_error is not None:
                    raise self.protocol_error
                raise ConnectionClosed.for_code(self.close_code, self.close_reason or "")
            changed = self._changed
            await changed.wait()

    # Sending

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary (bytes-like) message."""
        if isinstance(message, str):
            event: wse.Event = wse.TextMessage(data=message)
        elif isinstance(message, (bytes, bytearray, memoryview)):
            event = wse.BytesMessage(data=bytes(message))
        else:
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        await self._send_event(event)

    async def ping(self, data: str | bytes | None = None) -> PongWaiter:
        """Send a ping; await the result for the latency once the pong arrives."""
        if data is None:
            payload = next(self._counter).to_bytes(4, "big")
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
        waiter = PongWaiter()
        self._pings[payload] = (waiter, anyio.current_time())
        await self._send_event(wse.Ping(payload=payload))
        return waiter

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait for the server's answer (as a real
        client would, for the server's close_timeout at most; then drop the stream)."""
        if self.close_code is None and not self._close_sent:
            self._close_sent = True
            await self._send_event(wse.CloseConnection(code=code, reason=reason or None))
        with anyio.move_on_after(self._linger):
            await self._closed.wait()
        if self.close_code is None:
            self._stream.close()
            self._set_closed(1006, "")

    async def _send_event(self, event: wse.Event) -> None:
        if self.close_code is not None or (
            self._close_sent and not isinstance(event, wse.CloseConnection)
        ):
            raise ConnectionClosed.for_code(self.close_code or 1006, self.close_reason or "")
        async with self._write_lock:
            try:
                data = self._ws.send(event)
            except LocalProtocolError as exc:
                raise ConnectionClosed.for_code(
                    self.close_code or 1006, self.close_reason or ""
                ) from exc
            try:
                await self._stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._set_closed(1006, "")
                raise ConnectionClosed.for_code(1006, "") from None

    # Reading from the server

    async def _read_loop(self) -> None:
        # As a TCP client does: after the closing handshake, read on until the server
        # ends the stream (it closes first, RFC 6455 7.1.1), then close our end.
        try:
            while True:
                try:
                    data = await self._stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self._stream.close()
                    self._set_closed(1006, "")
                    return
                if self.close_code is not None:
                    continue  # bytes after the close: ignored
                try:
                    self._ws.receive_data(data)
                    replies = self._on_events(self._ws.events())
                except RemoteProtocolError as exc:
                    # recv() raises it: the test sees it where it waits.
                    self.protocol_error = AssertionError(f"the server broke the protocol: {exc}")
                    self._set_closed(1006, "")
                    return
                for reply in replies:
                    await self._send_reply(reply)
        finally:
            self._set_closed(1006, "")

    async def _send_reply(self, event: wse.Event) -> None:
        async with self._write_lock:
            try:
                await self._stream.send(self._ws.send(event))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, LocalProtocolError):
                pass

    def _on_events(self, events: Iterable[wse.Event]) -> list[wse.Event]:
        replies: list[wse.Event] = []
        for event in events:
            if isinstance(event, wse.Message):
                self._parts.append(event.data)
                if event.message_finished:
                    joiner = "" if isinstance(event, wse.TextMessage) else b""
                    self._messages.append(joiner.join(self._parts))
                    self._parts = []
                    self._wake()
            elif isinstance(event, wse.Ping):
                replies.append(event.response())
            elif isinstance(event, wse.Pong):
                entry = self._pings.pop(bytes(event.payload), None)
                if entry is not None:
                    entry[0].set(anyio.current_time() - entry[1])
            elif isinstance(event, wse.CloseConnection):
                if self._ws.state is wsproto.ConnectionState.REMOTE_CLOSING:
                    replies.append(event.response())
                self._set_closed(event.code, event.reason or "")
        return replies

    def _wake(self) -> None:
        changed = self._changed
        self._changed = anyio.Event()
        changed.set()

    def _set_closed(self, code: int, reason: str) -> None:
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = reason
        error = ConnectionClosed.for_code(code, reason)
        for waiter, _ in self._pings.values():
            waiter.fail(error)
        self._pings.clear()
        self._closed.set()
        self._wake()


def _parse_head(head: bytes) -> list[tuple[str, str]]:
    lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
    return headers


class _Connect:
    """``async with client.connect(...) as ws``: see ``TestClient.connect``."""

    def __init__(
        self,
        client: TestClient,
        target: str,
        headers: Sequence[tuple[str, str]],
        subprotocols: Sequence[str],
        compression: str | None,
    ) -> None:
        self._client = client
        self._target = target
        self._headers = headers
        self._subprotocols = subprotocols
        self._compression = compression
        self._tg: anyio.abc.TaskGroup | None = None
        self._ws: TestWebSocket | None = None
        self._peer: tuple[str, int] | None = None
        self._server_done: anyio.Event | None = None

    async def __aenter__(self) -> TestWebSocket:
        client = self._client
        client._check_running()
        stream, server_stream = _stream_pair()
        self._peer = peer = client._next_peer()
        self._server_done = done = anyio.Event()
        client._start(server_stream, peer, done)
        ws = self._ws = TestWebSocket(stream, self._target, client._linger)
        try:
            await ws._handshake(client.host, self._headers, self._subprotocols, self._compression)
        except BaseException:
            stream.close()
            with anyio.move_on_after(client._linger):
                await done.wait()
            raise
        ws.server = client._server_connection(peer)
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.start_soon(ws._read_loop)
        return ws

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        ws, tg, done = self._ws, self._tg, self._server_done
        assert ws is not None and tg is not None and done is not None
        client = self._client
        try:
            if exc is None or isinstance(exc, Exception):
                with anyio.move_on_after(client._linger):
                    if ws.close_code is None:
                        try:
                            await ws.close()
                        except ConnectionClosed:
                            pass
                    await done.wait()
        finally:
            ws._stream.close()
            tg.cancel_scope.cancel()
            suppressed = await exit_task_group(tg, exc_type, exc, tb)
        server_error = client._take_error(self._peer)
        if server_error is not None and client.raise_server_exceptions:
            if exc is None or isinstance(exc, ConnectionClosed):
                raise server_error from exc
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(f"(the server's handler failed too: {server_error!r})")
        return suppressed


class TestClient:
    """Runs ``router`` in memory; ``async with TestClient(router) as client``.

    ``client.connect(target, headers=(), subprotocols=(), origin=None,
    compression="deflate")`` opens a WebSocket connection (an async context manager
    giving a ``TestWebSocket``); ``await client.request(method, target, headers=())``
    sends a plain HTTP request. ``raise_server_exceptions`` (default True): a handler
    exception is raised again in the test. ``host`` is the Host header sent
    (``"testserver"``); each connection comes from ``("testclient", 50000 + n)``.
    Other keyword arguments are server options, as for ``serve()``.
    """

    __test__ = False  # not a test class, whatever its name says

    def __init__(
        self,
        router: Any,
        *,
        raise_server_exceptions: bool = True,
        host: str = "testserver",
        **options: Any,
    ) -> None:
        options.setdefault("ping_interval", None)
        self.router = router
        self.raise_server_exceptions = raise_server_exceptions
        self.host = host
        self._server = Server(router, None, None, on_handler_error=self._record, **options)
        close_timeout = self._server.options.close_timeout
        # How long the end of a connect() block waits for the server side to finish.
        self._linger = math.inf if close_timeout is None else close_timeout + 1
        self._ports = itertools.count(50000)
        self._errors: dict[Any, BaseException] = {}
        self._entered = False

    async def __aenter__(self) -> TestClient:
        await self._server.__aenter__()
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._entered = False
        suppressed = await self._server.__aexit__(exc_type, exc, tb)
        errors = list(self._errors.values())
        self._errors.clear()
        if errors and self.raise_server_exceptions and exc is None:
            raise errors[0]
        return suppressed

    # Opening connections

    def connect(
        self,
        target: str,
        *,
        headers: Iterable[tuple[str | bytes, str | bytes]] | Any = (),
        subprotocols: Sequence[str] | None = None,
        origin: str | None = None,
        compression: str | None = "deflate",
    ) -> _Connect:
        """A WebSocket connection to ``target`` (path and query), as an async context
        manager giving a ``TestWebSocket``. ``headers``: extra request headers (pairs,
        or a mapping); ``origin`` sets the Origin header; ``compression="deflate"``
        offers permessage-deflate, None does not."""
        if compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {compression!r}")
        pairs = [(_text(name), _text(value)) for name, value in _items(headers)]
        if origin is not None:
            pairs.append(("Origin", origin))
        return _Connect(self, target, pairs, list(subprotocols or ()), compression)

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: Iterable[tuple[str | bytes, str | bytes]] | Any = (),
        body: bytes = b"",
    ) -> HTTPResponse:
        """Send one plain HTTP request (a ``router.http`` route, or a WebSocket path
        without the upgrade) and return the response."""
        self._check_running()
        stream, server_stream = _stream_pair()
        peer = self._next_peer()
        done = anyio.Event()
        self._start(server_stream, peer, done)
        conn = h11.Connection(h11.CLIENT)
        pairs = [("Host", self.host)]
        pairs += [(_text(name), _text(value)) for name, value in _items(headers)]
        if body:
            pairs.append(("Content-Length", str(len(body))))
        try:
            data = conn.send(h11.Request(method=method, target=target, headers=pairs))
            if body:
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
            await stream.send(data)
            status = 0
            response_headers: list[tuple[str, str]] = []
            chunks = []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive())
                    except anyio.EndOfStream:
                        conn.receive_data(b"")
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    response_headers = [
                        (_text(name), _text(value)) for name, value in event.headers.raw_items()
                    ]
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
            return HTTPResponse(status, response_headers, b"".join(chunks))
        finally:
            stream.close()
            with anyio.move_on_after(self._linger):
                await done.wait()

    async def get(self, target: str, **kwargs: Any) -> HTTPResponse:
        """``request("GET", target, ...)``."""
        return await self.request("GET", target, **kwargs)

    # Internals

    def _check_running(self) -> None:
        if not self._entered:
            raise RuntimeError("use the TestClient inside `async with TestClient(router)`")

    def _next_peer(self) -> tuple[str, int]:
        return ("testclient", next(self._ports))

    def _start(self, stream: _MemoryStream, peer: tuple[str, int], done: anyio.Event) -> None:
        self._check_running()
        self._server.start_stream(stream, peer, done)

    def _server_connection(self, peer: tuple[str, int]) -> ServerSideConnection | None:
        for connection in self._server.connections:
            if connection.remote_address == peer:
                return connection
        return None

    def _record(self, connection: ServerSideConnection, exc: BaseException) -> None:
        self._errors.setdefault(connection.remote_address, exc)

    def _take_error(self, peer: Any) -> BaseException | None:
        return self._errors.pop(peer, None)


def _items(headers: Any) -> Iterable[tuple[Any, Any]]:
    if hasattr(headers, "items"):
        return list(headers.items())
    return list(headers)
