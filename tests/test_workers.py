"""``python -m websockets_routes serve ... --workers N``: real processes, real sockets.

Each test starts the command line on a port it found free (``--workers`` refuses port
0), waits for its "Serving" line, and kills the parent and every worker it printed
when the test ends, whatever the outcome. Clients are ``websockets``' asyncio client.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.redis_server import RedisServer, running_redis
from tests.serving import Served

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.workers_app:router"
START_TIMEOUT = 30.0
WORKER_LINE = re.compile(r"^Worker (\d+) started \(pid (\d+)\)$")
TRANSPORTS = ["asyncio", "trio"]

# The command line with workers that bind one shared socket instead of SO_REUSEPORT
# (what the parent does where the OS lacks it).
WITHOUT_REUSE_PORT = (
    "import sys; import websockets_routes.workers as w; w.REUSE_PORT = False; "
    "from websockets_routes.__main__ import main; sys.exit(main(sys.argv[1:]))"
)


class Cluster(Served):
    """A running ``serve --workers`` parent, with what it printed so far."""

    def __init__(
        self, argv: list[str], port: int, env: dict[str, str], new_session: bool = False
    ) -> None:
        super().__init__(argv, env, new_session)
        self.port = port

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def wait_for(self, found: Callable[[], bool], timeout: float = START_TIMEOUT) -> bool:
        return super().wait_for(found, timeout)

    def serving(self) -> bool:
        return any(line.startswith("Serving ") for line in self.out)

    def workers(self) -> dict[int, int]:
        """Worker index -> pid of its latest start."""
        with self.changed:
            matches = [WORKER_LINE.match(line) for line in self.out]
        return {int(m[1]): int(m[2]) for m in matches if m}

    def all_pids(self) -> set[int]:
        with self.changed:
            return {int(m[2]) for m in map(WORKER_LINE.match, self.out) if m}

    def kill(self) -> None:
        """SIGKILL the parent and every worker it printed that still runs."""
        self.stop()

    def after_kill(self) -> None:
        for pid in self.all_pids():
            if is_worker(pid):
                os.kill(pid, signal.SIGKILL)


def is_worker(pid: int) -> bool:
    """A process of ours still runs as ``pid`` (and the pid was not reused since)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            cmdline = file.read()
        with open(f"/proc/{pid}/stat", "rb") as file:
            state = file.read().rpartition(b")")[2].split()[0]
    except OSError:
        return False
    return b"--worker-control" in cmdline and state != b"Z"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def start() -> Iterator[Callable[..., Cluster]]:
    """``start(*args, workers=2)``: a serving cluster; all of them are killed after."""
    clusters: list[Cluster] = []

    def start(
        *args: str,
        workers: int = 2,
        app: str = APP,
        reuse_port: bool = True,
        new_session: bool = False,
        **env: str,
    ) -> Cluster:
        runner = ["-m", "websockets_routes"] if reuse_port else ["-c", WITHOUT_REUSE_PORT]
        for _ in range(5):
            port = free_port()
            argv = [sys.executable, *runner, "serve", app, "--port", str(port)]
            argv += ["--workers", str(workers), *args]
            env = dict(os.environ, PYTHONUNBUFFERED="1", **env)
            cluster = Cluster(argv, port, env, new_session)
            clusters.append(cluster)
            if cluster.wait_for(cluster.serving):
                return cluster
            if cluster.proc.poll() is not None and os.strerror(errno.EADDRINUSE) in cluster.stderr:
                continue  # another program took the port in between: another one
            raise AssertionError(f"no 'Serving' line in {START_TIMEOUT} s:\n{cluster.stderr}")
        raise AssertionError("no free port in 5 tries")

    yield start
    for cluster in clusters:
        cluster.kill()


async def open_pid(cluster: Cluster) -> tuple[ClientConnection, int]:
    """A connection to /pid and the pid of the worker that took it."""
    ws = await connect(cluster.url("/pid"), open_timeout=10)
    return ws, int(await ws.recv())


async def close_code(ws: ClientConnection, seconds: float = 15) -> int:
    """Wait for the server to close ``ws``; the code it sent."""
    with anyio.fail_after(seconds), pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None, "no close frame from the server"
    return closed.value.rcvd.code


def poll(done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"still waiting after {seconds} s"
        time.sleep(0.02)


async def wait_exit(proc: subprocess.Popen[str], seconds: float) -> int:
    return await anyio.to_thread.run_sync(lambda: proc.wait(seconds))


async def wait_gone(pids: set[int], seconds: float) -> None:
    await anyio.to_thread.run_sync(poll, lambda: not any(is_worker(pid) for pid in pids), seconds)


async def echoes(cluster: Cluster, count: int) -> set[int]:
    """Open ``count`` connections at once; each echoes; the pids that served them."""
    connections = [await open_pid(cluster) for _ in range(count)]
    try:
        for index, (ws, _) in enumerate(connections):
            await ws.send(f"hello {index}")
        for index, (ws, _) in enumerate(connections):
            assert await ws.recv() == f"hello {index}"
    finally:
        for ws, _ in connections:
            await ws.close()
    return {pid for _, pid in connections}


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_two_workers_share_the_port(start: Callable[..., Cluster], transport: str) -> None:
    cluster = start("--transport", transport)
    workers = cluster.workers()
    assert sorted(workers) == [1, 2] and len(set(workers.values())) == 2
    assert f"on http://127.0.0.1:{cluster.port}/" in cluster.out[-1]
    assert "2 workers" in cluster.out[-1]
    # The kernel spreads connections over the workers' sockets by their addresses.
    served = await echoes(cluster, 20)
    assert served == set(workers.values())


@pytest.mark.anyio
async def test_serve_options_reach_every_worker(start: Callable[..., Cluster]) -> None:
    cluster = start("--max-size", "10", "--ping-interval", "none", "--no-access-log")
    connections = [await open_pid(cluster) for _ in range(12)]
    assert {pid for _, pid in connections} == set(cluster.workers().values())
    for ws, _ in connections:
        await ws.send("x" * 11)
    assert [await close_code(ws) for ws, _ in connections] == [1009] * len(connections)
    cluster.proc.send_signal(signal.SIGTERM)
    assert await wait_exit(cluster.proc, 20) == 0
    assert cluster.wait_for(lambda: "all workers have stopped" in cluster.stderr)
    assert "websockets_routes.access" not in cluster.stderr


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.mark.anyio
async def test_workers_share_a_room_through_redis(
    start: Callable[..., Cluster], redis: RedisServer
) -> None:
    """Every member of one room gets every message, whichever worker holds it."""
    cluster = start(BROADCAST_URL=redis.url)
    members = []
    try:
        for _ in range(16):  # the kernel spreads them: all on one worker is 1 in 2**15
            ws = await connect(cluster.url("/room"), open_timeout=10)
            members.append((ws, int(await ws.recv())))
        assert {pid for _, pid in members} == set(cluster.workers().values())
        for index, (ws, _) in enumerate(members):
            await ws.send(f"from member {index}")
        expected = {f"from member {index}" for index in range(len(members))}
        for ws, _ in members:
            with anyio.fail_after(10):
                assert {await ws.recv() for _ in expected} == expected
    finally:
        for ws, _ in members:
            await ws.close()


@pytest.mark.anyio
async def test_a_killed_worker_is_restarted(start: Callable[..., Cluster]) -> None:
    cluster = start()
    before = cluster.workers()
    os.kill(before[1], signal.SIGKILL)
    assert cluster.wait_for(lambda: cluster.workers()[1] != before[1], timeout=15), cluster.stderr
    after = cluster.workers()
    assert after[2] == before[2]
    assert f"worker 1 (pid {before[1]}) exited (signal SIGKILL)" in cluster.stderr
    assert "restarting it in 0.5 s" in cluster.stderr
    # The new worker serves, next to the one that stayed.
    with anyio.fail_after(15):
        served: set[int] = set()
        while served != set(after.values()):
            served |= await echoes(cluster, 10)
    assert before[1] not in served


@pytest.mark.anyio
async def test_a_worker_that_cannot_start_is_restarted_with_backoff() -> None:
    # The parent imports the app; the workers fail to (tests/workers_app.py).
    cluster = Cluster(
        [sys.executable, "-m", "websockets_routes", "serve", APP]
        + ["--port", str(free_port()), "--workers", "1"],
        0,
        dict(os.environ, PYTHONUNBUFFERED="1", WORKERS_APP_BROKEN="1"),
    )
    try:
        delays = re.compile(r"worker 1 \(pid \d+\) exited \(exit code 2\) .* in ([\d.]+) s")

        def seen() -> list[float]:
            return [float(m[1]) for m in map(delays.search, cluster.err) if m]

        assert cluster.wait_for(lambda: len(seen()) >= 3, timeout=30), cluster.stderr
        assert [round(d, 1) for d in seen()[:3]] == [0.5, 1.0, 2.0]
        assert "importing 'tests.workers_app' failed: RuntimeError" in cluster.stderr
        assert not cluster.serving()
        # SIGTERM while a restart is pending: nothing left to wait for.
        cluster.proc.send_signal(signal.SIGTERM)
        assert await wait_exit(cluster.proc, 10) == 0
    finally:
        cluster.kill()


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sigterm_drains_every_worker(start: Callable[..., Cluster], transport: str) -> None:
    drain = 1.0
    cluster = start("--transport", transport, "--drain", str(drain))
    connections = [await open_pid(cluster) for _ in range(8)]
    pids = set(cluster.workers().values())
    signalled = time.monotonic()
    cluster.proc.send_signal(signal.SIGTERM)
    codes, closed_after = [], []
    for ws, _ in connections:
        codes.append(await close_code(ws))
        closed_after.append(time.monotonic() - signalled)
    assert codes == [1012] * len(connections)
    # Spread over the drain, not all at once.
    assert max(closed_after) >= drain / 2
    assert await wait_exit(cluster.proc, drain + 10) == 0
    assert time.monotonic() - signalled < drain + 10
    await wait_gone(pids, 5)


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sigint_closes_at_once_with_1001(
    start: Callable[..., Cluster], transport: str
) -> None:
    cluster = start("--transport", transport)  # the default drain: 10 s
    connections = [await open_pid(cluster) for _ in range(6)]
    signalled = time.monotonic()
    cluster.proc.send_signal(signal.SIGINT)
    assert [await close_code(ws) for ws, _ in connections] == [1001] * len(connections)
    assert time.monotonic() - signalled < 5
    assert await wait_exit(cluster.proc, 10) == 0


@pytest.mark.anyio
async def test_a_repeated_sigterm_or_one_ctrl_c_does_not_cut_the_drain(
    start: Callable[..., Cluster],
) -> None:
    drain = 2.0
    cluster = start("--drain", str(drain))
    connections = [await open_pid(cluster) for _ in range(6)]
    signalled = time.monotonic()
    cluster.proc.send_signal(signal.SIGTERM)
    assert cluster.wait_for(lambda: any("drain their connections" in e for e in cluster.err))
    # SIGTERM again, as a process manager may send; then one Ctrl-C.
    cluster.proc.send_signal(signal.SIGTERM)
    assert cluster.wait_for(lambda: "SIGTERM received while stopping" in cluster.stderr)
    cluster.proc.send_signal(signal.SIGINT)
    assert [await close_code(ws) for ws, _ in connections] == [1012] * len(connections)
    assert time.monotonic() - signalled >= drain * 0.75
    assert await wait_exit(cluster.proc, drain + 10) == 0
    assert "SIGTERM received while stopping after SIGTERM" in cluster.stderr
    assert "ignored" in cluster.stderr
    line = next(e for e in cluster.err if "SIGINT received while stopping" in e)
    assert "Ctrl+C again kills them at once" in line


@pytest.mark.anyio
async def test_ctrl_c_to_the_process_group(start: Callable[..., Cluster]) -> None:
    # The parent leads a process group of its own here, as a shell's job does; the
    # workers, in sessions of their own, get the parent's copy only.
    cluster = start(new_session=True)
    connections = [await open_pid(cluster) for _ in range(4)]
    os.killpg(cluster.proc.pid, signal.SIGINT)
    assert [await close_code(ws) for ws, _ in connections] == [1001] * len(connections)
    assert await wait_exit(cluster.proc, 10) == 0
    assert cluster.stderr.count("SIGINT received: closing connections with 1001") == 2
    assert "Ctrl+C again kills them at once" in cluster.stderr
    assert "quitting at once" not in cluster.stderr


STUBBORN_APP = '''
import os

import anyio
from websockets_routes import Router

router = Router()


@router.route("/stubborn")
async def stubborn(ws, path):
    """Ignores its connection's close: a graceful stop waits close_timeout for it."""
    await ws.send(str(os.getpid()))
    try:
        async for _ in ws:
            pass
    except Exception:
        pass
    await anyio.sleep(3600)
'''


@pytest.fixture
def stubborn_path(tmp_path: Path) -> str:
    """A PYTHONPATH with the module ``stubborn_app`` (``STUBBORN_APP``) on it."""
    (tmp_path / "stubborn_app.py").write_text(STUBBORN_APP)
    return os.pathsep.join([str(tmp_path), str(ROOT)])


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("first", ["SIGINT", "SIGTERM"])
async def test_a_second_ctrl_c_kills_the_workers(
    start: Callable[..., Cluster], stubborn_path: str, transport: str, first: str
) -> None:
    cluster = start(
        "--transport",
        transport,
        "--drain",
        "60",
        app="stubborn_app:router",
        new_session=True,
        PYTHONPATH=stubborn_path,
    )
    connections = []
    for _ in range(4):
        ws = await connect(cluster.url("/stubborn"), open_timeout=10)
        connections.append((ws, int(await ws.recv())))
    pids = set(cluster.workers().values())
    os.killpg(cluster.proc.pid, signal.Signals[first])
    if first == "SIGINT":
        # The first Ctrl-C closes gracefully; the handlers keep the workers up.
        assert [await close_code(ws) for ws, _ in connections] == [1001] * len(connections)
        expected = "SIGINT received: workers close their connections with 1001"
    else:
        expected = "drain their connections"
    assert cluster.wait_for(lambda: expected in cluster.stderr), cluster.stderr
    os.killpg(cluster.proc.pid, signal.SIGINT)
    if first == "SIGTERM":  # that was the first Ctrl-C: the drain goes on
        assert cluster.wait_for(lambda: "Ctrl+C again kills them at once" in cluster.stderr)
        assert cluster.proc.poll() is None
        os.killpg(cluster.proc.pid, signal.SIGINT)
    signalled = time.monotonic()
    assert await wait_exit(cluster.proc, 10) == 130
    assert time.monotonic() - signalled < 5
    await wait_gone(pids, 5)
    assert "SIGINT received again: killing the workers" in cluster.stderr
    assert "Traceback" not in cluster.stderr


@pytest.mark.anyio
async def test_sigterm_to_every_process_is_acted_on_once(start: Callable[..., Cluster]) -> None:
    # As systemd's KillMode=control-group does: each process gets SIGTERM, and the
    # workers get the parent's copy too.
    drain = 1.0
    cluster = start("--drain", str(drain))
    connections = [await open_pid(cluster) for _ in range(6)]
    pids = set(cluster.workers().values())
    signalled = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    cluster.proc.send_signal(signal.SIGTERM)
    assert [await close_code(ws) for ws, _ in connections] == [1012] * len(connections)
    assert time.monotonic() - signalled >= drain / 2
    assert await wait_exit(cluster.proc, drain + 10) == 0
    # One drain per worker (the kernel may merge the two copies of a signal into one).
    assert cluster.stderr.count("SIGTERM received: closing connections with 1012") == 2
    assert "restarting" not in cluster.stderr


@pytest.mark.anyio
async def test_sigquit_kills_the_workers_at_once(start: Callable[..., Cluster]) -> None:
    cluster = start("--drain", "30")
    ws, _ = await open_pid(cluster)
    pids = set(cluster.workers().values())
    cluster.proc.send_signal(signal.SIGQUIT)
    assert await wait_exit(cluster.proc, 10) == 128 + signal.SIGQUIT
    await wait_gone(pids, 5)
    with anyio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is None  # cut, no close frame


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_workers_stop_when_the_parent_is_killed(
    start: Callable[..., Cluster], transport: str
) -> None:
    cluster = start("--transport", transport, "--drain", "1")
    ws, _ = await open_pid(cluster)
    pids = set(cluster.workers().values())
    cluster.proc.kill()
    # Each worker stops as on SIGTERM: it drains, then exits.
    assert await close_code(ws) == 1012
    await wait_gone(pids, 10)


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_workers_on_one_inherited_socket(
    start: Callable[..., Cluster], transport: str
) -> None:
    cluster = start("--transport", transport, "--drain", "0.5", reuse_port=False)
    workers = set(cluster.workers().values())
    assert len(workers) == 2
    assert await echoes(cluster, 10) <= workers
    connections = [await open_pid(cluster) for _ in range(4)]
    cluster.proc.send_signal(signal.SIGTERM)
    assert [await close_code(ws) for ws, _ in connections] == [1012] * len(connections)
    assert await wait_exit(cluster.proc, 20) == 0


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "websockets_routes", "serve", APP, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--workers", "2", "--port", "0"), "--workers needs a fixed --port"),
        (("--workers", "2", "--transport", "websockets"), "--workers needs a transport that"),
        (("--workers", "0"), "--workers 0: at least 1"),
        (("--drain", "-1"), "--drain -1: the drain is 0 seconds or more"),
        (("--drain", "inf"), "--drain inf: the drain is 0 seconds or more"),
        (("--drain", "5", "--transport", "websockets"), "--drain needs a transport that"),
    ],
)
def test_refused_arguments_give_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("--workers", "2", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot serve on 127.0.0.1:" in result.stderr
