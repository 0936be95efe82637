"""websockets_routes uses only the public API of its dependencies.

A private name of a dependency (``anyio._backends``, ``wsproto.frame_protocol._XOR_TABLE``,
``transport._sock``) may change or vanish in any release, patch releases included, so a
version range in pyproject.toml says nothing about code that reaches for one. This test
walks the AST of every module under ``websockets_routes/`` and lists each such use as
``file:line: what``.

What counts as a private use of a dependency (``DEPENDENCIES``, by top-level module name):

* ``import dep._x`` / ``import dep.a._x``: a segment of the module path after the first that
  starts with ``_`` and is not a dunder (``__future__``, ``__main__`` are fine);
* ``from dep._x import y`` (same rule for the module path) and ``from dep import _x``;
* an attribute ``_x`` reached from a name that is bound to a dependency module or to
  something imported from one (``anyio._backends``, ``wsproto.frame_protocol._XOR_TABLE``,
  ``asyncio.get_running_loop()._selector``), whether or not we have a ``_x`` of our own;
* a string constant that is a dotted name ``dep._x...`` (``"anyio._backends._asyncio"``
  given to ``sys.modules.get``, ``importlib.import_module``, or compared to ``__module__``);
* ``getattr``/``hasattr``/``setattr``/``delattr`` with a string literal ``"_x"`` on an object
  other than ``self``/``cls``: a reflective reach into somebody else's private attribute;
* any other attribute ``obj._x`` (private: leading underscore, not a dunder). Types are not
  known to an AST walk, so the rule is: allowed only when ``obj`` is ``self``, ``cls`` or
  ``super()``, or when ``_x`` is a name that websockets_routes itself defines: a module- or
  class-level ``def``/``class``/assignment target (dataclass and NamedTuple fields
  included), an attribute assigned through ``self.``/``cls.``, or a ``__slots__`` entry.
  Every other private attribute (``transport._sock``, ``loop._make_socket_transport``) is
  taken to be a foreign one.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "websockets_routes"

# Top-level import names of the dependencies (Routes is imported as ``routes``).
DEPENDENCIES = frozenset(
    {
        "anyio",
        "asyncio",
        "trio",
        "wsproto",
        "h11",
        "routes",
        "websockets",
        "uvloop",
        "redis",
        "coredis",
        "prometheus_client",
        "starlette",
        "uvicorn",
        "hypercorn",
    }
)

REFLECTION = frozenset({"getattr", "hasattr", "setattr", "delattr"})
# Standard-library names that start with "_" and are documented public API.
DOCUMENTED_PUBLIC = frozenset({"os._exit"})
SELF_NAMES = frozenset({"self", "cls"})

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?::[A-Za-z_]\w*)?")


def is_private(name: str) -> bool:
    """``_x`` and ``__x`` are private; dunders (``__x__``) and a lone ``_`` are not."""
    if not name.startswith("_") or name == "_":
        return False
    return not (name.startswith("__") and name.endswith("__") and len(name) > 4)


def private_segment(module: str) -> str | None:
    """The first private segment of a dotted module path after the top-level one."""
    for segment in module.split(".")[1:]:
        if is_private(segment):
            return segment
    return None


def dependency_of(module: str | None) -> str | None:
    if not module:
        return None
    top = module.split(".", 1)[0]
    return top if top in DEPENDENCIES else None


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    name: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name}: {self.why}"


# -- our own private names -------------------------------------------------------------


def _target_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _target_names(element)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _slot_names(value: ast.expr) -> Iterator[str]:
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        yield value.value
    elif isinstance(value, (ast.Tuple, ast.List, ast.Set)):
        for element in value.elts:
            if isinstance(element, ast.Constant) and isinstance(element.value, str):
                yield element.value
    elif isinstance(value, ast.Dict):
        for key in value.keys:
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                yield key.value


def _body_names(body: Iterable[ast.stmt]) -> Iterator[str]:
    """Names a module or class body defines: defs, classes, assignment targets, slots."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield stmt.name
            if isinstance(stmt, ast.ClassDef):
                yield from _body_names(stmt.body)
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                names = list(_target_names(target))
                yield from names
                if "__slots__" in names:
                    yield from _slot_names(stmt.value)
        elif isinstance(stmt, ast.AnnAssign):
            names = list(_target_names(stmt.target))
            yield from names  # dataclass / NamedTuple fields, annotated class attributes
            if "__slots__" in names and stmt.value is not None:
                yield from _slot_names(stmt.value)
        elif isinstance(stmt, (ast.If, ast.Try, ast.With, ast.AsyncWith)):
            # definitions under ``if TYPE_CHECKING:``, ``try: ... except ImportError:``
            for block in ("body", "orelse", "finalbody"):
                yield from _body_names(getattr(stmt, block, ()))
            for handler in getattr(stmt, "handlers", ()):
                yield from _body_names(handler.body)


def own_private_names(trees: Iterable[ast.AST]) -> frozenset[str]:
    """Every private name websockets_routes defines somewhere (see the module docstring)."""
    names: set[str] = set()
    for tree in trees:
        if isinstance(tree, ast.Module):
            names.update(_body_names(tree.body))
        for node in ast.walk(tree):
            # ``self._x = ...`` / ``cls._x: int = ...`` anywhere, nested targets included
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                targets = [node.target]
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                targets = [node.optional_vars]
            stack = targets
            while stack:
                target = stack.pop()
                if isinstance(target, (ast.Tuple, ast.List)):
                    stack.extend(target.elts)
                elif isinstance(target, ast.Starred):
                    stack.append(target.value)
                elif (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id in SELF_NAMES
                ):
                    names.add(target.attr)
    return frozenset(name for name in names if is_private(name))


# -- the check ---------------------------------------------------------------------------


def _dependency_bindings(tree: ast.AST) -> dict[str, str]:
    """Local name -> dependency module, for every ``import``/``from`` of a dependency."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                dep = dependency_of(alias.name)
                if dep is None:
                    continue
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    bound[alias.name.split(".", 1)[0]] = dep
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if dependency_of(node.module) is None:
                continue
            for alias in node.names:
                if alias.name != "*":
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def _root(node: ast.expr) -> ast.expr:
    """The innermost object of ``a.b().c[0].d``: ``a``."""
    while True:
        if isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return node


def _is_self(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in SELF_NAMES
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


def _describe(node: ast.expr) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every expression node
        return type(node).__name__


def check_tree(tree: ast.AST, path: str, own: frozenset[str]) -> list[Violation]:
    found: list[Violation] = []
    bound = _dependency_bindings(tree)

    def add(node: ast.AST, name: str, why: str) -> None:
        found.append(Violation(path, getattr(node, "lineno", 0), name, why))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                dep = dependency_of(alias.name)
                segment = private_segment(alias.name)
                if dep and segment:
                    add(node, alias.name, f"imports private module {segment!r} of {dep}")

        elif isinstance(node, ast.ImportFrom):
            dep = dependency_of(node.module) if node.level == 0 else None
            if dep is None:
                continue
            assert node.module is not None
            segment = private_segment(node.module)
            if segment:
                add(node, node.module, f"imports from private module {segment!r} of {dep}")
            for alias in node.names:
                if is_private(alias.name):
                    add(
                        node,
                        f"{node.module}.{alias.name}",
                        f"imports private name {alias.name!r} of {dep}",
                    )

        elif isinstance(node, ast.Attribute):
            if not is_private(node.attr):
                continue
            root = _root(node.value)
            if isinstance(root, ast.Name) and root.id in bound:
                origin = bound[root.id]
                add(
                    node,
                    _describe(node),
                    f"private attribute {node.attr!r} of {dependency_of(origin)} "
                    f"({root.id} is {origin})",
                )
            elif _is_self(node.value) or node.attr in own:
                continue
            elif (_describe(node)) in DOCUMENTED_PUBLIC:
                continue
            else:
                add(
                    node,
                    _describe(node),
                    f"private attribute {node.attr!r} of an object that is not ours "
                    "(not self/cls, and websockets_routes defines no such name)",
                )

        elif isinstance(node, ast.Call):
            func = node.func
            if not (isinstance(func, ast.Name) and func.id in REFLECTION):
                continue
            if len(node.args) < 2:
                continue
            obj, attr = node.args[0], node.args[1]
            if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
                continue
            if is_private(attr.value) and not _is_self(obj):
                add(
                    node,
                    f"{func.id}({_describe(obj)}, {attr.value!r})",
                    f"{func.id} of private attribute {attr.value!r} of a foreign object",
                )

        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if not _DOTTED.fullmatch(text):
                continue
            module = text.split(":", 1)[0]
            dep = dependency_of(module)
            segment = private_segment(module)
            if dep and segment:
                add(
                    node, repr(node.value), f"string names private module/name {segment!r} of {dep}"
                )

    return sorted(found)


def check_sources(sources: Mapping[str, str]) -> list[Violation]:
    """Check {path: source}; our own private names are collected from all of them first."""
    trees = {path: ast.parse(source, filename=path) for path, source in sources.items()}
    own = own_private_names(trees.values())
    found: list[Violation] = []
    for path, tree in trees.items():
        found.extend(check_tree(tree, path, own))
    return sorted(found)


def package_sources() -> dict[str, str]:
    root = PACKAGE.parent
    return {
        str(path.relative_to(root)): path.read_text(encoding="utf-8")
        for path in sorted(PACKAGE.rglob("*.py"))
    }


# -- tests ---------------------------------------------------------------------------------


def test_websockets_routes_uses_only_public_api_of_its_dependencies() -> None:
    sources = package_sources()
    assert sources, f"no modules found under {PACKAGE}"
    violations = check_sources(sources)
    assert not violations, (
        f"{len(violations)} use(s) of a dependency's private name in websockets_routes/:\n"
        + "\n".join(f"  {v}" for v in violations)
    )


def _check(source: str, **others: str) -> list[str]:
    sources = {"snippet.py": source}
    sources.update({f"{name}.py": text for name, text in others.items()})
    return [f"{v.line}: {v.name}" for v in check_sources(sources)]


def test_checker_catches_each_pattern_and_allows_our_own_names() -> None:
    caught = {
        "import anyio._backends": "1: anyio._backends",
        "import anyio._backends._asyncio as b": "1: anyio._backends._asyncio",
        "import wsproto.a._b": "1: wsproto.a._b",
        "from anyio._backends._asyncio import SocketStream": "1: anyio._backends._asyncio",
        "from wsproto.frame_protocol import _XOR_TABLE": "1: wsproto.frame_protocol._XOR_TABLE",
        "from trio import _core": "1: trio._core",
        "import anyio\nanyio._backends": "2: anyio._backends",
        "import wsproto.frame_protocol\nwsproto.frame_protocol._XOR_TABLE": (
            "2: wsproto.frame_protocol._XOR_TABLE"
        ),
        "import wsproto.frame_protocol as fp\nx = fp._XOR_TABLE": "2: fp._XOR_TABLE",
        "from anyio.abc import SocketStream\nSocketStream._x": "2: SocketStream._x",
        "import asyncio\nasyncio.get_running_loop()._selector": (
            "2: asyncio.get_running_loop()._selector"
        ),
        "import sys\nsys.modules.get('anyio._backends._asyncio')": (
            "2: 'anyio._backends._asyncio'"
        ),
        "t = type(x).__module__ == 'anyio._backends._asyncio'": "1: 'anyio._backends._asyncio'",
        "import importlib\nimportlib.import_module('trio._core')": "2: 'trio._core'",
        "getattr(stream, '_transport', None)": "1: getattr(stream, '_transport')",
        "hasattr(stream, '_protocol')": "1: hasattr(stream, '_protocol')",
        "setattr(stream, '_protocol', 1)": "1: setattr(stream, '_protocol')",
        "sock = transport._sock": "1: transport._sock",
        "key = x._masking_key": "1: x._masking_key",
        "make = loop._make_socket_transport": "1: loop._make_socket_transport",
        "ws.conn._sock = None": "1: ws.conn._sock",
    }
    for source, expected in caught.items():
        assert expected in _check(source), (source, _check(source))

    # a dependency's private name stays private even when we have one of the same name
    assert _check("import anyio\nclass A:\n    _backends = 1\nanyio._backends") == [
        "4: anyio._backends"
    ]

    allowed = [
        "from __future__ import annotations",
        "import __future__\nimport anyio.__main__",
        "from anyio import __version__",
        "import websockets\nv = websockets.__version__",
        "class A:\n    def f(self):\n        return self._x\n    @classmethod\n"
        "    def g(cls):\n        return cls._y",
        "class A(B):\n    def f(self):\n        return super()._x",
        "def _helper():\n    pass\nimport snippet\nsnippet._helper()",
        "x = other._helper()",  # defined in another of our modules, below
        "class C:\n    __slots__ = ('_slot',)\nc = C()\nc._slot = 1\nprint(c._slot)",
        "import dataclasses\n@dataclasses.dataclass\nclass D:\n    _field: int = 0\n"
        "print(D()._field)",
        "class E:\n    def __init__(self):\n        self._mine = 1\ndef f(e):\n    return e._mine",
        "_CONST = 1\nimport snippet\nsnippet._CONST",
        "getattr(self, '_x')",
        "getattr(obj, '__name__')",
        "getattr(obj, name)",
        "import asyncio\nasyncio.get_running_loop().__class__",
        "from .core import _private_of_ours",
        "from websockets_routes.core import _private_of_ours",
        "s = 'websockets_routes._x'",
        "s = 'self._x is a sentence, not a module path'",
        "import websockets\nwebsockets.asyncio.server.serve",
        "x._",
    ]
    for source in allowed:
        assert _check(source, other="def _helper():\n    pass\n") == [], source

    # the report names file and line
    (violation,) = check_sources({"pkg/mod.py": "\n\nimport trio._core\n"})
    assert str(violation).startswith("pkg/mod.py:3: trio._core: ")
