"""A chat with rooms: what ``make run`` serves on http://127.0.0.1:8765/.

- ``GET /`` is a plain-HTTP route that serves the page (``index.html`` beside this file).
- ``/rooms/{room}`` is a WebSocket route. Its ``process_request`` hook rejects room
  names that are not 1-32 lowercase letters, digits or dashes with HTTP 400, before the
  handshake completes. Messages fan out to everyone in the room as JSON.
- Any other path answers HTTP 404: the router is built with the default
  ``close_unmatched=False``. With ``Router(close_unmatched=True)`` a WebSocket client
  would instead connect and be closed at once with code 4040.

Run it with any transport::

    python -m websockets_routes serve examples.chat.app:router --port 8765
    python -m websockets_routes serve examples.chat.app:router --transport trio
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets_routes import ConnectionClosed, Headers, Request, RoutedPath, Router

router = Router()

PAGE = (Path(__file__).parent / "index.html").read_bytes()
ROOM_NAME = re.compile(r"[a-z0-9-]{1,32}")
MAX_TEXT = 2000

# room name -> connections in it. One process, one event loop: no lock needed.
rooms: dict[str, set[Any]] = {}


@router.http("/", name="index")
async def index(request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
    return 200, [("Content-Type", "text/html; charset=utf-8")], PAGE


@router.http("/healthz", name="health")
async def health(request: Request) -> str:
    return "ok\n"


@router.route("/rooms/{room}", name="room")
class Room:
    async def process_request(
        self, path: RoutedPath, headers: Headers
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        room = path.params["room"]
        if not ROOM_NAME.fullmatch(room):
            body = f"bad room name {room!r}: use 1-32 of a-z, 0-9 and '-'\n"
            return HTTPStatus.BAD_REQUEST, [("Content-Type", "text/plain")], body.encode()
        return None

    async def handle(self, ws: Any, path: RoutedPath) -> None:
        room = path.params["room"]
        members = rooms.setdefault(room, set())
        members.add(ws)
        try:
            await broadcast(room, {"type": "join", "count": len(members)})
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
                await broadcast(room, {"type": "message", "user": user, "text": text})
        finally:
            members.discard(ws)
            if members:
                await broadcast(room, {"type": "leave", "count": len(members)})
            else:
                rooms.pop(room, None)


async def broadcast(room: str, event: dict[str, Any]) -> None:
    """Send to everyone in the room; a member that left meanwhile is skipped."""
    payload = json.dumps(event)
    for member in list(rooms.get(room, ())):
        try:
            await member.send(payload)
        except ConnectionClosed:
            rooms.get(room, set()).discard(member)
