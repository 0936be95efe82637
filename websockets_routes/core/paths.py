"""Request targets: parsing, per-segment percent-decoding, and RoutedPath."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

__all__ = ["RoutedPath", "routed_path", "split_target", "split_path", "decode_rest", "BadTarget"]

# RFC 3986 path and query characters (pchar / "/" / "?") plus "%" escapes; no "#".
TARGET_CHARS = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")  # use with fullmatch()
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadTarget(ValueError):
    """The request target cannot be routed: not origin-form, bad bytes or bad escapes."""


class _Lazy:
    """An attribute worked out on first read, then kept in the instance's ``__dict__``.

    A RoutedPath is made for every routed request; most never read ``context`` or
    ``query``, so they are not built up front. (A plain descriptor without the lock
    that ``functools.cached_property`` takes on Python 3.11.)
    """

    __slots__ = ("compute", "name")

    def __init__(self, compute: Any) -> None:
        self.compute = compute
        self.name = compute.__name__

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


class _View:
    """``RoutedPath.route`` of a class view's route: the instance, made on first read.

    Routing stays pure (``decide()`` builds nothing the application wrote): a RoutedPath
    of a class view holds ``view_class`` and makes its instance when someone first needs
    the view (``resolve()``, a transport running ``handle``); the instance is then kept
    as ``route``, one per RoutedPath, so one per connection.
    """

    __slots__ = ()

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        view_class = instance.view_class
        view = None if view_class is None else view_class()
        instance.__dict__["route"] = view
        return view


class RoutedPath(str):
    """The request target as received (a ``str``), with what routing found.

    - ``params``: the template params, percent-decoded.
    - ``context``: a dict, fresh per connection, for hooks to hand data to ``handle``.
    - ``route``: the view instance (for a function view, an object whose ``handle``
      is the function; for a class view, a new instance, made when first read).
    - ``view_class``: the class of a class view, else None.
    - ``name``: the route's name, or None.
    - ``template``: the template of the route that matched, or None.
    - ``query``: the raw query string, ``""`` if none.
    - ``policy``: the route's ``core.policy.RoutePolicy``, None when it sets none.
    """

    params: dict[str, str]
    route: Any = _View()
    view_class: Any = None
    # The route's converters, option overrides and rate limit (core.policy), if any.
    policy: Any = None
    name: str | None
    template: str | None

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
        self = str.__new__(cls, target)
        # Straight into __dict__: setattr on a str subclass costs twice as much.
        attributes = self.__dict__
        attributes["params"] = {} if params is None else params
        attributes["route"] = route
        attributes["name"] = name
        attributes["template"] = template
        if context is not None:
            attributes["context"] = context
        return self

    @classmethod
    def create(cls, raw_path: str, route: Any, params: dict[str, str]) -> RoutedPath:
        """websockets-routes 0.2's constructor, kept for code that called it."""
        return cls(raw_path, dict(params), route=route)

    @_Lazy
    def context(self) -> dict[str, Any]:
        return {}

    @_Lazy
    def query(self) -> str:
        return self.partition("?")[2]

    def __repr__(self) -> str:
        return f"RoutedPath({str.__repr__(self)}, params={self.params!r}, name={self.name!r})"

    def __reduce__(self) -> Any:
        state = {"name": self.name, "template": self.template, "context": self.context}
        return (RoutedPath, (str(self), self.params), state)


def routed_path(
    target: str,
    params: dict[str, str],
    route: Any,
    name: str | None,
    template: str | None,
    view_class: Any = None,
) -> RoutedPath:
    """``RoutedPath(target, params, route=..., name=..., template=...)``, without the
    keyword-argument handling: the router makes one per request.

    With ``view_class`` (``route`` then None), ``.route`` is ``view_class()``, made on
    its first read rather than now."""
    self = _new_str(RoutedPath, target)
    attributes = self.__dict__
    attributes["params"] = params
    if view_class is None:
        attributes["route"] = route
    else:
        attributes["view_class"] = view_class
    attributes["name"] = name
    attributes["template"] = template
    return self


_new_str = str.__new__


def without_query(target: str) -> str:
    """What logs show of a target: the path alone, since a query may carry a token."""
    return str(target).partition("?")[0]


def split_target(target: str | bytes) -> tuple[str, str]:
    """``(path, query)`` of an origin-form target; BadTarget when it cannot be routed."""
    if isinstance(target, bytes):
        try:
            target = target.decode("ascii")
        except UnicodeDecodeError:
            raise BadTarget("request target is not ASCII") from None
    if not isinstance(target, str) or not TARGET_CHARS.fullmatch(target):
        raise BadTarget(f"request target {target!r} is not an absolute path")
    path, _, query = target.partition("?")
    if "%" in path and BAD_ESCAPE.search(path):
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
    parts = path[1:].split("/", index)
    if len(parts) <= index:
        return None
    rest = parts[index]
    if "%" not in rest:
        return rest
    try:
        return unquote(rest, errors="strict")
    except UnicodeDecodeError:
        return None
