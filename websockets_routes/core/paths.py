"""Request targets: parsing, per-segment percent-decoding, and RoutedPath."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

__all__ = ["RoutedPath", "split_target", "split_path", "decode_rest", "BadTarget"]

# RFC 3986 path and query characters (pchar / "/" / "?") plus "%" escapes; no "#".
_TARGET_CHARS = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*\Z")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadTarget(ValueError):
    """The request target cannot be routed: not origin-form, bad bytes or bad escapes."""


class RoutedPath(str):
    """The request target as received (a ``str``), with what routing found.

    - ``params``: the template params, percent-decoded.
    - ``context``: a dict, fresh per connection, for hooks to hand data to ``handle``.
    - ``route``: the view instance (for a function view, an object whose ``handle``
      is the function).
    - ``name``: the route's name, or None.
    - ``template``: the template of the route that matched, or None.
    - ``query``: the raw query string, ``""`` if none.
    """

    params: dict[str, str]
    context: dict[str, Any]
    route: Any
    name: str | None
    template: str | None
    query: str

    def __new__(
        cls,
        target: str,
        params: dict[str, str] | None = None,
        *,
        route: Any = None,
        name: str | None = None,
        template: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> RoutedPath:
        self = super().__new__(cls, target)
        self.params = {} if params is None else params
        self.context = {} if context is None else context
        self.route = route
        self.name = name
        self.template = template
        _, _, query = target.partition("?")
        self.query = query
        return self

    def __repr__(self) -> str:
        return f"RoutedPath({str.__repr__(self)}, params={self.params!r}, name={self.name!r})"

    def __reduce__(self) -> Any:
        state = {"name": self.name, "template": self.template, "context": self.context}
        return (RoutedPath, (str(self), self.params), state)


def split_target(target: str | bytes) -> tuple[str, str]:
    """``(path, query)`` of an origin-form target; BadTarget when it cannot be routed."""
    if isinstance(target, bytes):
        try:
            target = target.decode("ascii")
        except UnicodeDecodeError:
            raise BadTarget("request target is not ASCII") from None
    if not isinstance(target, str) or not _TARGET_CHARS.match(target):
        raise BadTarget(f"request target {target!r} is not an absolute path")
    path, _, query = target.partition("?")
    if "%" in path and _BAD_ESCAPE.search(path):
        raise BadTarget(f"request target {target!r} has a bad percent-escape")
    return path, query


def _decode(segment: str) -> str:
    if "%" not in segment:
        return segment
    return unquote(segment, errors="strict")


def split_path(path: str) -> list[str] | None:
    """The percent-decoded segments of a path (without its leading ``/``).

    The path is split on the raw ``/`` first, so ``%2F`` stays inside its segment.
    None when an escape does not decode as UTF-8.
    """
    parts = path[1:].split("/")
    if "%" not in path:
        return parts
    try:
        return [_decode(p) for p in parts]
    except UnicodeDecodeError:
        return None


def decode_rest(path: str, index: int) -> str | None:
    """The decoded rest of a path from segment ``index`` on, slashes included."""
    rest = path[1:].split("/", index)
    if len(rest) <= index:
        return None
    try:
        return _decode(rest[index])
    except UnicodeDecodeError:
        return None
