"""Server options, checked once per server and shared by every transport."""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace
from typing import Any

from .connection import DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_SIZE, ServerConnection
from .limits import ConnectionLimit, check_max_connections

__all__ = ["ACCEPT_RETRY_ERRNOS", "READ_SIZE", "ServerOptions"]


def _positive_or_none(name: str, value: Any, *, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, kind) or value < 0:
        what = "an int" if integer else "a number"
        raise ValueError(f"{name} must be {what} >= 0 or None, not {value!r}")


@dataclass(frozen=True)
class ServerOptions:
    """The options every server transport takes, with their defaults, checked once.

    - ``max_size``: largest incoming message, in bytes after decompression (1 MiB;
      None: no limit). Over it the connection closes with 1009.
    - ``max_queue``: received messages buffered for ``recv()`` before reading stops
      (16; None: no limit). Reading resumes when the queue drains to a quarter.
    - ``open_timeout``: seconds for the opening handshake, TLS included (10).
    - ``ping_interval``: seconds between keepalive pings (20; None: no pings).
    - ``ping_timeout``: seconds to wait for a keepalive pong before closing with
      1011 (20; None: wait forever).
    - ``close_timeout``: seconds to wait for the peer during the closing handshake
      and then for the end of TCP, before aborting (10; None: wait forever).
    - ``max_header_bytes``: largest request head; over it the answer is 431 (16 KiB).
    - ``compression``: ``"deflate"`` (permessage-deflate when the client offers it,
      the default) or None.
    - ``ssl``: an ``ssl.SSLContext`` to serve TLS, or None.
    - ``max_connections``: open WebSocket connections per server (None: no limit);
      past it a handshake gets 503 with ``Retry-After`` (``core.limits``).
    """

    max_size: int | None = DEFAULT_MAX_SIZE
    max_queue: int | None = 16
    open_timeout: float | None = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float | None = 10.0
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    compression: str | None = "deflate"
    ssl: Any = None
    max_connections: int | None = None

    def __post_init__(self) -> None:
        _positive_or_none("max_size", self.max_size, integer=True)
        _positive_or_none("max_queue", self.max_queue, integer=True)
        if self.max_queue == 0:
            raise ValueError("max_queue must be at least 1, or None for no limit")
        for name in ("open_timeout", "ping_interval", "ping_timeout", "close_timeout"):
            _positive_or_none(name, getattr(self, name))
        if self.ping_interval == 0:
            raise ValueError("ping_interval must be > 0, or None for no keepalive pings")
        if (
            isinstance(self.max_header_bytes, bool)
            or not isinstance(self.max_header_bytes, int)
            or self.max_header_bytes < 256
        ):
            raise ValueError(
                f"max_header_bytes must be an int >= 256, not {self.max_header_bytes!r}"
            )
        if self.compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {self.compression!r}")
        if self.ssl is not None and not hasattr(self.ssl, "wrap_bio"):
            raise TypeError(f"ssl must be an ssl.SSLContext or None, not {type(self.ssl).__name__}")
        check_max_connections(self.max_connections)

    def merged(self, overrides: tuple[tuple[str, Any], ...]) -> ServerOptions:
        """These options with a route's overrides (``core.policy``), checked."""
        return replace(self, **dict(overrides)) if overrides else self

    def connection(self, remote_address: Any = None) -> ServerConnection:
        """A new sans-IO connection for one accepted TCP (or in-memory) stream."""
        return ServerConnection(
            max_size=self.max_size,
            max_header_bytes=self.max_header_bytes,
            compression=self.compression,
            remote_address=remote_address,
            # Session carries out a failure once the messages before it are answered.
            defer_failure=True,
        )

    def connection_limit(self) -> ConnectionLimit:
        """A new count of open connections against ``max_connections``: one per server,
        given to every ``Session.carry_out()``."""
        return ConnectionLimit(self.max_connections)


# How much a transport reads at once: just under glibc's mmap threshold, so that a
# buffer of this size (trio allocates one per read) costs no mmap and munmap.
READ_SIZE = 128 * 1024 - 1024

# accept() failures that pass with time (out of descriptors, buffers or memory): a
# server waits a little and accepts again, as trio does, instead of stopping.
ACCEPT_RETRY_ERRNOS = frozenset([errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
