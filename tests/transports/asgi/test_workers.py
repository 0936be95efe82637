"""The scale-out path as documented: ``uvicorn module:router.asgi --workers 2``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from websockets.asyncio.client import connect

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.anyio


def free_port() -> int:
    # Workers share a socket the supervisor binds, and nothing reports a port-0 bind
    # back: pick a port that was free a moment ago.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until_serving(port: int, workers: int, proc: Process, log: anyio.Path) -> None:
    """Until every worker has started and the port answers; bounded, fails fast on exit."""
    with anyio.fail_after(30):
        while True:
            output = await log.read_text()
            if proc.returncode is not None:
                raise AssertionError(f"uvicorn exited with {proc.returncode}:\n{output}")
            if output.count("Application startup complete") >= workers:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                except OSError:
                    pass
                else:
                    await stream.aclose()
                    return
            await anyio.sleep(0.05)  # another process, nothing to wait on here: poll


async def test_uvicorn_with_two_workers(tmp_path: Path) -> None:
    port = free_port()
    log = anyio.Path(tmp_path / "uvicorn.log")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    )
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "websockets_routes_test_app:router.asgi",
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(tmp_path / "uvicorn.log", "wb") as out:  # noqa: ASYNC230 - before any I/O
        proc = await anyio.open_process(
            command, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    async with proc:
        try:
            await wait_until_serving(port, 2, proc, log)
            pids = []
            for _ in range(2):
                async with connect(f"ws://127.0.0.1:{port}/pid") as ws:
                    pids.append(int(await ws.recv()))
            # Served by worker processes, not by the supervisor that owns the socket.
            assert proc.pid not in pids
            async with connect(f"ws://127.0.0.1:{port}/echo/w") as ws:
                assert await ws.recv() == "hello w query="
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            with anyio.move_on_after(20) as waiting:
                await proc.wait()
            if waiting.cancelled_caught:
                proc.kill()
                await proc.wait()
                raise AssertionError(f"uvicorn ignored SIGTERM:\n{await log.read_text()}")
    output = await log.read_text()
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    assert output.count("Application shutdown complete") == 2, output
