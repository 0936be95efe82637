"""``async for message in ws``, the same for every connection object."""

from __future__ import annotations

from typing import Any

from .errors import ConnectionClosedOK

__all__ = ["MessageIteration"]


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
