"""What a ``Broadcast`` runs in the background, once per event loop.

A broadcast is usually made at import time, before any event loop runs, and then used
from handlers: it cannot take a task group from its caller. So on first use it starts
one background task in the running loop (a task on asyncio, a system task on trio:
both are cancelled when the loop ends) and keeps there a task group for the member
writers and the backend's own connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import anyio

__all__ = ["Backend", "Runtime", "loop_token", "start_background"]

logger = logging.getLogger("websockets_routes.broadcast")

# Background tasks on asyncio, held here: the loop only keeps weak references.
_asyncio_tasks: set[asyncio.Task[Any]] = set()


def loop_token() -> object:
    """The running event loop (asyncio) or run (trio): what a runtime belongs to."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    import trio

    return trio.lowlevel.current_trio_token()


def start_background(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``fn()`` beside the caller until it returns or the loop ends."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio

        trio.lowlevel.spawn_system_task(fn)
        return
    task = loop.create_task(fn())
    _asyncio_tasks.add(task)
    task.add_done_callback(_asyncio_tasks.discard)


class Backend(Protocol):
    """Where messages go between processes: nothing (memory) or Redis."""

    async def run(self, ready: anyio.Event) -> None:
        """Stay connected; set ``ready`` after the first attempt, whatever its end."""

    async def subscribe(self, channel: str) -> None:
        """Return once ``channel``'s messages from everywhere reach this process."""

    async def unsubscribe(self, channel: str) -> None: ...

    async def publish(self, channel: str, message: str | bytes) -> None: ...


class Runtime:
    """A broadcast's background work in one event loop."""

    def __init__(self, token: object, backend: Backend | None) -> None:
        self.token = token
        self.backend = backend
        self.ready = anyio.Event()
        self.stopped = anyio.Event()
        self._stop = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        if self._tg is not None:
            self._tg.start_soon(fn)

    async def main(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self.backend is None:
                    self.ready.set()
                else:
                    tg.start_soon(self.backend.run, self.ready)
                await self._stop.wait()
                tg.cancel_scope.cancel()
        except Exception:  # never out of a trio system task: that would end the run
            logger.exception("broadcast background task failed")
        finally:
            self._tg = None
            self.ready.set()
            self.stopped.set()

    async def aclose(self) -> None:
        self._stop.set()
        await self.stopped.wait()
