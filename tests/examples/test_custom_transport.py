"""examples/custom_transport.py: the server written on the public core API alone.

Its behaviour is checked by the transport behaviour suite and the reliability suite
(the ``custom`` parameter of tests/transports/conftest.py and
tests/reliability/conftest.py) and by Autobahn (``autobahn/run.py --transport
custom``). Here: what makes it an example — its size, that it reaches the project
only through ``websockets_routes.core`` (and the top-level package), and the
server surface the suites do not use (``serve_forever``, a port of its own).
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect

import websockets_routes
import websockets_routes.core
from examples.custom_transport import serve
from websockets_routes import Router

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_transport.py"
MAX_CODE_LINES = 160  # the issue asks for ~150


def code_lines(source: str) -> int:
    """Lines holding code: blank lines, comments and docstrings do not count."""
    tree = ast.parse(source)
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip and token.type != tokenize.ENDMARKER:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


def test_code_line_counter() -> None:
    source = '"""Doc\nstring."""\n\n# comment\nimport os  # trailing\n\n\ndef f(\n    x,\n):\n    """Doc."""\n    return x\n'
    assert code_lines(source) == 5  # import, def f( x, ), return


def test_the_example_is_small() -> None:
    count = code_lines(EXAMPLE.read_text())
    assert count <= MAX_CODE_LINES, f"{EXAMPLE.name}: {count} lines of code"


def imports_and_core_names(source: str) -> tuple[list[tuple[str, str | None]], set[str]]:
    """``(module, name)`` for each import (name None for ``import module``), and every
    attribute read from the name ``core``."""
    imports: list[tuple[str, str | None]] = []
    core_names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imports += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import"
            imports += [(node.module or "", alias.name) for alias in node.names]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "core"
        ):
            core_names.add(node.attr)
    return imports, core_names


def test_the_example_uses_only_the_public_core_api_and_the_standard_library() -> None:
    imports, core_names = imports_and_core_names(EXAMPLE.read_text())
    core_api = set(websockets_routes.core.__all__)
    top_level = set(websockets_routes.__all__) | {"core"}
    for module, name in imports:
        if module == "websockets_routes.core":
            assert name in core_api, f"{name} is not exported by websockets_routes.core"
        elif module == "websockets_routes":
            assert name in top_level, f"{name} is not a public name of websockets_routes"
        else:
            root = module.split(".")[0]
            assert root in sys.stdlib_module_names or root == "__future__", (
                f"{module} is neither the standard library nor websockets_routes(.core)"
            )
            assert not any(part.startswith("_") for part in module.split(".")[1:]), module
    assert core_names, "the example reaches the core through the name `core`"
    assert core_names <= core_api, f"not exported by the core: {sorted(core_names - core_api)}"


def test_the_import_check_catches_private_paths() -> None:
    imports, names = imports_and_core_names(
        "from websockets_routes.core.session import Session\n"
        "from websockets_routes import core\ncore.session.Session\n"
    )
    assert ("websockets_routes.core.session", "Session") in imports
    assert "session" in names and "session" not in websockets_routes.core.__all__


@pytest.mark.anyio
async def test_serve_forever_returns_once_closed() -> None:
    router = Router()

    @router.route("/hello/{name}")
    async def hello(ws, path):
        await ws.send(f"hello {path.params['name']}")
        assert await ws.recv() == "bye"

    with anyio.fail_after(10):
        async with serve(router, "127.0.0.1", 0) as server:
            assert server.port > 0
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve_forever)
                async with connect(f"ws://127.0.0.1:{server.port}/hello/you", proxy=None) as ws:
                    assert await ws.recv() == "hello you"
                    await ws.send("bye")
                server.close()
            await server.wait_closed()


def test_options_are_checked_when_serve_is_called() -> None:
    with pytest.raises(TypeError):
        serve(Router(), "127.0.0.1", 0, no_such_option=1)
    with pytest.raises(ValueError):
        serve(Router(), "127.0.0.1", 0, max_queue=0)
