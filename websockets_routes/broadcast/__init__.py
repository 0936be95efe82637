"""Publish to channels; every connection that joined a channel gets its messages.

::

    from websockets_routes.broadcast import Broadcast, BroadcastError

    broadcast = Broadcast()                            # "memory://": this process only
    broadcast = Broadcast("redis://127.0.0.1:6379/0")  # every process using this Redis

    @router.route("/rooms/{room}")
    async def room(ws, path):
        channel = f"room:{path.params['room']}"
        async with broadcast.join(channel, ws):        # ws gets what channel gets
            async for message in ws:
                await broadcast.publish(channel, message)

Fan-out never waits on a slow member: each has a backlog of at most ``max_backlog``
bytes (what is queued for it and not yet handed to the kernel); past it, it is closed
with 1013 and dropped. Delivery is at most once. See docs/broadcast.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio

from .members import BroadcastError, FrameMember, Hub, Member, Subscription, TaskMember
from .redis import RedisBackend, check_url
from .runtime import Runtime, loop_token, start_background

__all__ = ["Broadcast", "BroadcastError", "Subscription"]

DEFAULT_MAX_BACKLOG = 1 << 20
DEFAULT_TIMEOUT = 3.0


class Broadcast:
    """Channels of messages shared by connections; see the module docstring.

    ``url``: ``memory://`` (the default) or ``redis://[user:password@]host[:port][/db]``
    (``rediss://`` for TLS; needs the ``[redis]`` extra). ``max_backlog``: bytes a member
    may have waiting before it is closed with 1013. ``timeout``: seconds before a Redis
    operation that gets no answer raises ``BroadcastError``.

    Connects on first use, in whichever event loop (asyncio or trio) uses it; after
    Redis drops, reconnects with backoff and subscribes again to every channel.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        scheme = urlsplit(url).scheme
        if scheme == "memory":
            self._redis = False
        elif scheme in ("redis", "rediss"):
            check_url(url)
            try:
                import coredis  # noqa: F401
            except ImportError:
                raise ImportError(
                    f"Broadcast({url!r}) needs a Redis client: "
                    "pip install 'websockets-routes[redis]'"
                ) from None
            self._redis = True
        else:
            raise ValueError(
                f"unsupported broadcast URL {url!r}: use memory:// or redis://host:port/db"
            )
        if not isinstance(max_backlog, int) or max_backlog <= 0:
            raise ValueError(f"max_backlog must be a positive number of bytes, not {max_backlog!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.url = url
        self.max_backlog = max_backlog
        self.timeout = timeout
        self._hub = Hub(self._spawn)
        self._runtime: Runtime | None = None
        self._members: dict[int, tuple[Member, int]] = {}  # id(ws) -> member, joins
        self._closed = False

    def __repr__(self) -> str:
        return f"Broadcast({self.url!r})"

    async def publish(self, channel: str, message: str | bytes | bytearray | memoryview) -> None:
        """Send ``message`` to every member of ``channel``, on every process of the
        backend. ``BroadcastError`` if the backend cannot take it (never a silent loss).
        Never waits for a member."""
        _check_channel(channel)
        if isinstance(message, (bytearray, memoryview)):
            message = bytes(message)
        elif not isinstance(message, (str, bytes)):
            raise TypeError(f"a message is str or bytes-like, not {type(message).__name__}")
        runtime = await self._start()
        if runtime.backend is None:
            self._hub.deliver(channel, message)
            await anyio.lowlevel.checkpoint()
        else:
            await runtime.backend.publish(channel, message)

    @asynccontextmanager
    async def join(self, channel: str, ws: Any) -> AsyncIterator[None]:
        """``async with broadcast.join(channel, ws):``: inside, ``ws`` gets every message
        published to ``channel`` from anywhere. ``BroadcastError`` if the backend is
        unreachable. A connection may join several channels."""
        _check_channel(channel)
        runtime = await self._start()
        member = self._take_member(ws, runtime)
        try:
            await self._add(runtime, channel, member)
        except BaseException:
            self._release_member(ws)
            raise
        try:
            yield
        finally:
            self._remove(runtime, channel, member)
            self._release_member(ws)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """``async with broadcast.subscribe(channel) as messages: async for m in messages``
        for code that is not a WebSocket. Iteration raises ``BroadcastError`` if the
        subscriber falls more than ``max_backlog`` bytes behind."""
        _check_channel(channel)
        runtime = await self._start()
        subscription = Subscription(self._hub, self.max_backlog)
        await self._add(runtime, channel, subscription)
        try:
            yield subscription
        finally:
            self._remove(runtime, channel, subscription)

    def members_here(self, channel: str) -> int:
        """How many connections and subscriptions of this process are in ``channel``
        (members in other processes are not counted)."""
        return len(self._hub.channels.get(channel, ()))

    async def aclose(self) -> None:
        """Stop the background work and the Redis connection. Members stay open."""
        self._closed = True
        runtime, self._runtime = self._runtime, None
        if runtime is not None and runtime.token is loop_token():
            await runtime.aclose()

    async def __aenter__(self) -> Broadcast:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    # Internals

    async def _start(self) -> Runtime:
        if self._closed:
            raise BroadcastError(f"{self!r} is closed")
        token = loop_token()
        runtime = self._runtime
        if runtime is None or runtime.token is not token or runtime.stopped.is_set():
            backend = RedisBackend(self.url, self._hub, self.timeout) if self._redis else None
            runtime = self._runtime = Runtime(token, backend)
            start_background(runtime.main)
        if not runtime.ready.is_set():
            await runtime.ready.wait()
        return runtime

    def _spawn(self, fn: Any) -> None:
        if self._runtime is not None:
            self._runtime.spawn(fn)

    async def _add(self, runtime: Runtime, channel: str, member: Member) -> None:
        if runtime.backend is not None:
            await runtime.backend.subscribe(channel)
        self._hub.add(channel, member)

    def _remove(self, runtime: Runtime, channel: str, member: Member) -> None:
        if self._hub.remove(channel, member) and runtime.backend is not None:
            runtime.spawn(lambda: runtime.backend.unsubscribe(channel))  # type: ignore[union-attr]

    def _take_member(self, ws: Any, runtime: Runtime) -> Member:
        entry = self._members.get(id(ws))
        if entry is not None:
            self._members[id(ws)] = (entry[0], entry[1] + 1)
            return entry[0]
        member: Member
        if callable(getattr(ws, "write_shared", None)):
            member = FrameMember(self._hub, ws, self.max_backlog)
        elif callable(getattr(ws, "send", None)):
            task_member = member = TaskMember(self._hub, ws, self.max_backlog)
            runtime.spawn(task_member.run)
        else:
            raise TypeError(
                f"join() takes a WebSocket connection (with async send()), "
                f"not {type(ws).__name__}"
            )
        self._members[id(ws)] = (member, 1)
        return member

    def _release_member(self, ws: Any) -> None:
        member, joins = self._members.pop(id(ws))
        if joins > 1:
            self._members[id(ws)] = (member, joins - 1)
        elif isinstance(member, TaskMember):
            member.stop()


def _check_channel(channel: str) -> None:
    if not isinstance(channel, str) or not channel:
        raise TypeError(f"a channel is a non-empty str, not {channel!r}")
