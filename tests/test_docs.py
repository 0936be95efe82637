"""Every code example of README.md and docs/*.md runs as written.

How a fenced block is taken:

- ```pycon blocks (``>>>``) of one file run in order as one doctest session, with
  ELLIPSIS (``0x...`` in an expected value).
- A ```python block whose first line is ``# NAME.py`` is a file: it is written under
  that name into the directory where the same document's later blocks run, so that they
  can import it (``from myapp import router``). The repository's root is on the path too
  (``from examples.chat.app import router``).
- A pytest module (a block named ``test_*.py``, or with a top-level ``test_``
  function) runs with pytest there, with a ``conftest.py`` block before it.
- An outline (API signatures: ``def``/``class`` lines without bodies, dataclass
  fields) must parse once each declaration gets ``: ...``; its imports run.
- Any other ```python block is a whole program, run with a timeout: it must exit 0,
  with no traceback. A program that mentions port 8765 (the docs' port) serves until
  stopped: it runs with a free port in place of 8765 and must answer HTTP there, still
  running, before the test stops it. Any other program serves on port 0 and stops by
  itself.
- A block right after ``<!-- fragment -->`` is not run: an excerpt of a bigger file,
  or calls that need names from around them. Use it only where a block truly cannot
  run.
"""

from __future__ import annotations

import ast
import doctest
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.S | re.M,
)
FRAGMENT = "<!-- fragment -->"
FILE_NAME = re.compile(r"#\s*(?P<name>[\w-]+\.py)\s*$")
SERVE_PORT = "8765"
PROGRAM_TIMEOUT = 60.0
SERVER_TIMEOUT = 30.0
ERRORS_IN_OUTPUT = ("Traceback (most recent call last)", "Exception ignored", "Task was destroyed")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    fragment: bool

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def file_name(self) -> str | None:
        first = self.code.split("\n", 1)[0]
        match = FILE_NAME.fullmatch(first)
        return match["name"] if match else None


@cache
def blocks_of(doc: Path) -> tuple[Block, ...]:
    text = doc.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        lang = match["lang"].lower()
        lang = "python" if lang == "py" else lang
        before = text[: match.start()].rstrip()
        indent = match["indent"]
        body = "".join(
            line[len(indent) :] if line.startswith(indent) else line
            for line in match["body"].splitlines(keepends=True)
        )
        found.append(
            Block(
                doc=doc,
                line=text.count("\n", 0, match.start()) + 1,
                lang=lang,
                code=body,
                fragment=before.endswith(FRAGMENT),
            )
        )
    return tuple(found)


def python_blocks() -> list[Block]:
    return [b for doc in DOCS for b in blocks_of(doc) if b.lang == "python" and not b.fragment]


def files_before(block: Block) -> list[Block]:
    """The named-file blocks of the same document above ``block``."""
    return [
        b
        for b in blocks_of(block.doc)
        if b.line < block.line and b.lang == "python" and not b.fragment and b.file_name
    ]


# Outlines: API signatures.

DECLARATION = re.compile(r"[ \t]*(async[ \t]+def|def|class)[ \t]")


def _depth(line: str) -> int:
    code = line.split("#", 1)[0]
    return sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")


def _with_body(declaration: str) -> str:
    head = declaration.rstrip()
    if head.split("#", 1)[0].rstrip().endswith(":"):
        return declaration
    head = head.split("#", 1)[0].rstrip() if "#" in head.splitlines()[-1] else head
    indent = head[: len(head) - len(head.lstrip())]
    if head.lstrip().startswith("class") and "(" in head:
        try:  # bases, or a class shown with its constructor's parameters?
            ast.parse(textwrap.dedent(head) + ": ...")
        except SyntaxError:
            head = indent + "def" + head.lstrip()[len("class") :]
    return head + ": ..."


def as_outline(code: str) -> ast.Module | None:
    """The block as an outline (imports, and declarations whose bodies are only fields,
    docstrings or ``...``), with ``: ...`` after each declaration that has no body; None
    when it is not one."""
    lines = code.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not DECLARATION.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        chunk, depth = [lines[i]], _depth(lines[i])
        while depth > 0 and i + 1 < len(lines):
            i += 1
            chunk.append(lines[i])
            depth += _depth(lines[i])
        out.append(_with_body("\n".join(chunk)))
        i += 1
    try:
        module = ast.parse("\n".join(out))
    except SyntaxError:
        return None

    def only_declarations(body: list[ast.stmt], in_class: bool) -> bool:
        for node in body:
            if isinstance(node, ast.Expr) and isinstance(
                node.value, (ast.Constant, ast.Name, ast.Attribute)
            ):
                continue  # a docstring, ..., or a name listed
            if isinstance(node, ast.Pass) or (in_class and isinstance(node, ast.AnnAssign)):
                continue
            if isinstance(node, ast.ClassDef) and only_declarations(node.body, True):
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and only_declarations(
                node.body, False
            ):
                continue
            return False
        return True

    top = [n for n in module.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    if not top or not only_declarations(top, False):
        return None
    return module


def is_pytest_module(block: Block) -> bool:
    name = block.file_name
    if name is not None:
        return name.startswith("test_")
    try:
        module = ast.parse(block.code)
    except SyntaxError:
        return False
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
        for node in module.body
    )


# Running blocks.


def prepare(block: Block, directory: Path) -> dict[str, str]:
    for earlier in files_before(block):
        assert earlier.file_name is not None
        (directory / earlier.file_name).write_text(earlier.code, encoding="utf-8")
    path = os.pathsep.join([str(directory), str(ROOT)])
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")


def where(block: Block) -> str:
    return f"{block.id} (```{block.lang} block at line {block.line} of {block.doc.name})"


def check_output(block: Block, returncode: int | None, stdout: str, stderr: str) -> None:
    output = f"--- stdout\n{stdout[-4000:]}\n--- stderr\n{stderr[-4000:]}"
    if returncode not in (None, 0):
        pytest.fail(f"{where(block)} exited with {returncode}\n{output}")
    for error in ERRORS_IN_OUTPUT:
        if error in stderr:
            pytest.fail(f"{where(block)} printed {error!r}\n{output}")


def run_pytest(block: Block, directory: Path, env: dict[str, str]) -> None:
    name = block.file_name or f"test_block_{block.line}.py"
    (directory / name).write_text(block.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         "--timeout", str(int(PROGRAM_TIMEOUT)), name],
        cwd=directory, env=env, capture_output=True, text=True, timeout=PROGRAM_TIMEOUT * 3,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"{where(block)}: pytest failed\n{result.stdout[-6000:]}\n{result.stderr}")
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers_http(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = sock.recv(64)
    except OSError:
        return False
    return re.match(rb"HTTP/1\.1 \d{3} ", head) is not None


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """End the program and everything it started (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers it left, if any
    except ProcessLookupError:
        pass
    return proc.communicate(timeout=10)


def run_server(block: Block, script: Path, env: dict[str, str]) -> None:
    port = free_port()
    script.write_text(block.code.replace(SERVE_PORT, str(port)), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, script.name], cwd=script.parent, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT
        serving = False
        while time.monotonic() < deadline and proc.poll() is None:
            if answers_http(port):
                serving = True
                break
            time.sleep(0.1)
        time.sleep(0.3)
        running = proc.poll() is None
    finally:
        stdout, stderr = stop(proc)
    if not running:
        check_output(block, proc.returncode, stdout, stderr)
        pytest.fail(
            f"{where(block)} serves until stopped (it says port {SERVE_PORT}) but it "
            f"ended by itself with {proc.returncode}\n{stdout}\n{stderr}"
        )
    assert serving, f"{where(block)} did not answer HTTP in {SERVER_TIMEOUT} s\n{stderr}"
    check_output(block, None, stdout, stderr)


def run_program(block: Block, script: Path, env: dict[str, str]) -> None:
    script.write_text(block.code, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, script.name], cwd=script.parent, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=PROGRAM_TIMEOUT)
    except subprocess.TimeoutExpired:
        stdout, stderr = stop(proc)
        pytest.fail(
            f"{where(block)} did not stop by itself in {PROGRAM_TIMEOUT} s (a program "
            f"that serves until stopped says port {SERVE_PORT})\n{stdout}\n{stderr}"
        )
    finally:
        stop(proc)
    check_output(block, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("block", python_blocks(), ids=lambda b: b.id)
def test_python_block(block: Block, tmp_path: Path) -> None:
    outline = None if block.file_name else as_outline(block.code)
    if outline is not None:
        imports = [n for n in outline.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        exec(compile(ast.Module(body=imports, type_ignores=[]), block.id, "exec"), {})
        return
    env = prepare(block, tmp_path)
    if is_pytest_module(block):
        run_pytest(block, tmp_path, env)
        return
    name = block.file_name
    script = tmp_path / (name or f"block_{block.line}.py")
    if name == "conftest.py":
        compile(block.code, str(script), "exec")
    elif SERVE_PORT in block.code:
        run_server(block, script, env)
    else:
        run_program(block, script, env)


@pytest.mark.parametrize(
    "doc",
    [d for d in DOCS if any(b.lang == "pycon" and not b.fragment for b in blocks_of(d))],
    ids=lambda d: str(d.relative_to(ROOT)),
)
def test_pycon_blocks_run_as_one_session(doc: Path) -> None:
    """As docs/api.md says: "Short examples marked >>> run in order, as one session"."""
    parser = doctest.DocTestParser()
    examples: list[doctest.Example] = []
    for block in blocks_of(doc):
        if block.lang != "pycon" or block.fragment:
            continue
        for example in parser.get_examples(block.code, block.id):
            example.lineno += block.line  # doctest reports lineno + 1: the file's line
            examples.append(example)
    session = doctest.DocTest(examples, {"__name__": "__doc_session__"}, doc.name, str(doc), 0, None)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    runner.run(session, out=report.append)
    assert runner.failures == 0, "".join(report)
    assert runner.tries == len(examples) > 0


def test_fragment_markers_stand_right_before_a_block() -> None:
    """A ``<!-- fragment -->`` away from a fence would leave a block run by surprise, or
    mark nothing; every marker must be followed by a code block."""
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        marked = sum(b.fragment for b in blocks_of(doc))
        assert text.count(FRAGMENT) == marked, f"{doc.name}: a {FRAGMENT} not before a ``` fence"


def test_the_outline_rules() -> None:
    """The rules above, on small cases: signatures are outlines, programs are not."""
    assert as_outline("class Router(*, close_unmatched: bool = False,\n    x: int = 1)\n")
    assert as_outline("def route(template: str) -> Callable[[V], V]\n")
    assert as_outline("@dataclass(frozen=True)\nclass Accept:\n    path: str\n    def view() -> Any\n")
    assert as_outline("from x import y\n\nclass C(Exception):\n    code: int\n")
    assert as_outline("import asyncio\nasyncio.run(main())\n") is None
    assert as_outline("x = 1\n") is None
    assert as_outline("def f():\n    return 1\n") is None
    assert as_outline("def f(:\n") is None
    quickstart = Block(ROOT / "README.md", 1, "python", "# myapp.py\nx = 1\n", False)
    assert quickstart.file_name == "myapp.py"
    assert is_pytest_module(Block(ROOT / "x.md", 1, "python", "async def test_x(): pass\n", False))
