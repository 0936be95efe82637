"""What the connection object handlers get has in common on every transport.

``MessageIteration``: ``async for message in ws``. ``SessionAttributes``: the
attributes that a transport's connection object reads from its ``core.session``
(``request``, ``subprotocol``, ``remote_address``, ``close_code``, ``close_reason``,
``state``), so that every transport answers them alike.
"""

from __future__ import annotations

from typing import Any

from .connection import State
from .errors import ConnectionClosedOK

__all__ = ["MessageIteration", "SessionAttributes"]


class MessageIteration:
    """Mixin: iterating a connection yields messages until a normal close.

    As in ``websockets``: a normal close (1000, 1001, 1005) ends the loop, any other
    raises ``ConnectionClosedError``. An iterator object rather than an async generator:
    a loop left by an exception would leave a generator for the garbage collector to
    finalize (trio warns), and it costs one coroutine per message instead of two.
    """

    __slots__ = ()

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.recv()  # type: ignore[attr-defined]
        except ConnectionClosedOK:
            raise StopAsyncIteration from None


class SessionAttributes(MessageIteration):
    """Mixin for a connection object with a ``session`` (a ``core.session.Session``)."""

    __slots__ = ()
    session: Any

    @property
    def request(self) -> Any:
        """The opening handshake's ``Request``."""
        return self.session.request

    @property
    def subprotocol(self) -> str | None:
        return self.session.subprotocol  # type: ignore[no-any-return]

    @property
    def remote_address(self) -> Any:
        return self.session.remote_address

    @property
    def close_code(self) -> int | None:
        """The close code (received, else sent, else 1006) once closed; None before."""
        return self.session.close_code  # type: ignore[no-any-return]

    @property
    def close_reason(self) -> str | None:
        return self.session.close_reason  # type: ignore[no-any-return]

    @property
    def state(self) -> State:
        return self.session.state  # type: ignore[no-any-return]
