"""The Redis backend: Redis pub/sub through coredis.

Why coredis: it is a maintained, typed Redis client built on anyio, so the same code
runs when the server runs on asyncio and when it runs on trio (redis-py's client is
asyncio only). Nothing of the Redis protocol is written here.

Every process keeps one pub/sub connection, subscribed to the channels that have a
member in that process, and publishes through the client's pool. A message goes
through Redis even to members of the publishing process, so every process sees one
publisher's messages in the same order. Redis tags nothing: a first byte here tells
text (``t`` + UTF-8) from binary (``b``).
"""

from __future__ import annotations

import logging
import random
from typing import Any
from urllib.parse import urlsplit

import anyio

from .members import BroadcastError, Hub

__all__ = ["RedisBackend", "check_url"]

logger = logging.getLogger("websockets_routes.broadcast")

_TEXT, _BINARY = b"t", b"b"
# Reconnection delays: from the first to the longest, doubling, with jitter.
FIRST_DELAY, MAX_DELAY = 0.1, 5.0


def check_url(url: str) -> None:
    """ValueError, naming ``url``, unless it is ``redis[s]://[user:pw@]host[:port][/db]``."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in broadcast URL {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"no host in broadcast URL {url!r}: use redis://host:port/db")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"bad database {db!r} in broadcast URL {url!r}: a number")
    del port


def encode(message: str | bytes) -> bytes:
    if isinstance(message, str):
        return _TEXT + message.encode("utf-8")
    return _BINARY + message


def decode(data: bytes) -> str | bytes | None:
    tag, body = data[:1], data[1:]
    if tag == _TEXT:
        return body.decode("utf-8")
    if tag == _BINARY:
        return body
    return None  # published by something else than a Broadcast


class RedisBackend:
    """Redis pub/sub for one event loop; see the module docstring."""

    def __init__(self, url: str, hub: Hub, timeout: float) -> None:
        import coredis  # the [redis] extra: checked when the Broadcast is made

        self.url = url
        self.hub = hub
        self.timeout = timeout
        self.client: Any = coredis.Redis.from_url(url, connect_timeout=timeout)
        self.subscribed: set[str] = set()  # what the pub/sub connection must carry
        self.pubsub: Any = None  # while connected
        self.error: BaseException | None = None
        self.lock = anyio.Lock()

    def _unreachable(self, doing: str, exc: BaseException | None) -> BroadcastError:
        return BroadcastError(f"cannot {doing}: Redis at {self.url} is unreachable ({_why(exc)})")

    async def run(self, ready: anyio.Event) -> None:
        from coredis.retry import NoRetryPolicy

        delay = FIRST_DELAY
        async with self.client:
            while True:
                try:
                    async with self.client.pubsub(
                        retry_policy=NoRetryPolicy(),
                        ignore_subscribe_messages=True,
                        subscription_timeout=self.timeout,
                    ) as pubsub:
                        async with self.lock:
                            if self.subscribed:
                                await pubsub.subscribe(*self.subscribed)
                            self.pubsub = pubsub
                        if self.error is not None:
                            logger.info(
                                "Redis at %s is back: %d channels subscribed again",
                                self.url, len(self.subscribed),
                            )
                        self.error = None
                        delay = FIRST_DELAY
                        ready.set()
                        await self._forward(pubsub)
                except Exception as exc:  # connection refused or lost, often in a group
                    self.pubsub = None
                    if self.error is None:
                        logger.warning(
                            "Redis at %s is unreachable (%s): reconnecting with backoff",
                            self.url, _why(exc),
                        )
                    self.error = exc
                    ready.set()
                await anyio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, MAX_DELAY)

    async def _forward(self, pubsub: Any) -> None:
        deliver = self.hub.deliver
        while True:
            message = await pubsub.get_message()
            if message is None or message["type"] != "message":
                continue
            data = decode(message["data"])
            if data is not None:
                channel = message["channel"]
                deliver(channel.decode() if isinstance(channel, bytes) else channel, data)

    async def subscribe(self, channel: str) -> None:
        async with self.lock:
            pubsub = self.pubsub
            if pubsub is None:
                raise self._unreachable(f"join channel {channel!r}", self.error)
            if channel in self.subscribed:
                return
            try:
                with anyio.fail_after(self.timeout):
                    await pubsub.subscribe(channel)
            except Exception as exc:
                raise self._unreachable(f"join channel {channel!r}", exc) from exc
            self.subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        async with self.lock:
            if channel in self.hub.channels or channel not in self.subscribed:
                return  # joined again meanwhile
            self.subscribed.discard(channel)
            pubsub = self.pubsub
            if pubsub is None:
                return  # not re-subscribed when Redis is back
            try:
                with anyio.fail_after(self.timeout):
                    await pubsub.unsubscribe(channel)
            except Exception as exc:  # the connection is going: so is the subscription
                logger.debug("unsubscribing %r from %s: %r", channel, self.url, exc)

    async def publish(self, channel: str, message: str | bytes) -> None:
        try:
            with anyio.fail_after(self.timeout):
                await self.client.publish(channel, encode(message))
        except Exception as exc:
            raise self._unreachable(f"publish to channel {channel!r}", exc) from exc


def _why(exc: BaseException | None) -> str:
    """The first leaf of an exception group: what the user needs to see."""
    while getattr(exc, "exceptions", None):  # an exception group (3.10: the backport's)
        exc = exc.exceptions[0]  # type: ignore[union-attr]
    if exc is None:
        return "not connected yet"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
