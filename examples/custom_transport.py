"""A complete WebSocket server for a ``Router`` on ``asyncio.start_server`` streams,
written on the public core API alone: every name it takes from the project is one
that ``websockets_routes.core`` exports::

    from examples.custom_transport import serve

    async with serve(router, "127.0.0.1", 8765) as server:
        await server.serve_forever()

The core's ``Session`` decides every rule: the handshake answer, the open, keepalive
and close deadlines, when to stop and resume reading, how TCP ends, what a shutdown
does to each connection. This file only moves bytes, keeps time (one loop timer per
connection) and runs tasks: a reader per connection feeds the session what it reads,
and every call on the session returns actions that ``Connection.act`` carries out in
order. docs/custom-transport.md walks through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets_routes import core


class Connection(core.SessionAttributes):
    """One TCP connection, and the ``ws`` its handler gets: ``send``, ``recv``,
    ``async for``, ``close``, ``ping``, ``wait_closed``, ``path``; ``request``,
    ``subprotocol``, ``remote_address`` and ``close_code`` read the session."""

    def __init__(self, server: Server, reader: asyncio.StreamReader, writer: Any) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.loop = loop = asyncio.get_running_loop()
        self.session, actions = server.new_session(writer.get_extra_info("peername"), loop.time())
        self.path = self.task = self.timer = None  # the task: resolving, then the handler
        # Set by WakeReceiver (recv() looks again), PauseReading/ResumeReading (cleared
        # and set), NotifyClosed (the WebSocket connection is over).
        self.woken, self.reading, self.closed = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.reading.set()
        self.arm(self.session.next_deadline())  # the open timeout
        self.act(actions)  # accepted as the server closes: close it at once

    # The handler's API: ask the session, carry out what it answers.

    async def recv(self) -> str | bytes:
        while True:
            message, actions = self.session.next_message(self.loop.time())
            self.act(actions)
            if message is not None:
                return message
            if not actions:  # nothing yet: wait for WakeReceiver (it raises once closed)
                self.woken.clear()
                await self.woken.wait()

    async def send(self, message: str | bytes) -> None:
        self.writer.write(self.session.send(message))
        try:
            await self.writer.drain()  # back-pressure: wait while the peer does not read
        except OSError:  # the peer is gone (the reader tells the session)
            raise self.session.closed_error() from None

    async def ping(self, data: str | bytes | None = None) -> asyncio.Future[float]:
        """Send a ping; ``await`` the result for the round-trip time."""
        waiter = self.loop.create_future()
        payload = data.encode() if isinstance(data, str) else data
        self.writer.write(self.session.ping(payload, waiter, self.loop.time()))
        return waiter

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.act(self.session.close(code, reason, self.loop.time()))
        await self.wait_closed()  # the closing handshake, or close_timeout

    async def wait_closed(self) -> None:
        await self.closed.wait()

    # Carrying out what the session decided.

    def act(self, actions: core.Actions) -> None:
        """Carry out ``actions`` in order."""
        for action in actions:
            match action:
                case core.Write(data):
                    self.writer.write(data)
                case core.WakeReceiver():
                    self.woken.set()
                case core.ArmTimer(at):
                    self.arm(at)
                case core.Resolve():
                    self.task = self.loop.create_task(self.resolve())
                case core.CancelResolve() | core.CancelHandler() if self.task is not None:
                    self.task.cancel()
                case core.StartHandler(path):
                    self.path = path
                    self.task = self.loop.create_task(self.handle(path))
                case core.PauseReading():
                    self.reading.clear()
                case core.ResumeReading():
                    self.reading.set()
                case core.CompletePing(waiter, sent) if not waiter.done():
                    waiter.set_result(self.loop.time() - sent)
                case core.NotifyClosed(error, ping_waiters):
                    for waiter in ping_waiters:
                        if not waiter.done():
                            waiter.set_exception(error)
                            waiter.exception()  # nobody has to await it
                    self.woken.set()
                    self.closed.set()
                case core.HalfCloseTCP() if self.writer.can_write_eof():
                    with contextlib.suppress(OSError):  # a reset: the next read sees it
                        self.writer.write_eof()
                case core.CloseTCP() | core.HalfCloseTCP():  # (TLS cannot half-close)
                    self.writer.close()
                    self.reading.set()  # wake the reader: TCP is over
                case core.AbortTCP():
                    self.writer.transport.abort()
                    self.reading.set()

    def arm(self, at: float | None) -> None:
        """The connection's one timer: (re)armed at ``at``, or cancelled."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None if at is None else self.loop.call_at(at, self.on_timer)

    def on_timer(self) -> None:
        self.act(self.session.on_timer(self.loop.time()))

    # Its tasks: the reader, then one resolving the handshake, then the handler.

    async def read_until_ended(self) -> None:
        session = self.session
        while not session.ended:
            await self.reading.wait()  # paused: a full queue, a decision pending ...
            data = b""  # a reset ends the input as an EOF does
            with contextlib.suppress(OSError):
                data = await self.reader.read(65536)
            now = self.loop.time()
            actions = session.receive_data(data, now) if data else session.receive_eof(now)
            self.act(actions)
            if any(type(action) is core.Write for action in actions):
                with contextlib.suppress(OSError):  # replies (pongs) wait for a peer that reads
                    await self.writer.drain()
        self.arm(self.session.next_deadline())  # None, unless a handler's shutdown grace

    async def resolve(self) -> None:
        router = self.server.router
        decision = self.session.resolve_now(router)  # None: a hook must be awaited
        if decision is None:
            decision = await self.session.resolve(router)
        # Past max_connections, the session answers an Accept with 503.
        self.act(self.session.carry_out(decision, self.loop.time(), self.server.limit))

    async def handle(self, path: Any) -> None:
        try:
            await path.route.handle(self, path)
        except asyncio.CancelledError:  # CancelHandler: the shutdown grace ran out
            self.act(self.session.handler_cancelled(self.loop.time()))  # 1001
            raise
        except Exception as exc:
            self.act(self.session.handler_failed(exc, self.loop.time()))  # logs it; 1011
        else:
            self.act(self.session.handler_returned(self.loop.time()))  # 1000


class Server(core.BaseServer):
    """``async with serve(...) as server``: ``port``, ``close()``,
    ``await wait_closed()``, ``await serve_forever()``. ``BaseServer`` checks the
    router and options once and holds ``options``, ``limit`` (max_connections) and,
    once closing, the ``shutdown`` plan."""

    def __init__(self, router: Any, host: str | None, port: int, **options: Any) -> None:
        super().__init__(router, host, port, **options)
        self.connections: dict[Connection, Any] = {}  # each with its task (accept's)
        self.closed = asyncio.Event()

    async def __aenter__(self) -> Server:
        # asyncio does the TLS handshake before accept(): open_timeout bounds it there.
        ssl, timeout = self.options.ssl, self.options.open_timeout
        self.server = await asyncio.start_server(
            self.accept, self.host, self.requested_port, ssl=ssl, ssl_handshake_timeout=ssl and timeout
        )
        self.port = self.server.sockets[0].getsockname()[1]  # the bound port (also for 0)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self, reader, writer)
        self.connections[connection] = asyncio.current_task()
        try:
            await connection.read_until_ended()
            if connection.task is not None:  # the handler may outlive TCP
                await asyncio.wait([connection.task])
        finally:
            del self.connections[connection]

    def close(self, drain: float | None = None) -> None:
        """Stop accepting, let each session shut its connection down (1001; with
        ``drain=N``, 1012 at moments spread over N seconds), give handlers
        ``close_timeout`` from their close to return, then cancel them."""
        plan = self.begin_shutdown(drain, asyncio.get_running_loop().time())  # checks drain
        if plan is not None:  # None: closing already
            self.server.close()
            self.closing = asyncio.get_running_loop().create_task(self.close_all(plan))

    async def close_all(self, plan: core.ServerShutdown) -> None:
        connections, now = list(self.connections), asyncio.get_running_loop().time()
        # Each session closes at its moment; a handler gets close_timeout, then CancelHandler.
        plans = plan.apply([connection.session for connection in connections], now)
        for connection, actions in zip(connections, plans, strict=True):
            connection.act(actions)
        while self.connections:  # each session ends its TCP by itself
            await asyncio.wait(set(self.connections.values()))
        self.closed.set()

    async def wait_closed(self) -> None:
        await self.closed.wait()

    serve_forever = wait_closed  # until close() and the end of every connection


def serve(router: Any, host: str | None = None, port: int = 0, **options: Any) -> Server:
    """Serve ``router``; the options are ``core.ServerOptions``' (max_size, max_queue,
    open_timeout, ping_interval, ping_timeout, close_timeout, max_header_bytes,
    compression, ssl, max_connections)."""
    return Server(router, host, port, **options)
