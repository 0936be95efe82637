"""The command line, run as users run it: ``python -m websockets_routes ...``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = "examples.chat.app:router"


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "websockets_routes", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_routes_prints_the_table() -> None:
    result = run_cli("routes", APP)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TEMPLATE", "NAME", "KIND", "VIEW", "SUBPROTOCOLS", "ORIGINS"]
    assert any(line.split()[:3] == ["/rooms/{room}", "room", "websocket"] for line in lines)
    assert any("examples.chat.app.Room" in line for line in lines)


def test_check_accept_shows_route_params_and_accept_header() -> None:
    result = run_cli("check", APP, "/rooms/lobby?x=1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Accept   101")
    assert "/rooms/{room} (name room)" in out
    assert "{'room': 'lobby'}" in out
    assert "Sec-WebSocket-Accept:" in out


def test_check_runs_the_view_hook() -> None:
    result = run_cli("check", APP, "/rooms/Bad!Room")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Close    accept, then close with 4400")
    assert "use 1-32 of a-z" in result.stdout
    # --no-hooks shows what decide() alone says
    assert run_cli("check", APP, "/rooms/Bad!Room", "--no-hooks").stdout.startswith("Accept")


def test_check_unknown_path_and_headers() -> None:
    assert "HTTP 404" in run_cli("check", APP, "/nowhere").stdout
    out = run_cli("check", APP, "/rooms/a", "-H", "Sec-WebSocket-Version: 8").stdout
    assert "HTTP 426" in out and "Sec-WebSocket-Version: 13" in out
    out = run_cli("check", APP, "/healthz", "--no-upgrade").stdout
    assert "HTTP 200" in out and "ok" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("routes", "no_such_module_xyz:router"), "cannot import module 'no_such_module_xyz'"),
        (("routes", "examples.chat.app:nothing"), "has no attribute 'nothing'"),
        (("routes", "examples.chat.app:broadcast"), "is a Broadcast, not a websockets_routes.Router"),
        (("routes", "examples.chat.app"), "expected MODULE:ATTRIBUTE"),
        (("check", APP, "/x", "-H", "no colon"), "must look like 'Name: value'"),
        (("serve", APP, "--transport", "carrier-pigeon"), "invalid choice"),
        (("serve", APP, "--port", "99999"), "out of range"),
        (("frobnicate",), "invalid choice"),
        ((), "required"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("transport", ["asyncio", "trio", "anyio", "websockets"])
def test_serve_each_transport_and_shut_down_on_sigint(transport: str) -> None:
    import json
    import signal

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from tests.serving import cli_server

    with cli_server(APP, "--transport", transport) as (base, proc):
        ws_url = base.replace("http://", "ws://")
        with connect(ws_url + "/rooms/cli-test", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10)) == {"type": "join"}
            ws.send(json.dumps({"user": "u", "text": "t"}))
            assert json.loads(ws.recv(timeout=10))["text"] == "t"
            proc.send_signal(signal.SIGINT)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert proc.wait(timeout=15) == 0


@pytest.mark.parametrize(
    ("transport", "code"), [("asyncio", 1012), ("trio", 1012), ("websockets", 1001)]
)
def test_serve_sigterm_drains_where_the_transport_can(transport: str, code: int) -> None:
    import signal
    import time

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from tests.serving import cli_server

    drain = [] if transport == "websockets" else ["--drain", "0.5"]
    with cli_server(APP, "--transport", transport, *drain) as (base, proc):
        ws_url = base.replace("http://", "ws://")
        with connect(ws_url + "/rooms/drain-test", open_timeout=10) as ws:
            ws.recv(timeout=10)  # joined
            signalled = time.monotonic()
            # Twice, as when a signal reaches a whole process group and is forwarded
            # too: the second changes nothing.
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - signalled < 10
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()


def test_serve_port_in_use_is_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli("serve", APP, "--port", port)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cannot serve on 127.0.0.1:" in result.stderr
