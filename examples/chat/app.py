"""A chat with rooms: what ``make run`` serves on http://127.0.0.1:8765/.

- ``GET /`` is a plain-HTTP route that serves the page (``index.html`` beside this file).
- ``/rooms/{room}`` is a WebSocket route. Its ``process_request`` hook refuses room
  names that are not 1-32 lowercase letters, digits or dashes with ``Close(4400,
  reason)``: the handshake completes, then the connection closes at once with code
  4400 and the reason, which the page's script can read and show (a browser hides the
  status of a refused handshake from scripts: an HTTP 400 would show as 1006).
  Everyone in a room gets its ``join``, ``leave`` and ``message`` events as JSON (a
  new member its own ``join`` too), through a ``Broadcast``: in this process by default,
  across processes and machines with ``BROADCAST_URL=redis://host:port/db``. A member
  too slow to keep up is closed with 1013 instead of slowing the room down.
- ``GET /asyncapi.json`` is the AsyncAPI 3.0 document of the WebSocket routes
  (``router.asyncapi()``), which the page links. ``GET /metrics`` serves the
  Prometheus metrics (``websockets_routes.metrics``) when prometheus-client is
  installed (``pip install websockets-routes[metrics]``); without it (``make run``
  installs no extras) there is no such route.
- Any other path answers HTTP 404: the router is built with the default
  ``close_unmatched=False``. With ``Router(close_unmatched=True)`` a WebSocket client
  would instead connect and be closed at once with code 4040.

Run it with any transport, in one process or several sharing a Redis::

    python -m websockets_routes serve examples.chat.app:router --port 8765
    python -m websockets_routes serve examples.chat.app:router --transport trio
    BROADCAST_URL=redis://127.0.0.1:6379/0 \
        python -m websockets_routes serve examples.chat.app:router --workers 4

The page shows each close code in words, with the reason (``room name refused: ...``
for 4400), and reconnects by itself, with backoff, when the server goes away (1001),
is restarting (1012: a drain, see docs/deploy.md), fails (1011), or closes it as too
slow or busy (1013), and when the connection drops (1006); any other close is final.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from websockets_routes import Close, Headers, Request, RoutedPath, Router
from websockets_routes.broadcast import Broadcast, BroadcastError

router = Router()
broadcast = Broadcast(os.environ.get("BROADCAST_URL", "memory://"))

PAGE = (Path(__file__).parent / "index.html").read_bytes()
ROOM_NAME = re.compile(r"[a-z0-9-]{1,32}")
MAX_TEXT = 2000


@router.http("/", name="index")
async def index(request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
    return 200, [("Content-Type", "text/html; charset=utf-8")], PAGE


@router.http("/healthz", name="health")
async def health(request: Request) -> str:
    return "ok\n"


@router.http("/asyncapi.json", name="asyncapi")
async def asyncapi(request: Request) -> dict[str, Any]:
    return router.asyncapi(title="websockets-routes chat", version="1.0.0")


try:
    from websockets_routes.metrics import Metrics
except ImportError:  # prometheus-client is not installed: no /metrics
    metrics = None
else:
    metrics = Metrics(router)  # prometheus-client's default registry
    router.http("/metrics", name="metrics")(metrics.view)


@router.route("/rooms/{room}", name="room")
class Room:
    """A chat room: send ``{"user": ..., "text": ...}`` as JSON text; every member
    gets ``join``, ``leave`` and ``message`` events as JSON text."""

    async def process_request(self, path: RoutedPath, headers: Headers) -> Close | None:
        room = path.params["room"]
        if not ROOM_NAME.fullmatch(room):
            shown = room if len(room) <= 40 else room[:40] + "..."
            reason = f"use 1-32 of a-z, 0-9 and -, not {shown!r}"
            # A close reason is at most 123 bytes of UTF-8: cut a long one short.
            return Close(4400, reason.encode()[:123].decode(errors="ignore"))
        return None

    async def handle(self, ws: Any, path: RoutedPath) -> None:
        channel = f"room:{path.params['room']}"
        try:
            async with broadcast.join(channel, ws):
                await publish(channel, {"type": "join"})
                try:
                    await self.relay(ws, channel)
                finally:
                    await publish(channel, {"type": "leave"})
        except BroadcastError as exc:  # Redis unreachable: say so, try again later
            await ws.close(1013, str(exc)[:120])

    async def relay(self, ws: Any, channel: str) -> None:
        async for message in ws:
            if not isinstance(message, str):
                continue
            try:
                data = json.loads(message)
            except ValueError:
                await ws.close(1003, "send JSON text")
                return
            if not isinstance(data, dict):
                continue
            text = str(data.get("text", ""))[:MAX_TEXT]
            user = str(data.get("user", "anonymous"))[:40]
            await publish(channel, {"type": "message", "user": user, "text": text})


async def publish(channel: str, event: dict[str, Any]) -> None:
    await broadcast.publish(channel, json.dumps(event))
