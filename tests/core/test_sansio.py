"""The core is sans-IO: it imports nothing asynchronous and needs no event loop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import websockets_routes

# DESIGN.md: core/ imports only the stdlib, Routes, h11 and wsproto.
FORBIDDEN = ("asyncio", "trio", "anyio", "sniffio", "websockets", "uvloop", "socket", "selectors")

# In a fresh interpreter: import the public package, then each module of the core in
# turn, noting what each one newly brings in; then run a routing decision and a
# resolve() with no event loop.
PROBE = """
import importlib, json, pkgutil, sys
import websockets_routes
imported = {"websockets_routes": sorted(sys.modules)}
import websockets_routes.core as core
for info in pkgutil.iter_modules(core.__path__, "websockets_routes.core."):
    before = set(sys.modules)
    importlib.import_module(info.name)
    imported[info.name] = sorted(set(sys.modules) - before)
from websockets_routes import Router
from websockets_routes.core import Accept, Request
router = Router()
@router.route("/thing/{id}")
async def thing(ws, path):
    pass
decision = router.decide(Request("GET", "/thing/42", [
    ("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]))
coro = router.resolve(Request("GET", "/nope", []))
try:
    coro.send(None)
except StopIteration as done:
    resolved = done.value.status
print(json.dumps({
    "imported": imported,
    "accepted": isinstance(decision, Accept),
    "params": decision.path.params,
    "resolved": resolved,
}))
"""


def probe() -> dict:
    root = Path(websockets_routes.__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def forbidden(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)


def test_core_imports_nothing_asynchronous_and_runs_without_a_loop() -> None:
    found = probe()
    imported = found["imported"]
    for name in ("handshake", "matcher", "paths", "router", "templates", "errors"):
        assert f"websockets_routes.core.{name}" in imported
    offenders = {module: forbidden(new) for module, new in imported.items() if forbidden(new)}
    assert offenders == {}, f"core modules importing async/IO packages: {offenders}"
    assert found["accepted"] is True and found["params"] == {"id": "42"}
    assert found["resolved"] == 404
