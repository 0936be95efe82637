"""The app ``tests/test_workers.py`` serves with ``--workers``.

- ``/echo`` sends back every message.
- ``/pid`` sends the worker's process id first, then echoes: a test sees which worker
  took each connection.
- ``/room`` sends the worker's process id, joins one broadcast channel (``memory://``,
  or ``BROADCAST_URL``) and publishes every message it gets.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from websockets_routes import RoutedPath, Router
from websockets_routes.broadcast import Broadcast

if os.environ.get("WORKERS_APP_BROKEN") and "--worker-control" in sys.argv:
    raise RuntimeError("broken on purpose")

router = Router()
broadcast = Broadcast(os.environ.get("BROADCAST_URL", "memory://"))


@router.route("/echo", name="echo")
async def echo(ws: Any, path: RoutedPath) -> None:
    async for message in ws:
        await ws.send(message)


@router.route("/pid", name="pid")
async def pid(ws: Any, path: RoutedPath) -> None:
    await ws.send(str(os.getpid()))
    async for message in ws:
        await ws.send(message)


@router.route("/room", name="room")
async def room(ws: Any, path: RoutedPath) -> None:
    async with broadcast.join("room", ws):
        await ws.send(str(os.getpid()))  # joined: what is published from now on comes
        async for message in ws:
            await broadcast.publish("room", message)
