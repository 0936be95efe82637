"""Our WebSocket server on anyio: the same server on asyncio and on trio.

```python
import anyio
from websockets_routes import Router
from websockets_routes.transports.anyio import serve

router = Router()

@router.route("/echo")
async def echo(ws, path):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(router, "127.0.0.1", 8765) as server:
        await server.serve_forever()

anyio.run(main, backend="trio")   # or backend="asyncio"
```

It carries out what ``core.session.Session`` decides over anyio's public stream
API; ``server`` holds the listeners, the tasks and the timer, ``connection`` the
object handlers get. With ``ssl=`` (an ``ssl.SSLContext``) connections are wrapped
in anyio TLS streams; the TLS handshake counts against ``open_timeout``.
"""

from .connection import Connection, PongWaiter
from .server import Server, serve

__all__ = ["Connection", "PongWaiter", "Server", "serve"]
