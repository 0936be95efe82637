"""Run ``python -m websockets_routes serve`` as a subprocess and find its URL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
URL_LINE = re.compile(r"on http://([\d.]+):(\d+)/")


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
                url.append(f"http://{match[1]}:{match[2]}")
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
