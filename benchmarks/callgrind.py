"""Instructions per operation of one server, counted by callgrind: steady where time is not.

    python benchmarks/callgrind.py KIND [--tree PATH] [--ops N] [--out DIR]

Runs the server ``KIND`` of ``benchmarks/servers.py`` (1,000 routes) under
``valgrind --tool=callgrind`` and drives it from this process, as ``load.py`` does:
handshakes at 1 and 50 connections, then echo round trips of 32 B (50 and 1
connections) and 64 KiB (50 connections). Each phase runs a tenth of ``--ops`` to warm
up, then ``--ops`` operations between a zeroing and a dump of the counters, and prints
the server's instructions per operation. ``--tree PATH`` runs the server from another
source tree (e.g. ``git archive`` of an older commit), to compare two versions.
Needs valgrind (``callgrind_control``) and picows; takes a few minutes per server.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import re
import select
import subprocess
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from load import Counter, HandshakeScript, _tcp_socket, make_ws_listener  # noqa: E402
from servers import HIT_TARGET, HOST  # noqa: E402

SERVERS_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers.py")


class Callgrind:
    """A server process under callgrind, with its counters zeroed and dumped on demand."""

    def __init__(self, kind: str, tree: str | None, out: str) -> None:
        env = dict(os.environ)
        if tree:
            env["PYTHONPATH"] = os.path.abspath(tree)
        self.out = os.path.join(out, kind)
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}.out"]
        command += [sys.executable, SERVERS_PY, kind, "--routes", "1000"]
        self.log = open(self.out + ".log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env
        )
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], 600)[0]:
            raise SystemExit(f"{kind}: no READY line within 600 s")
        line = self.proc.stdout.readline()
        if not line.startswith(b"READY"):
            raise SystemExit(f"{kind}: {line!r}")
        self.port = int(line.split()[1])

    def control(self, flag: str) -> None:
        subprocess.run(["callgrind_control", flag, str(self.proc.pid)], check=True, capture_output=True)

    def dumped(self) -> int:
        files = sorted(glob.glob(self.out + ".out.*"), key=os.path.getmtime)
        text = open(files[-1]).read()
        match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        assert match is not None
        return int(match.group(1))

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


async def handshakes(port: int, count: int, concurrency: int) -> None:
    script = HandshakeScript(port)
    left = [count]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await script.run()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def echoes(listeners: list[Any], payload: bytes, text: bool, count: int) -> int:
    counter = Counter()
    for listener in listeners:
        listener.start(payload, text, counter)
    # The listeners count in picows callbacks, which have no event to wait on: look
    # every 10 ms (the count runs a little past ``count``; the result divides by it).
    while counter.messages < count:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    for listener in listeners:
        listener.running = False
    await asyncio.gather(*(listener.idle for listener in listeners))
    return counter.messages


async def measure(server: Callgrind, ops: int) -> dict[str, float]:
    import picows

    results: dict[str, float] = {}

    async def phase(name: str, run: Any) -> None:
        await run(ops // 10)
        server.control("-z")
        done = await run(ops)
        server.control("-d")
        await asyncio.sleep(1)
        results[name] = server.dumped() / (done or ops)
        print(f"{name:<14} {results[name] / 1e3:9.1f}k instructions", flush=True)

    for concurrency in (1, 50):
        await phase(
            f"handshake-{concurrency}", lambda n, c=concurrency: handshakes(server.port, n, c)
        )
    listener_class = make_ws_listener(picows)
    for name, size, text, concurrency in [
        ("echo32-50", 32, True, 50),
        ("echo64k-50", 65536, False, 50),
        ("echo32-1", 32, True, 1),
    ]:
        listeners = []
        for _ in range(concurrency):
            _, listener = await picows.ws_connect(
                listener_class,
                f"ws://{HOST}:{server.port}{HIT_TARGET}",
                max_frame_size=1 << 24,
                socket_factory=_tcp_socket,
            )
            await listener.hello
            listeners.append(listener)
        payload = b"x" * size
        await phase(name, lambda n, p=payload, t=text, ls=listeners: echoes(ls, p, t, n))
        for listener in listeners:
            listener.transport.send_close(picows.WSCloseCode.OK)
        await asyncio.gather(*(listener.closed for listener in listeners))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", help="a server of benchmarks/servers.py (ours, ours-anyio...)")
    parser.add_argument("--tree", help="run the server from this source tree")
    parser.add_argument("--ops", type=int, default=2000, help="operations per phase")
    parser.add_argument("--out", help="where callgrind's files go (a temporary folder)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="callgrind-")
    server = Callgrind(args.kind, args.tree, out)
    try:
        asyncio.run(measure(server, args.ops))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
