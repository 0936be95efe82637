"""Run ``python -m websockets_routes serve`` as a subprocess and find its URL.

``cli_server`` yields the URL and the process (its stderr left for the test to read);
``served`` yields a ``Served``, which reads stdout and stderr as they come, so that a
test can wait for a line before it sends the next signal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
URL_LINE = re.compile(r"on (https?)://([\d.]+):(\d+)/")


@contextmanager
def cli_server(
    app: str, *args: str, timeout: float = 30.0, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start the CLI on port 0 (``env``: variables to add); yield (base http URL,
    process); stop it with SIGINT."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "websockets_routes", "serve", app, "--port", "0", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = threading.Event()
    url: list[str] = []

    def read_first_line() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = URL_LINE.search(line)
            if match:
                url.append(f"{match[1]}://{match[2]}:{match[3]}")
                found.set()
                return

    reader = threading.Thread(target=read_first_line, daemon=True)
    reader.start()
    try:
        if not found.wait(timeout):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"server did not print its URL in {timeout} s: {err}")
        yield url[0], proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


class Served:
    """A running ``serve`` process and what it printed so far."""

    def __init__(self, argv: list[str], env: dict[str, str], new_session: bool = False) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            start_new_session=new_session,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.changed = threading.Condition()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()
        self.base = ""  # http(s)://host:port once serving

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self.changed:
                lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    @property
    def ws_base(self) -> str:
        return self.base.replace("http", "ws", 1)

    @property
    def stderr(self) -> str:
        with self.changed:
            return "\n".join(self.err)

    def wait_for(self, found: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Wait until ``found()`` (called under the lock), or until the process has
        exited and all it printed is read, or ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not found():
                left = deadline - time.monotonic()
                reading = any(reader.is_alive() for reader in self.readers)
                if left <= 0 or (self.proc.poll() is not None and not reading):
                    return found()
                self.changed.wait(min(left, 0.1))
        return True

    def after_kill(self) -> None:
        """What else to kill once the process is (a subclass's other processes)."""

    def wait_stderr(self, text: str, timeout: float = 30.0) -> bool:
        return self.wait_for(lambda: any(text in line for line in self.err), timeout)

    def stop(self) -> None:
        """SIGKILL the process if it still runs; close its streams."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.after_kill()
        for reader in self.readers:
            reader.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def served(
    app: str, *args: str, timeout: float = 30.0, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """Start the CLI on port 0 (``env``: variables to add) and wait for its URL; kill
    it at the end if it still runs (a test sends the signals it means to)."""
    argv = [sys.executable, "-m", "websockets_routes", "serve", app, "--port", "0", *args]
    server = Served(argv, dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
    try:

        def serving() -> bool:
            return any(URL_LINE.search(line) for line in server.out)

        if not server.wait_for(serving, timeout):
            raise AssertionError(f"server did not print its URL in {timeout} s: {server.stderr}")
        with server.changed:
            match = next(m for m in map(URL_LINE.search, server.out) if m)
        server.base = f"{match[1]}://{match[2]}:{match[3]}"
        yield server
    finally:
        server.stop()
