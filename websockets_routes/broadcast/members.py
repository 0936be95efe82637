"""Local fan-out: the members of each channel in this process, and how a message
reaches each of them without waiting on any.

A member is one of:

- a connection of our own servers (``FrameMember``): the message's frame is built
  once per publish and written to every such member at once, with no task and no
  await; the member's backlog is what its transport has not handed to the kernel;
- any other connection object with an async ``send()`` (the websockets hook, ASGI,
  the TestClient): ``TaskMember`` queues messages and one task per member sends them
  in order; its backlog is that queue;
- a ``Subscription`` (``Broadcast.subscribe()``): an async iterator over a queue.

Past ``max_backlog`` bytes a connection is closed with 1013 (try again later) and
dropped; a subscription ends with ``BroadcastError``. Either way the publisher and
the other members never wait.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio

from ..core.frames import message_frame
from ..core.naming import peer_name, route_name

__all__ = ["BroadcastError", "FrameMember", "Hub", "Member", "Subscription", "TaskMember"]

logger = logging.getLogger("websockets_routes.broadcast")

# The close that a member past its backlog gets: 1013, "Try Again Later".
OVERFLOW_CODE = 1013
OVERFLOW_REASON = "too slow: broadcast backlog full"


class BroadcastError(Exception):
    """The backend cannot take the operation (Redis unreachable), or a subscriber
    fell further behind than ``max_backlog``."""


Message = str | bytes


class Member:
    """One receiver of a channel's messages in this process."""

    __slots__ = ("hub", "channels")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.channels: set[str] = set()

    def deliver(self, message: Message, frame: bytes) -> None:
        """Take ``message`` (``frame``: its uncompressed frame) without waiting."""
        raise NotImplementedError

    def leave_all(self) -> None:
        for channel in list(self.channels):
            self.hub.remove(channel, self)


def _describe(ws: Any) -> str:
    path = getattr(ws, "path", None)
    return f"route {route_name(path)!r} for {peer_name(getattr(ws, 'remote_address', None))}"


class FrameMember(Member):
    """A connection of our own servers: ``ws.write_shared()`` / ``ws.close_nowait()``."""

    __slots__ = ("ws", "max_backlog")

    def __init__(self, hub: Hub, ws: Any, max_backlog: int) -> None:
        super().__init__(hub)
        self.ws = ws
        self.max_backlog = max_backlog

    def deliver(self, message: Message, frame: bytes) -> None:
        buffered = self.ws.write_shared(message, frame)
        if buffered is None:  # the connection is closing: nothing more for it
            self.leave_all()
        elif buffered > self.max_backlog:
            logger.warning(
                "%s: %d bytes not yet sent, over max_backlog: closing with %d",
                _describe(self.ws), buffered, OVERFLOW_CODE,
            )
            self.leave_all()
            self.ws.close_nowait(OVERFLOW_CODE, OVERFLOW_REASON)


class _Queue(Member):
    """Messages waiting for a consumer that takes them in its own time."""

    __slots__ = ("max_backlog", "queue", "queued", "wake")

    def __init__(self, hub: Hub, max_backlog: int) -> None:
        super().__init__(hub)
        self.max_backlog = max_backlog
        self.queue: deque[tuple[Message, int]] = deque()
        self.queued = 0
        self.wake = anyio.Event()

    def push(self, message: Message, frame: bytes) -> bool:
        """Queue ``message``; False (and nothing queued) once past ``max_backlog``."""
        size = len(frame)
        self.queued += size
        if self.queued > self.max_backlog:
            self.queue.clear()
            self.leave_all()
            return False
        self.queue.append((message, size))
        self.wake.set()
        return True

    async def pop(self) -> Message | None:
        """The next message, waiting for one; None once ``stopped()``."""
        while not self.queue:
            if self.stopped():
                return None
            self.wake = anyio.Event()
            await self.wake.wait()
        message, size = self.queue.popleft()
        self.queued -= size
        return message

    def stopped(self) -> bool:
        raise NotImplementedError


class TaskMember(_Queue):
    """Any connection with ``async send()``: a queue, and a task that drains it."""

    __slots__ = ("ws", "scope", "done")

    def __init__(self, hub: Hub, ws: Any, max_backlog: int) -> None:
        super().__init__(hub, max_backlog)
        self.ws = ws
        self.scope = anyio.CancelScope()
        self.done = False

    def stopped(self) -> bool:
        return self.done

    def deliver(self, message: Message, frame: bytes) -> None:
        if self.done or self.push(message, frame):
            return
        logger.warning(
            "%s: %d bytes queued, over max_backlog: closing with %d",
            _describe(self.ws), self.queued, OVERFLOW_CODE,
        )
        self.stop()
        self.hub.spawn(self._close_overflowed)

    def stop(self) -> None:
        self.done = True
        self.leave_all()
        self.scope.cancel()

    async def _close_overflowed(self) -> None:
        try:
            await self.ws.close(OVERFLOW_CODE, OVERFLOW_REASON)
        except Exception:  # it went away meanwhile: what we wanted
            logger.debug("%s: closing after overflow", _describe(self.ws), exc_info=True)

    async def run(self) -> None:
        """Send what is queued, in order, until stopped or the connection fails."""
        with self.scope:
            try:
                while (message := await self.pop()) is not None:
                    await self.ws.send(message)
            except Exception as exc:  # ConnectionClosed, or a transport's own error
                logger.debug("%s left the broadcast: %r", _describe(self.ws), exc)
                self.done = True
                self.leave_all()


class Subscription(_Queue):
    """``async for message in subscription``: what ``Broadcast.subscribe()`` yields."""

    __slots__ = ("error",)

    def __init__(self, hub: Hub, max_backlog: int) -> None:
        super().__init__(hub, max_backlog)
        self.error: BroadcastError | None = None

    def stopped(self) -> bool:
        return self.error is not None

    def deliver(self, message: Message, frame: bytes) -> None:
        if self.error is None and not self.push(message, frame):
            self.error = BroadcastError(
                f"subscriber of {sorted(self.channels)} fell more than "
                f"{self.max_backlog} bytes behind"
            )
            self.wake.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        message = await self.pop()
        if message is None:
            assert self.error is not None
            raise self.error
        return message


class Hub:
    """Channel -> members, in this process; ``deliver()`` never waits."""

    __slots__ = ("channels", "spawn")

    def __init__(self, spawn: Callable[[Callable[[], Any]], None]) -> None:
        self.channels: dict[str, dict[Member, None]] = {}
        self.spawn = spawn  # starts a background task (closing a member past its backlog)

    def add(self, channel: str, member: Member) -> bool:
        """Add ``member``; True if the channel was new in this process."""
        members = self.channels.get(channel)
        new = members is None
        if members is None:
            members = self.channels[channel] = {}
        members[member] = None
        member.channels.add(channel)
        return new

    def remove(self, channel: str, member: Member) -> bool:
        """Remove ``member``; True if the channel has no member left here."""
        member.channels.discard(channel)
        members = self.channels.get(channel)
        if members is None:
            return False
        members.pop(member, None)
        if members:
            return False
        del self.channels[channel]
        return True

    def deliver(self, channel: str, message: Message) -> None:
        members = self.channels.get(channel)
        if not members:
            return
        frame = message_frame(message)  # once, for every member
        for member in list(members):
            member.deliver(message, frame)
