"""The router the ASGI tests serve, in-process and as ``uvicorn ...:router.asgi``."""

from __future__ import annotations

import os

import anyio

from websockets_routes import Close, ConnectionClosed, Router

router = Router()

# For the tests: /ticker/{id} records its close code and sets FINISHED[id] (if the
# test put an event there) when its handler ends.
FINISHED: dict[str, anyio.Event] = {}
CLOSE_CODES: dict[str, int | None] = {}


@router.route("/echo/{name}", name="echo")
async def echo(ws, path):
    await ws.send(f"hello {path.params['name']} query={path.query}")
    async for message in ws:
        await ws.send(message)


@router.route("/chat", subprotocols=["chat.v2", "chat.v1"])
async def chat(ws, path):
    await ws.send(f"subprotocol={ws.subprotocol}")


@router.route("/rooms/{room}")
class Room:
    async def process_request(self, path, headers):
        if path.params["room"] == "closed":
            return 403, [("X-Why", "closed room")], b"this room is closed\n"
        if path.params["room"] == "gone":
            return Close(4410, "room gone")
        path.context["greeting"] = f"welcome to {path.params['room']}"
        return None

    async def handle(self, ws, path):
        await ws.send(path.context["greeting"])


@router.route("/boom")
async def boom(ws, path):
    await ws.recv()
    raise RuntimeError("the handler broke")


@router.route("/pid")
async def pid(ws, path):
    await ws.send(str(os.getpid()))


@router.route("/ticker/{id}")
async def ticker(ws, path):
    """Sends from one task while another receives, until the client leaves."""

    async def tick():
        try:
            while True:
                await ws.send("tick")
                await anyio.sleep(0.01)
        except ConnectionClosed:
            pass

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            try:
                while True:
                    await ws.send(f"got {await ws.recv()}")
            except ConnectionClosed:
                pass
    finally:
        CLOSE_CODES[path.params["id"]] = ws.close_code
        if path.params["id"] in FINISHED:
            FINISHED[path.params["id"]].set()


@router.http("/healthz")
async def healthz(request):
    return 200, [("Content-Type", "text/plain"), ("X-Route", "healthz")], b"ok\n"


# Unknown paths complete the handshake and close with 4040.
closing_router = Router(close_unmatched=True)
closing_router.include("", router)
