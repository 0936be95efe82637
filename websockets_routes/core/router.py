"""The Router: route registration, mounting, url building, matching and decisions."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from .decisions import Decision
from .handshake import decide, resolve
from .http import Request
from .matcher import Matcher
from .paths import RoutedPath, split_path
from .policy import INHERIT, RoutePolicy, check_rate_limit, make_policy
from .templates import Template, compile_template, match_segments

__all__ = ["Router", "Route", "FunctionView", "check_router", "resolves_in_steps"]

V = TypeVar("V")
RouteKind = Literal["websocket", "http"]


_new_str = str.__new__


class FunctionView:
    """The view object of a function route: ``handle`` is the function itself."""

    __slots__ = ("handle",)

    def __init__(self, handle: Callable[..., Any]) -> None:
        self.handle = handle

    def __repr__(self) -> str:
        return f"FunctionView({getattr(self.handle, '__qualname__', self.handle)!r})"


def _is_async(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an async callable object
    )


@dataclass(frozen=True, slots=True)
class Route:
    """One registered route: its compiled template, its view and its options."""

    template: Template
    endpoint: Any  # what was decorated
    name: str | None
    kind: RouteKind
    subprotocols: tuple[str, ...] | None
    origins: tuple[str | None, ...] | None
    requirements: dict[str, str] | None
    # What a transport's ``route.handle(ws, path)`` calls for a function view: the view
    # itself, or an adapter for a view of ``(ws)`` alone. None: the endpoint itself.
    handle: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    # Converters, option overrides and rate limit (``core.policy``); None: none set.
    policy: RoutePolicy | None = field(default=None, compare=False)
    # (shared view, view class, name, template source), read together for every match.
    # A function view holds nothing per connection, so one FunctionView serves them all;
    # a class view (shared None) gets a new instance per connection, made by RoutedPath
    # when its .route is first read.
    routing: tuple[FunctionView | None, type | None, str | None, str] = field(
        init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        endpoint = self.endpoint
        routing: tuple[FunctionView | None, type | None, str | None, str]
        if isinstance(endpoint, type):
            routing = (None, endpoint, self.name, self.template.source)
        else:
            handle = endpoint if self.handle is None else self.handle
            routing = (FunctionView(handle), None, self.name, self.template.source)
        object.__setattr__(self, "routing", routing)

    def view(self) -> Any:
        """The view for one connection: a new instance for a class view."""
        shared = self.routing[0]
        return self.endpoint() if shared is None else shared

    def mounted(self, prefix: str, owner: Router) -> Route:
        """This route under ``prefix``, keeping ``owner``'s router-wide options.

        Without them, a route of an included router would fall back to the including
        router's ``origins``: an allow-list set on the included router would vanish.
        """
        template = compile_template(prefix + self.template.source, self.requirements)
        return Route(
            template,
            self.endpoint,
            self.name,
            self.kind,
            self.subprotocols if self.subprotocols is not None else owner.subprotocols,
            self.origins if self.origins is not None else owner.origins,
            self.requirements,
            self.handle,
            self.policy,
        )


def _path_attributes(route: Route) -> dict[str, Any]:
    """What each RoutedPath of ``route`` holds besides its params (Router.match() sets
    the same): the shared view or the view class, name, template, and policy if any."""
    shared, view_class, name, source = route.routing
    attributes: dict[str, Any] = (
        {"route": shared} if view_class is None else {"view_class": view_class}
    )
    attributes["name"] = name
    attributes["template"] = source
    if route.policy is not None:
        attributes["policy"] = route.policy
    return attributes


def _describe(endpoint: Any) -> str:
    """A view as an error message names it: module.qualname, else its repr."""
    qualname = getattr(endpoint, "__qualname__", None)
    if not isinstance(qualname, str):
        return repr(endpoint)
    module = getattr(endpoint, "__module__", None)
    return f"{module}.{qualname}" if isinstance(module, str) else qualname


def _positional_args(func: Any, choices: tuple[int, ...]) -> int | None:
    """The first of ``choices`` (a number of positional arguments) that ``func`` can
    be called with, None if none; the largest when its signature cannot be read."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin, say: nothing to check
        return choices[0]
    for count in choices:
        try:
            signature.bind(*range(count))
        except TypeError:
            continue
        return count
    return None


def _signature(func: Any) -> str:
    try:
        return str(inspect.signature(func))
    except (TypeError, ValueError):  # pragma: no cover - only called after a bind failed
        return "(?)"


def _ws_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """``handle(ws, path)`` for a view of ``(ws)`` alone (websockets 14+ style), which
    reads the path as ``ws.path``."""

    def handle(ws: Any, path: Any, /) -> Any:
        return view(ws)

    try:
        functools.update_wrapper(handle, view)
    except (AttributeError, TypeError):  # pragma: no cover - an object without a __dict__
        pass
    return handle


def _check_view(endpoint: Any, template: str, kind: RouteKind) -> Callable[..., Any] | None:
    """Check a view when it is decorated; for a function view of ``(ws)`` alone, the
    ``handle(ws, path)`` that calls it."""
    if kind == "http":
        if not callable(endpoint) or isinstance(endpoint, type):
            raise TypeError(f"HTTP route {template!r}: the view must be a function of (request)")
        return None
    if isinstance(endpoint, type):
        handle = getattr(endpoint, "handle", None)
        if handle is None or not _is_async(handle):
            raise TypeError(
                f"route {template!r}: class view {endpoint.__qualname__} needs an "
                "'async def handle(self, ws, path)' method"
            )
        # A plain function in the class is called through an instance: self comes first.
        plain = inspect.isfunction(inspect.getattr_static(endpoint, "handle", None))
        if _positional_args(handle, (3,) if plain else (2,)) is None:
            raise TypeError(
                f"route {template!r}: class view {endpoint.__qualname__} has "
                f"handle{_signature(handle)}; it is called as handle(self, ws, path)"
            )
        hook = getattr(endpoint, "process_request", None)
        if hook is not None and not callable(hook):
            raise TypeError(f"route {template!r}: process_request must be a method")
        plain = inspect.isfunction(inspect.getattr_static(endpoint, "process_request", None))
        if hook is not None and _positional_args(hook, (3,) if plain else (2,)) is None:
            raise TypeError(
                f"route {template!r}: class view {endpoint.__qualname__} has "
                f"process_request{_signature(hook)}; it is called as "
                "process_request(self, path, headers)"
            )
        return None
    if not _is_async(endpoint):
        raise TypeError(
            f"route {template!r}: the view must be an 'async def view(ws, path)' "
            "(or 'view(ws)') function or a class with an async handle(), "
            f"not {endpoint!r}"
        )
    count = _positional_args(endpoint, (2, 1))
    if count is None:
        raise TypeError(
            f"route {template!r}: view {_describe(endpoint)} takes "
            f"{_signature(endpoint)}; a view takes (ws, path) or (ws), where ws.path is "
            "the RoutedPath"
        )
    return _ws_only(endpoint) if count == 1 else None


def _strings(values: Sequence[Any] | None, what: str, template: str) -> tuple[Any, ...] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise TypeError(f"route {template!r}: {what} must be a list of strings, not one string")
    return tuple(values)


class Router:
    """Routes WebSocket handshakes (and plain-HTTP GETs) to views by URL template.

    ``close_unmatched``: an unknown path completes the handshake and closes with 4040
    instead of answering HTTP 404. ``subprotocols`` and ``origins`` apply to every route
    that does not set its own, and ``rate_limit`` to every WebSocket route that sets
    none (``core.policy``; each route keeps its own count). ``clock``: the time rate
    limits are counted in when ``resolve()`` gets no ``now``. ``observer``: what servers
    report handshakes and connections to (``core.observe``; ``metrics.Metrics`` sets it).
    """

    def __init__(
        self,
        *,
        close_unmatched: bool = False,
        subprotocols: Sequence[str] | None = None,
        origins: Sequence[str | None] | None = None,
        rate_limit: tuple[int, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.close_unmatched = close_unmatched
        self.subprotocols = _strings(subprotocols, "subprotocols", "<router>")
        self.origins = _strings(origins, "origins", "<router>")
        self.rate_limit = check_rate_limit(rate_limit, "Router")
        # The time rate limits are counted in, when resolve() is given no ``now``.
        self.clock = clock
        self._matcher: Matcher[Route] = Matcher()
        # No route converts yet: lookup() and match() are the matcher's own, one call
        # less per request; _add() of a route with converters puts the class's back.
        if type(self).lookup is Router.lookup:
            self.lookup = self._matcher.match  # type: ignore[method-assign]
        if type(self).match is Router.match:
            self.match = self._matcher.routed  # type: ignore[method-assign]
        self._names: dict[str, Route] = {}
        self._templates: dict[tuple[str, str], Route] = {}  # by (kind, template text)
        # Views already checked, by id (with the view, so that a reused id never
        # matches): one view on many routes has its signature read once.
        self._checked: dict[int, tuple[Any, Callable[..., Any] | None]] = {}
        self._mounts: list[tuple[Router, str]] = []
        self.observer: Any = None

    # Registration

    def route(
        self,
        template: str,
        *,
        name: str | None = None,
        subprotocols: Sequence[str] | None = None,
        origins: Sequence[str | None] | None = None,
        requirements: dict[str, str] | None = None,
        convert: dict[str, Callable[[str], Any]] | None = None,
        max_size: int | None = INHERIT,
        max_queue: int | None = INHERIT,
        compression: str | None | bool = INHERIT,
        ping_interval: float | None = INHERIT,
        ping_timeout: float | None = INHERIT,
        rate_limit: tuple[int, float] | None | bool = None,
        rate_limit_key: Callable[[Request], Any] | None = None,
    ) -> Callable[[V], V]:
        """Decorate an async ``view(ws, path)`` or a class with ``async handle``.

        ``convert``, the server options and the rate limit are per-route policy
        (``core.policy``): an option left out is the server's."""
        compiled = compile_template(template, requirements)
        subs = _strings(subprotocols, "subprotocols", template)
        allowed = _strings(origins, "origins", template)
        self._check_name(name, template)
        overrides = {
            "max_size": max_size,
            "max_queue": max_queue,
            "compression": compression,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
        }
        policy = make_policy(
            compiled,
            "websocket",
            convert=convert,
            overrides=overrides,
            rate_limit=rate_limit,
            rate_limit_key=rate_limit_key,
            default_rate_limit=self.rate_limit,
        )

        def decorator(endpoint: V) -> V:
            checked = self._checked.get(id(endpoint))
            if checked is not None and checked[0] is endpoint:
                handle = checked[1]
            else:
                handle = _check_view(endpoint, template, "websocket")
                self._checked[id(endpoint)] = (endpoint, handle)
            self._check_free("websocket", template, name)
            self._add(
                Route(
                    compiled, endpoint, name, "websocket", subs, allowed, requirements, handle, policy
                )
            )
            return endpoint

        return decorator

    def http(
        self,
        template: str,
        *,
        name: str | None = None,
        convert: dict[str, Callable[[str], Any]] | None = None,
    ) -> Callable[[V], V]:
        """Decorate ``view(request)`` answering GET/HEAD with (status, headers, body),
        bytes or str. ``convert``: as for ``route()``."""
        compiled = compile_template(template)
        self._check_name(name, template)
        policy = make_policy(
            compiled, "http", convert=convert, overrides={}, rate_limit=False, rate_limit_key=None
        )

        def decorator(endpoint: V) -> V:
            _check_view(endpoint, template, "http")
            self._check_free("http", template, name)
            self._add(Route(compiled, endpoint, name, "http", None, None, None, None, policy))
            return endpoint

        return decorator

    def include(self, prefix: str, other: Router) -> None:
        """Mount ``other``'s routes under ``prefix``, now and as it gains more."""
        if not isinstance(other, Router):
            raise TypeError(f"include() takes a Router, not {type(other).__name__}")
        if other is self:
            raise ValueError("a router cannot include itself")
        if any(ancestor is other for ancestor in self._ancestors()):
            # Each router forwards new routes to its parents: a cycle would recurse forever.
            raise ValueError(f"including this router under {prefix!r} would make a cycle")
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"mount prefix {prefix!r} must start with '/'")
        prefix = prefix.rstrip("/")
        for route in other.routes:
            self._check_free(route.kind, prefix + route.template.source, route.name)
        other._mounts.append((self, prefix))
        for route in other.routes:
            self._add(route.mounted(prefix, other))

    def _ancestors(self) -> list[Router]:
        """Every router this one is included in, directly or not."""
        found: list[Router] = []
        pending = [parent for parent, _ in self._mounts]
        while pending:
            router = pending.pop()
            if not any(router is seen for seen in found):
                found.append(router)
                pending.extend(parent for parent, _ in router._mounts)
        return found

    def _check_name(self, name: str | None, template: str) -> None:
        if name is not None and name in self._names:
            raise ValueError(
                f"route name {name!r} for {template!r} is already used by "
                f"{self._names[name].template.source!r}"
            )

    def _check_free(self, kind: RouteKind, template: str, name: str | None) -> None:
        """Refuse a route whose name, or template for its kind, is already used here or,
        under the mount prefix, in a router that includes this one."""
        self._check_name(name, template)
        first = self._templates.get((kind, template))
        if first is not None:
            named = f" (name {first.name!r})" if first.name is not None else ""
            raise ValueError(
                f"{kind} route {template!r} is already registered, for "
                f"{_describe(first.endpoint)}{named}: a second view on the same "
                "template would never be reached; give it another template"
            )
        for parent, prefix in self._mounts:
            parent._check_free(kind, prefix + template, name)

    def _add(self, route: Route) -> None:
        """Add a route that _check_free() let through, here and in every parent."""
        if route.name is not None:
            self._names[route.name] = route
        self._templates[(route.kind, route.template.source)] = route
        self._matcher.add(route.template, route, _path_attributes(route))
        if route.policy is not None and route.policy.convert:
            self.__dict__.pop("lookup", None)
            self.__dict__.pop("match", None)
        for parent, prefix in self._mounts:
            parent._add(route.mounted(prefix, self))

    # Lookup

    @property
    def routes(self) -> list[Route]:
        """Every route, in registration order (the order that decides ties)."""
        return [route for _, route in self._matcher]

    def lookup(self, path: str) -> tuple[Route, dict[str, Any]] | None:
        """The first route matching a path (no query string) and its decoded params,
        converted where the route has ``convert``."""
        found = self._matcher.match(path)
        if found is not None:
            policy = found[0].policy
            if policy is not None and policy.convert:
                return self._converted(path, found)
        return found

    def _converted(
        self, path: str, found: tuple[Route, dict[str, Any]]
    ) -> tuple[Route, dict[str, Any]] | None:
        """The params of ``found`` through its route's converters; when one raises
        ValueError or TypeError, the next route that matches (and converts), if any.

        Only routes with converters come here; a failed conversion scans the later
        routes linearly, which costs nothing on the usual path."""
        route, params = found
        converted = _convert(route, params)
        if converted is not None:
            return route, converted
        segments = split_path(path)
        if segments is None:  # pragma: no cover - the matcher matched it
            return None
        later = False
        for _, candidate in self._matcher:
            if not later:
                later = candidate is route
                continue
            raw = match_segments(candidate.template.segments, segments, path)
            if raw is None:
                continue
            converted = _convert(candidate, raw)
            if converted is not None:
                return candidate, converted
        return None

    def match(self, target: str) -> RoutedPath | None:
        """The RoutedPath for a request target, or None if no route matches.

        Until a route with converters is added, a router's match is its matcher's
        routed(), which builds the same RoutedPath from _path_attributes()."""
        found = self._matcher.match_target(target)
        if found is None:
            return None
        route, params = found
        policy = route.policy
        if policy is not None and policy.convert:
            found = self._converted(target.partition("?")[0], found)
            if found is None:
                return None
            route, params = found
            policy = route.policy
        shared, view_class, name, source = route.routing
        # routed_path(), inlined: this runs for every request.
        routed = _new_str(RoutedPath, target)
        attributes = routed.__dict__
        attributes["params"] = params
        if view_class is None:
            attributes["route"] = shared
        else:
            attributes["view_class"] = view_class  # .route: an instance, made when read
        attributes["name"] = name
        attributes["template"] = source
        if policy is not None:
            attributes["policy"] = policy
        return routed

    def asyncapi(
        self,
        title: str = "WebSocket API",
        version: str = "1.0.0",
        servers: dict[str, Any] | list[str] | None = None,
    ) -> dict[str, Any]:
        """An AsyncAPI 3.0.0 document of the WebSocket routes, as a JSON-ready dict.

        One channel per WebSocket route (id: the route's name, else one made from its
        template; ``address``: the template with ``{param}`` placeholders), its params
        with their patterns, ``receive`` and ``send`` operations, the subprotocols and
        the view's docstring. ``servers``: AsyncAPI Server Objects by name, or a list of
        ``ws://``/``wss://`` URLs."""
        from .asyncapi import asyncapi_document

        return asyncapi_document(self, title, version, servers)

    def url_for(self, name: str, /, **params: Any) -> str:
        """The path of the named route with these params, each percent-encoded."""
        route = self._names.get(name)
        if route is None:
            raise KeyError(f"no route named {name!r}")
        unknown = set(params) - set(route.template.names)
        if unknown:
            raise ValueError(
                f"route {name!r} ({route.template.source!r}) has no param(s) "
                f"{', '.join(sorted(unknown))}"
            )
        return route.template.build({k: str(v) for k, v in params.items()})

    # Decisions

    # handshake.decide(router, request) itself, as a method: one call less per request.
    decide: ClassVar[Callable[[Router, Request], Decision]] = decide

    async def resolve(self, request: Request, *, now: float | None = None) -> Decision:
        """``decide()``, the route's rate limit at ``now`` (None: ``self.clock()``), then
        the view's ``process_request`` hook or HTTP view."""
        return await resolve(self, request, now=now)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} with {len(self._matcher)} routes>"


class ConverterError(Exception):
    """A converter raised something else than ValueError or TypeError: a bug in the
    application, answered with 500 like a failing hook."""


def _convert(route: Route, params: dict[str, Any]) -> dict[str, Any] | None:
    """``params`` (the matcher's, fresh per match) through the route's converters, in
    place; None when one raises ValueError or TypeError."""
    policy = route.policy
    if policy is None or policy.convert is None:
        return params
    for name, converter in policy.convert:
        try:
            params[name] = converter(params[name])
        except (ValueError, TypeError):
            return None
        except Exception as exc:
            raise ConverterError(
                f"the converter of {name!r} on route {route.template.source!r} failed: {exc!r}"
            ) from exc
    return params


def check_router(router: object, caller: str) -> None:
    """A clear error for a server given something else than a Router."""
    if not callable(getattr(router, "resolve", None)):
        raise TypeError(f"{caller} needs a Router, not {type(router).__name__}")


def resolves_in_steps(router: object) -> bool:
    """Whether ``router.resolve()`` is the core's own, which a transport may take in
    steps: ``resolve_start()`` without an await, then ``resolve_rest()`` only when
    ``resolve_pending()``. A router that overrides ``resolve()`` is awaited as it is."""
    return getattr(type(router), "resolve", None) is Router.resolve
