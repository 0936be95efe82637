"""The command line, run as users run it: ``python -m websockets_routes ...``."""

from __future__ import annotations

import json
import os
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
    assert lines[0].split() == [
        "TEMPLATE",
        "NAME",
        "KIND",
        "VIEW",
        "SUBPROTOCOLS",
        "ORIGINS",
        "POLICY",
    ]
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


# What a first-time user meets: a missing library, --help, check --exit-code, Ctrl-C,
# the serve options. The apps these tests serve are written to a directory of their
# own and found through PYTHONPATH.

APP_SOURCE = '''
import anyio
from websockets_routes import Router

router = Router()


@router.route("/echo", name="echo")
async def echo(ws, path):
    async for message in ws:
        await ws.send(message)


@router.route("/stubborn", name="stubborn")
async def stubborn(ws, path):
    """Ignores its connection's close: a graceful stop waits close_timeout for it."""
    await ws.send("ready")
    try:
        async for _ in ws:
            pass
    except Exception:
        pass
    await anyio.sleep(3600)


class Refused:
    """A hook that answers 200: a refused handshake, though a 2xx."""

    def process_request(self, path, headers):
        return 200, [], b"not here"

    async def handle(self, ws, path):
        pass


router.route("/refused")(Refused)


@router.http("/health")
async def health(request):
    return "ok"


@router.http("/teapot")
async def teapot(request):
    return 418, [], b"short and stout"
'''

TEST_APP = "cli_test_app:router"
TRACES = ("Traceback", "Task was destroyed", "Exception ignored", "KeyboardInterrupt")


@pytest.fixture(scope="module")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PYTHONPATH with ``cli_test_app`` (``APP_SOURCE``) on it."""
    import os

    directory = tmp_path_factory.mktemp("cli_app")
    (directory / "cli_test_app.py").write_text(APP_SOURCE)
    paths = [str(directory), str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def run_with_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "websockets_routes", *args],
        cwd=ROOT,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.stderr


# Running the CLI with a library hidden: None in sys.modules makes every import of it
# fail with ImportError, as when it is not installed, whatever is installed here.
HIDING = (
    "import sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    sys.modules[name] = None\n"
    "from websockets_routes.__main__ import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


@pytest.mark.parametrize(
    ("hidden", "args", "extra"),
    [
        ("trio", ("--transport", "trio"), "trio"),
        ("trio", ("--transport", "trio", "--workers", "2", "--port", "8765"), "trio"),
        ("websockets", ("--transport", "websockets"), "websockets"),
        ("uvloop", ("--uvloop",), "uvloop"),
    ],
)
def test_a_missing_library_names_the_extra(hidden: str, args: tuple[str, ...], extra: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", HIDING, hidden, "serve", APP, "--port", "0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_exit_2(result, f"pip install 'websockets-routes[{extra}]'")
    assert f"needs {hidden}" in result.stderr


@pytest.mark.parametrize("command", [(), ("serve",), ("routes",), ("check",)])
def test_help_is_plain_text(command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout
    assert ":func:" not in result.stdout and ".. " not in result.stdout
    if command == ("serve",):
        assert "--max-connections" in result.stdout and "Ctrl-C" in result.stdout


@pytest.mark.parametrize(
    ("args", "status", "first_line"),
    [
        (("/echo",), 0, "Accept"),
        (("/echo", "--no-hooks"), 0, "Accept"),
        (("/nowhere",), 1, "Respond  HTTP 404"),
        (("/refused",), 1, "Respond  HTTP 200"),  # a hook's 2xx refuses the handshake
        (("/health", "--no-upgrade"), 0, "Respond  HTTP 200"),  # a plain-HTTP route's 2xx
        (("/health",), 0, "Respond  HTTP 200"),
        (("/health", "--no-hooks"), 0, "HTTP     plain-HTTP route"),
        (("/teapot", "--no-upgrade"), 1, "Respond  HTTP 418"),
        (("/echo", "-H", "Sec-WebSocket-Version: 8"), 1, "Respond  HTTP 426"),
    ],
)
def test_check_exit_code(
    app_env: dict[str, str], args: tuple[str, ...], status: int, first_line: str
) -> None:
    result = run_with_env(app_env, "check", TEST_APP, *args, "--exit-code")
    assert result.returncode == status, (result.stdout, result.stderr)
    assert result.stdout.startswith(first_line), result.stdout
    # Without --exit-code, check says what it decided and exits 0.
    assert run_with_env(app_env, "check", TEST_APP, *args).returncode == 0


def test_check_exit_code_is_1_for_close() -> None:
    result = run_cli("check", APP, "/rooms/Bad!Room", "--exit-code")
    assert result.returncode == 1
    assert result.stdout.startswith("Close    accept, then close with 4400")


ALL_TRANSPORTS = ["asyncio", "trio", "anyio", "websockets"]


@pytest.mark.parametrize("transport", ALL_TRANSPORTS)
def test_a_second_sigint_quits_at_once(app_env: dict[str, str], transport: str) -> None:
    import signal
    import time

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from tests.serving import served

    with served(TEST_APP, "--transport", transport, env=app_env) as server:
        with connect(server.ws_base + "/stubborn", open_timeout=10) as ws:
            assert ws.recv(timeout=10) == "ready"
            server.proc.send_signal(signal.SIGINT)
            # The first Ctrl-C: a graceful close, and a line saying what a second does.
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            assert server.wait_stderr("Ctrl+C again quits at once"), server.stderr
            line = next(e for e in server.err if "Ctrl+C again" in e)
            assert "SIGINT received: closing connections with 1001" in line
            if transport != "websockets":
                assert "handlers get up to 10 s" in line
            # The handler ignores the close: the process waits for it...
            assert server.proc.poll() is None
            # ...until the second Ctrl-C.
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGINT)
            assert server.proc.wait(timeout=15) == 130
            assert time.monotonic() - signalled < 5
        server.wait_for(lambda: False, timeout=0)
        server.stop()
        assert "SIGINT received again: quitting at once" in server.stderr
        for trace in TRACES:
            assert trace not in server.stderr, server.stderr


@pytest.mark.parametrize("transport", ["asyncio", "trio"])
def test_sigterm_repeats_never_cut_a_drain_a_second_ctrl_c_does(
    app_env: dict[str, str], transport: str
) -> None:
    import signal

    from websockets.sync.client import connect

    from tests.serving import served

    args = ("--transport", transport, "--drain", "60")
    with served(TEST_APP, *args, env=app_env) as server:
        with connect(server.ws_base + "/stubborn", open_timeout=10) as ws:
            assert ws.recv(timeout=10) == "ready"
            server.proc.send_signal(signal.SIGTERM)
            assert server.wait_stderr("SIGTERM received: closing connections with 1012 over 60 s")
            server.proc.send_signal(signal.SIGTERM)
            assert server.wait_stderr("SIGTERM received while closing after SIGTERM: ignored")
            # A first Ctrl-C during the drain: the drain goes on, and says how to quit.
            server.proc.send_signal(signal.SIGINT)
            assert server.wait_stderr("SIGINT received while closing after SIGTERM")
            assert "Ctrl+C again quits at once" in server.err[-1]
            assert server.proc.poll() is None
            server.proc.send_signal(signal.SIGINT)
            assert server.proc.wait(timeout=15) == 130
        server.stop()
        for trace in TRACES:
            assert trace not in server.stderr, server.stderr


@pytest.mark.parametrize("transport", ["asyncio", "trio", "websockets"])
def test_serve_tls(app_env: dict[str, str], tls_files: tuple[str, str], transport: str) -> None:
    import ssl

    from websockets.sync.client import connect

    from tests.serving import served

    cert, key = tls_files
    args = ("--transport", transport, "--certfile", cert, "--keyfile", key)
    with served(TEST_APP, *args, env=app_env) as server:
        assert server.base.startswith("https://")
        assert "(wss://127.0.0.1:" in server.out[0]
        client = ssl.create_default_context(cafile=cert)
        with connect(server.ws_base + "/echo", ssl=client, open_timeout=10) as ws:
            ws.send("secret")
            assert ws.recv(timeout=10) == "secret"


def test_bad_tls_files_give_one_line(
    tmp_path: Path, app_env: dict[str, str], tls_files: tuple[str, str]
) -> None:
    cert, key = tls_files
    missing = str(tmp_path / "missing.pem")
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    cases = [
        (("--certfile", missing), f"cannot read {missing}"),
        (("--certfile", cert, "--keyfile", missing), f"cannot read {missing}"),
        (("--certfile", str(not_pem), "--keyfile", key), "cannot load the TLS certificate"),
        (("--certfile", cert), "cannot load the TLS certificate"),  # no key in it
        (("--keyfile", key), "--keyfile needs --certfile"),
    ]
    encrypted = tmp_path / "encrypted.pem"
    made = subprocess.run(
        ["openssl", "pkey", "-in", key, "-out", str(encrypted), "-aes256", "-passout", "pass:x"],
        capture_output=True,
    )
    if made.returncode == 0:
        cases.append((("--certfile", cert, "--keyfile", str(encrypted)), "the key is encrypted"))
    for args, message in cases:
        result = run_with_env(app_env, "serve", TEST_APP, "--port", "0", *args)
        assert_one_line_exit_2(result, message)


@pytest.mark.parametrize("transport", ["asyncio", "trio", "websockets"])
def test_serve_max_size(app_env: dict[str, str], transport: str) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from tests.serving import served

    with served(TEST_APP, "--transport", transport, "--max-size", "10", env=app_env) as server:
        with connect(server.ws_base + "/echo", open_timeout=10) as ws:
            ws.send("x" * 10)
            assert ws.recv(timeout=10) == "x" * 10
            ws.send("x" * 11)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    big = "x" * (2 * 2**20)  # over the default 1 MiB
    with served(TEST_APP, "--transport", transport, "--max-size", "none", env=app_env) as server:
        with connect(server.ws_base + "/echo", open_timeout=10, max_size=None) as ws:
            ws.send(big)
            assert ws.recv(timeout=30) == big


def read_frames_until_close(port: int, seconds: float) -> list[tuple[int, bytes]]:
    """A handshake to /echo from a client that never answers a ping; the server's
    frames (opcode, payload) up to its close frame."""
    import socket
    import time

    frames: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + seconds
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        sock.sendall(
            b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        while time.monotonic() < deadline:
            while len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F):
                length = data[1] & 0x7F  # control frames: short, unmasked from a server
                frames.append((data[0] & 0x0F, data[2 : 2 + length]))
                data = data[2 + length :]
                if frames[-1][0] == 0x8:
                    return frames
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    return frames


@pytest.mark.parametrize("transport", ["asyncio", "trio", "websockets"])
def test_serve_ping_interval_and_timeout(app_env: dict[str, str], transport: str) -> None:
    from tests.serving import served

    args = ("--transport", transport, "--ping-interval", "0.3", "--ping-timeout", "0.3")
    with served(TEST_APP, *args, env=app_env) as server:
        port = int(server.base.rpartition(":")[2])
        frames = read_frames_until_close(port, 15)
    opcodes = [opcode for opcode, _ in frames]
    assert 0x9 in opcodes, frames  # a keepalive ping
    assert opcodes[-1] == 0x8, frames  # then, without a pong, a close
    assert int.from_bytes(frames[-1][1][:2], "big") == 1011


@pytest.mark.parametrize("transport", ["asyncio", "trio"])
def test_serve_without_pings(app_env: dict[str, str], transport: str) -> None:
    from tests.serving import served

    args = ("--transport", transport, "--ping-interval", "none", "--ping-timeout", "0")
    with served(TEST_APP, *args, env=app_env) as server:
        port = int(server.base.rpartition(":")[2])
        assert read_frames_until_close(port, 1.5) == []  # the default: a ping at 20 s


@pytest.mark.parametrize("transport", ["asyncio", "trio"])
def test_serve_max_connections(app_env: dict[str, str], transport: str) -> None:
    import time

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from tests.serving import served

    with served(TEST_APP, "--transport", transport, "--max-connections", "2", env=app_env) as s:
        url = s.ws_base + "/echo"
        with connect(url, open_timeout=10) as first, connect(url, open_timeout=10) as second:
            for ws in (first, second):
                ws.send("hi")
                assert ws.recv(timeout=10) == "hi"
            with pytest.raises(InvalidStatus) as refused:
                connect(url, open_timeout=10)
            assert refused.value.response.status_code == 503
            assert refused.value.response.headers.get("Retry-After")
        # A place is free again once a connection has closed (the server may see the
        # close a moment after the client).
        deadline = time.monotonic() + 10
        while True:
            try:
                with connect(url, open_timeout=10) as ws:
                    ws.send("again")
                    assert ws.recv(timeout=10) == "again"
                    break
            except InvalidStatus:
                assert time.monotonic() < deadline, "still refused 10 s after the close"
                time.sleep(0.05)


@pytest.mark.parametrize("transport", ["asyncio", "trio"])
def test_access_log_on_by_default(app_env: dict[str, str], transport: str) -> None:
    import signal

    from websockets.sync.client import connect

    from tests.serving import served

    for quiet in (False, True):
        args = ("--transport", transport, "--log-level", "warning")
        args += ("--no-access-log",) if quiet else ()
        with served(TEST_APP, *args, env=app_env) as server:
            with connect(server.ws_base + "/echo?token=secret", open_timeout=10) as ws:
                ws.send("hi")
                assert ws.recv(timeout=10) == "hi"
            if not quiet:
                # On, even with --log-level warning: its own switch.
                assert server.wait_stderr(" 101 echo"), server.stderr
                assert server.wait_stderr("echo closed 1000"), server.stderr
                assert "websockets_routes.access" in server.stderr
                assert "secret" not in server.stderr
            else:
                import urllib.request

                with urllib.request.urlopen(server.base + "/health", timeout=10) as response:
                    assert response.read() == b"ok"
                server.proc.send_signal(signal.SIGINT)
                assert server.proc.wait(timeout=15) == 0
                server.stop()  # all it wrote is read
                assert "websockets_routes.access" not in server.stderr, server.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--max-size", "-1"), "--max-size -1: a number of bytes"),
        (("--max-size", "lots"), "--max-size lots: a number of bytes"),
        (("--ping-interval", "soon"), "--ping-interval soon: a number of seconds"),
        (("--ping-timeout", "inf"), "--ping-timeout inf: a number of seconds"),
        (("--max-connections", "0"), "--max-connections 0: at least 1"),
        (("--max-connections", "5", "--transport", "websockets"), "--max-connections needs"),
    ],
)
def test_refused_serve_options(args: tuple[str, ...], message: str) -> None:
    assert_one_line_exit_2(run_cli("serve", APP, "--port", "0", *args), message)


def test_asyncapi_prints_a_valid_document_as_json_or_yaml() -> None:
    import jsonschema
    import yaml

    schema_file = ROOT / "tests" / "data" / "asyncapi" / "3.0.0-without-id.json"
    schema = json.loads(schema_file.read_text())
    result = run_cli(
        "asyncapi", APP, "--title", "Chat", "--version", "2.0.0",
        "--server", "ws://127.0.0.1:8765",
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    jsonschema.Draft7Validator(schema).validate(document)
    assert document["info"] == {"title": "Chat", "version": "2.0.0"}
    assert document["channels"]["room"]["address"] == "/rooms/{room}"
    as_yaml = run_cli(
        "asyncapi", APP, "--title", "Chat", "--version", "2.0.0",
        "--server", "ws://127.0.0.1:8765", "--yaml",
    )
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout) == document


def test_asyncapi_bad_server_url_is_one_line() -> None:
    result = run_cli("asyncapi", APP, "--server", "http://example.com")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: a server URL is ws://host[:port][/path] or wss://..., not 'http://example.com'"
    )


@pytest.mark.parametrize("command", [("routes", APP), ("asyncapi", APP), ("check", APP, "/")])
def test_a_reader_that_leaves_gets_no_traceback(command: tuple[str, ...]) -> None:
    # `... | head`: the read end is closed before the command writes a byte.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "websockets_routes", *command],
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 1
