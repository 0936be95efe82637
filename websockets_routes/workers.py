"""Several worker processes on one port: ``python -m websockets_routes serve ... --workers N``.

The parent (``Supervisor``) runs N copies of ``python -m websockets_routes serve`` with an
internal ``--worker-control FD`` option. Each worker binds the port itself with
SO_REUSEPORT on Linux, where the kernel spreads new connections over the workers'
sockets; elsewhere the parent binds one listening socket and the workers inherit it
(``--worker-socket FD``). The parent holds no listening socket of its own on Linux: it
binds the port without listening, which reserves it (a clear error at start-up if
another program has it) and takes no connections.

Signals. Each worker runs in a session of its own, so a signal sent to the terminal's
process group (Ctrl-C) reaches the parent alone; the parent forwards the first SIGTERM
or SIGINT to every worker, once:

- SIGTERM: each worker calls ``server.close(drain=SECONDS)`` (close code 1012 spread
  over the drain) and ``await server.wait_closed()``; the parent exits 0 when all have.
- SIGINT: each worker calls ``server.close()`` (1001 to every connection at once,
  handlers given up to ``close_timeout``).
- A SIGTERM while stopping is logged and ignored: a process manager that signals every
  process of the service (systemd's ``KillMode=control-group``) never cuts a drain.
- A second SIGINT (a person's second Ctrl-C, also when the first came during a SIGTERM
  drain) stops at once: the parent kills the workers with SIGKILL (connections are cut
  without a close frame) and exits 130. So does SIGQUIT (Ctrl-\\), with status 131.

A worker that dies is started again after a delay that doubles from 0.5 s to 30 s
while workers keep dying young; a worker that served 10 s or more resets the delay of
its slot. Each restart is logged with the exit status.

A worker dies with its parent: on Linux it asks for SIGTERM when the parent dies
(``prctl(PR_SET_PDEATHSIG)``), and everywhere it watches the control socket it shares
with the parent: end of file there means the parent is gone. Either way the worker
stops as on SIGTERM (it drains, then exits).
"""

from __future__ import annotations

import ctypes
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType

logger = logging.getLogger("websockets_routes.workers")

# SO_REUSEPORT spreads connections over the sockets of a group on Linux; BSD and macOS
# accept the option, but there the last socket bound takes every connection.
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")

FIRST_DELAY = 0.5  # seconds before the first restart of a worker that died
MAX_DELAY = 30.0  # the delay doubles up to this while workers keep dying young
STABLE_AFTER = 10.0  # a worker that lived this long resets the delay of its slot
QUIT_STATUS = 128 + signal.SIGQUIT  # the parent's exit status after SIGQUIT
INTERRUPTED_STATUS = 128 + signal.SIGINT  # the parent's exit status after a second SIGINT

READY = b"ready\n"  # a worker's message to its parent once it listens
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def describe_status(returncode: int) -> str:
    """``exit code 2`` or ``signal SIGKILL`` for a ``Popen.returncode``."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def reserve_port(host: str | None, port: int) -> list[socket.socket]:
    """Bind (without listening) every address of ``host:port`` with SO_REUSEPORT.

    The sockets take no connections; they hold the port for the workers' group, and
    binding them is how the parent learns early that another program has the port.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            _set_listen_options(sock, reuse_port=True)
            sock.bind(address)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def listening_socket(host: str | None, port: int, backlog: int = 1024) -> socket.socket:
    """One listening socket on the first address of ``host:port``, for the workers to
    inherit where SO_REUSEPORT does not spread connections."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        _set_listen_options(sock, reuse_port=False)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _set_listen_options(sock: socket.socket, *, reuse_port: bool) -> None:
    # The options asyncio's and anyio's listeners set, so that their sockets and ours
    # may share the port.
    if os.name == "posix":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)


@dataclass
class _Slot:
    """One of the N workers, across its restarts."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    control: socket.socket | None = None
    started_at: float = 0.0
    ready: bool = False
    delay: float = FIRST_DELAY
    restart_at: float | None = None
    buffer: bytes = b""


class Supervisor:
    """Runs ``count`` workers and keeps them running until a signal stops them.

    ``worker_args`` are the arguments of ``python -m websockets_routes`` for a worker
    (``serve MODULE:router --host ... --port ...``); the supervisor adds
    ``--worker-control FD`` (and ``--worker-socket FD`` when ``sock`` is given: the
    listening socket every worker then shares). ``on_worker_ready(index, pid)`` is
    called for each start, ``on_all_ready()`` once, when all have started the first
    time; ``drain`` is only for the log line. ``run()`` returns the exit status.
    """

    def __init__(
        self,
        worker_args: Sequence[str],
        count: int,
        *,
        sock: socket.socket | None = None,
        drain: float | None = None,
        on_worker_ready: Callable[[int, int], None] = lambda index, pid: None,
        on_all_ready: Callable[[], None] = lambda: None,
    ) -> None:
        self.worker_args = list(worker_args)
        self.count = count
        self.sock = sock
        self.drain = drain
        self.on_worker_ready = on_worker_ready
        self.on_all_ready = on_all_ready
        self._slots = [_Slot(index) for index in range(1, count + 1)]
        self._selector = selectors.DefaultSelector()
        self._pending: deque[int] = deque()
        self._stopping: int | None = None
        self._stop_started = 0.0
        self._interrupts = 0  # SIGINTs received: the second one kills the workers
        self._announced = False

    def run(self) -> int:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._selector.register(wake_r, selectors.EVENT_READ, None)
        handled = (*_STOP_SIGNALS, signal.SIGQUIT, signal.SIGCHLD)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in handled}
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        try:
            for slot in self._slots:
                self._start(slot)
            return self._loop(wake_r)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for slot in self._slots:
                self._close_control(slot)
            self._selector.close()
            wake_r.close()
            wake_w.close()

    # The loop

    def _loop(self, wake: socket.socket) -> int:
        while True:
            for signum in self._take_signals():
                if signum == signal.SIGQUIT:
                    return self._quit("SIGQUIT received", QUIT_STATUS)
                if signum == signal.SIGINT:
                    self._interrupts += 1
                    if self._interrupts >= 2:
                        return self._quit("SIGINT received again", INTERRUPTED_STATUS)
                self._stop(signum)
            self._reap()
            if self._stopping is not None and not self._running():
                logger.info("all workers have stopped")
                return 0
            now = time.monotonic()
            for slot in self._slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    self._start(slot)
            timeout = 1.0  # a safety net: SIGCHLD and the control sockets wake us up
            for slot in self._slots:
                if slot.restart_at is not None:
                    timeout = max(0.0, min(timeout, slot.restart_at - now))
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    _drain_socket(wake)
                else:
                    self._read_control(key.data)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD:
            self._pending.append(signum)

    def _take_signals(self) -> Iterator[int]:
        while self._pending:
            yield self._pending.popleft()

    def _running(self) -> list[_Slot]:
        return [slot for slot in self._slots if slot.proc is not None]

    # Starting, restarting, stopping

    def _start(self, slot: _Slot) -> None:
        slot.restart_at = None
        slot.ready = False
        slot.buffer = b""
        mine, theirs = socket.socketpair()
        fds = [theirs.fileno()]
        args = [sys.executable, "-m", "websockets_routes", *self.worker_args]
        args += ["--worker-control", str(theirs.fileno())]
        if self.sock is not None:
            fds.append(self.sock.fileno())
            args += ["--worker-socket", str(self.sock.fileno())]
        slot.started_at = time.monotonic()
        try:
            # A session of its own: the terminal's signals (Ctrl-C to the foreground
            # process group) reach the parent only, which forwards them once.
            slot.proc = subprocess.Popen(args, pass_fds=fds, start_new_session=True)
        except OSError as exc:
            mine.close()
            logger.error("cannot start worker %d: %s", slot.index, exc)
            self._schedule_restart(slot, lived=0.0)
            return
        finally:
            theirs.close()
        slot.control = mine
        mine.setblocking(False)
        self._selector.register(mine, selectors.EVENT_READ, slot)
        logger.debug("worker %d starting (pid %d)", slot.index, slot.proc.pid)

    def _read_control(self, slot: _Slot) -> None:
        assert slot.control is not None and slot.proc is not None
        try:
            data = slot.control.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the worker is exiting; SIGCHLD (or the next tick) reaps it
            self._close_control(slot)
            return
        slot.buffer += data
        if not slot.ready and READY in slot.buffer:
            slot.ready = True
            self.on_worker_ready(slot.index, slot.proc.pid)
            if not self._announced and all(s.ready for s in self._slots):
                self._announced = True
                self.on_all_ready()

    def _close_control(self, slot: _Slot) -> None:
        if slot.control is not None:
            self._selector.unregister(slot.control)
            slot.control.close()
            slot.control = None

    def _reap(self) -> None:
        for slot in self._slots:
            if slot.proc is None or slot.proc.poll() is None:
                continue
            status, pid = slot.proc.returncode, slot.proc.pid
            lived = time.monotonic() - slot.started_at
            slot.proc = None
            self._close_control(slot)
            if self._stopping is not None:
                log = logger.info if status == 0 else logger.warning
                log("worker %d (pid %d) stopped: %s", slot.index, pid, describe_status(status))
                continue
            delay = self._schedule_restart(slot, lived)
            log = logger.info if status == 0 else logger.error
            log(
                "worker %d (pid %d) exited (%s) after %.1f s; restarting it in %.1f s",
                slot.index,
                pid,
                describe_status(status),
                lived,
                delay,
            )

    def _schedule_restart(self, slot: _Slot, lived: float) -> float:
        """Start ``slot`` again later; the delay, in seconds."""
        if lived >= STABLE_AFTER:
            slot.delay = FIRST_DELAY
        delay = slot.delay
        slot.restart_at = time.monotonic() + delay
        slot.delay = min(2 * delay, MAX_DELAY)
        return delay

    def _stop(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stopping is not None:
            waited = time.monotonic() - self._stop_started
            first = signal.Signals(self._stopping).name
            if signum == signal.SIGINT:
                logger.warning(
                    "SIGINT received while stopping after %s (%.1f s ago): %d worker(s) "
                    "still closing their connections; Ctrl+C again kills them at once",
                    first,
                    waited,
                    len(self._running()),
                )
            else:
                logger.warning(
                    "%s received while stopping after %s (%.1f s ago): ignored, %d "
                    "worker(s) still closing their connections",
                    name,
                    first,
                    waited,
                    len(self._running()),
                )
            return
        self._stopping, self._stop_started = signum, time.monotonic()
        if signum == signal.SIGTERM and self.drain is not None:
            logger.info(
                "SIGTERM received: %d worker(s) drain their connections (close code 1012) "
                "over %g s; a repeated SIGTERM is ignored",
                len(self._running()),
                self.drain,
            )
        else:
            logger.info(
                "%s received: workers close their connections with 1001; "
                "Ctrl+C again kills them at once",
                name,
            )
        for slot in self._slots:
            slot.restart_at = None
            self._signal(slot, signum)

    def _signal(self, slot: _Slot, signum: int) -> None:
        if slot.proc is not None and slot.proc.poll() is None:
            slot.proc.send_signal(signum)

    def _quit(self, why: str, status: int) -> int:
        logger.warning("%s: killing the workers", why)
        for slot in self._slots:
            self._signal(slot, signal.SIGKILL)
        for slot in self._slots:
            if slot.proc is not None:
                slot.proc.wait()
                slot.proc = None
        return status


def _drain_socket(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass


# The worker's side


class ParentLink:
    """A worker's end of the control socket it shares with its parent.

    ``start()`` arranges for the worker to stop as on SIGTERM when the parent dies;
    ``ready()`` tells the parent that the worker listens.
    """

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.set_inheritable(False)  # not for the app's own subprocesses

    def start(self) -> None:
        set_parent_death_signal(signal.SIGTERM)
        threading.Thread(target=self._watch, name="parent-watch", daemon=True).start()

    def ready(self) -> None:
        try:
            self._sock.sendall(READY)
        except OSError:
            pass  # the parent is gone: _watch() stops the worker

    def _watch(self) -> None:
        try:
            while self._sock.recv(64):
                pass
        except OSError:
            pass
        logger.warning("the parent process is gone: stopping as on SIGTERM")
        os.kill(os.getpid(), signal.SIGTERM)


def set_parent_death_signal(signum: int) -> bool:
    """Linux: have the kernel send ``signum`` to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
