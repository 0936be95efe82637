"""The server processes of ``benchmarks/load.py`` and what it reads of them: start-up
(``benchmarks/servers.py KIND``, ``READY <port>`` on stdout), pinning to cores, CPU time
and run-queue waits from ``/proc/PID/task/*/schedstat``, minor page faults from
``/proc/PID/stat``, the end of a child's log."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from servers import KINDS, Kind  # noqa: E402

SERVERS_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers.py")


class BenchError(Exception):
    pass


# Server processes.


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BenchError(f"no VmRSS for {self.name} (pid {self.pid})")

    def cpu_ns(self) -> int:
        return cpu_ns(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def log_tail(self, lines: int = 15) -> str:
        return log_tail(self.log_path, lines)


def cpu_ns(pid: int) -> int:
    """CPU time used so far by all the threads of process ``pid``, in ns (schedstat)."""
    return schedstat(pid)[0]


def schedstat(pid: int) -> tuple[int, int]:
    """CPU time used so far by all the threads of process ``pid`` and the time they
    waited, runnable, for a core (a neighbour had it), in ns."""
    ran = waited = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
            fields = f.read().split()
            ran += int(fields[0])
            waited += int(fields[1])
    return ran, waited


def minor_faults(pid: int) -> int:
    """Minor page faults of process ``pid`` so far, all its threads (``minflt``, the
    10th field of ``/proc/PID/stat``): pages the kernel mapped in on first touch, e.g.
    when the C library grows its heap again after giving the top of it back."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) is in parentheses and may hold spaces.
        fields = f.read().rpartition(")")[2].split()
    return int(fields[7])  # fields[0] is field 3, the state


def snapshot(server: ServerProcess, client_pids: list[int]) -> dict[str, float]:
    """The clock, both sides' schedstat totals and the server's minor page faults,
    for the ends of a window."""
    ran, waited = schedstat(server.pid)
    client = [schedstat(pid) for pid in client_pids]
    return {
        "t": time.monotonic(),
        "server": ran,
        "server_wait": waited,
        "server_minflt": minor_faults(server.pid),
        "client": sum(c[0] for c in client),
        "client_wait": sum(c[1] for c in client),
    }


def shares(start: dict[str, float], end: dict[str, float], client_cores: int) -> dict[str, float]:
    """How busy each side was over the window between two snapshots, as a share of its
    cores; and how long it waited for them while runnable (a side both busy and
    waiting was slowed by a neighbour, not by the other side)."""
    elapsed = (end["t"] - start["t"]) * 1e9
    return {
        "server_cpu_share": (end["server"] - start["server"]) / elapsed,
        "server_wait_share": (end["server_wait"] - start["server_wait"]) / elapsed,
        "client_cpu_share": (end["client"] - start["client"]) / elapsed / client_cores,
        "client_wait_share": (end["client_wait"] - start["client_wait"]) / elapsed / client_cores,
    }


def log_tail(path: str, lines: int = 15) -> str:
    """The last lines of a child's log file ("" if it cannot be read)."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


# "ours@old" is server kind "ours" run from another source tree (--tree old=PATH).
TREES: dict[str, str] = {}


def kind_of(name: str) -> Kind:
    return KINDS[name.split("@", 1)[0]]


def stop_all(servers: list[ServerProcess]) -> None:
    """SIGTERM every server at once, then wait for each (SIGKILL after 5 s)."""
    for server in servers:
        if server.alive():
            with contextlib.suppress(ProcessLookupError):
                server.proc.send_signal(signal.SIGTERM)
    for server in servers:
        server.stop()


class Pinning:
    """Which cores the client and the servers run on, and how servers get there.

    The servers share one core (one measured at a time, the others idle). The client
    gets every other usable core (only --client-cpu when given): this process runs on
    the first, the handshake workers one per core. On 2 cores that is one core each."""

    def __init__(self, client_cpu: int | None, server_cpu: int | None) -> None:
        self.taskset = shutil.which("taskset")
        self.note = ""
        self.client_cpus: list[int] | None = None
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(cpus) < 2:
            self.client_cpu = self.server_cpu = None
            self.note = f"not pinned: {len(cpus) or 'unknown number of'} usable core(s)"
            return
        self.server_cpu = cpus[1] if server_cpu is None else server_cpu
        if client_cpu is not None:
            self.client_cpus = [client_cpu]
        else:
            self.client_cpus = [cpu for cpu in cpus if cpu != self.server_cpu]
        self.client_cpu = self.client_cpus[0]
        how = "taskset" if self.taskset else "sched_setaffinity (no taskset)"
        self.note = f"client on cpu {self.client_cpu}, servers on cpu {self.server_cpu} via {how}"
        if len(self.client_cpus) > 1:
            self.note += f"; handshake workers on cpus {','.join(map(str, self.client_cpus))}"

    def client_procs(self) -> int:
        """Handshake worker processes by default: one per client core (at most 8)."""
        return min(8, len(self.client_cpus)) if self.client_cpus else 1

    def pin_self(self) -> None:
        if self.client_cpu is not None:
            os.sched_setaffinity(0, {self.client_cpu})

    def server_command(self, argv: list[str]) -> tuple[list[str], Any]:
        if self.server_cpu is None:
            return argv, None
        if self.taskset:
            return [self.taskset, "-c", str(self.server_cpu), *argv], None
        cpu = self.server_cpu
        return argv, lambda: os.sched_setaffinity(0, {cpu})


def start_server(
    name: str, pinning: Pinning, uvloop: bool, routes: int, logdir: str
) -> ServerProcess:
    return wait_ready(launch_server(name, pinning, uvloop, routes, logdir))


def launch_server(
    name: str, pinning: Pinning, uvloop: bool, routes: int, logdir: str
) -> ServerProcess:
    """Start a server process; wait_ready() then learns its port."""
    kind, _, tree = name.partition("@")
    argv = [sys.executable, SERVERS_PY, kind, "--routes", str(routes)]
    env = None
    if tree:
        path = TREES[tree]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [path, *filter(None, [os.environ.get("PYTHONPATH")])]))  # fmt: skip
    if uvloop and kind_of(name).runtime == "asyncio":
        argv.append("--uvloop")
    if os.environ.get("BENCH_CPROFILE_DIR"):
        argv += ["--cprofile", os.path.join(os.environ["BENCH_CPROFILE_DIR"], f"{name}.prof")]
    argv, preexec = pinning.server_command(argv)
    log_path = os.path.join(logdir, f"{name}-{time.monotonic_ns()}.log")
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            preexec_fn=preexec,  # noqa: PLW1509 - only sets CPU affinity
            env=env,
        )
    return ServerProcess(name, proc, 0, log_path)


def wait_ready(server: ServerProcess, timeout: float = 30.0) -> ServerProcess:
    proc, name = server.proc, server.name
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            break
    if not line.startswith(b"READY "):
        server.stop()
        raise BenchError(f"{name} did not start:\n{server.log_tail()}")
    server.port = int(line.split()[1])
    return server
