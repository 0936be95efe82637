"""The ``websockets`` transport: the router as a handler and handshake hook.

Every decision comes from the core (``router.resolve()``); this module only maps it
onto the ``websockets`` library:

- ``Respond``: an HTTP response instead of the upgrade (new API: a ``Response``;
  legacy API: a ``(HTTPStatus, headers, body)`` tuple).
- ``Accept``: let ``websockets`` complete the handshake, with the route's subprotocol
  made effective, and hand the resolved ``RoutedPath`` (the hook's ``path.context``
  included) to the view without running the hook again, as ``path`` and as ``ws.path``.
- ``Close``: let the handshake complete, then close with the code.

The decision taken during the handshake reaches ``handle()`` on the connection object
(new API, trio, our legacy ``Protocol``), or through a context variable for the
legacy ``process_request(path, headers)`` hook, which never sees the connection: the
legacy server runs the handshake and the handler in one task. When no hook ran,
``handle()`` resolves the request itself, after the handshake.

``websockets`` is imported here, never by ``import websockets_routes``; the legacy
modules (deprecated since websockets 14) only when ``Protocol`` or a legacy-only
``serve()`` option is used.

The router's observer (``core.observe``, metrics), if any, hears of each handshake the
hook decides (``seconds``: the hook's own time, websockets writes the answer) and of
each connection ``handle()`` runs, opened and closed; websockets keeps no message
counts, so messages are not counted here.
"""

from __future__ import annotations

import contextvars
import email.utils
import functools
import http
import inspect
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

try:
    from websockets.datastructures import Headers as _WSHeaders
    from websockets.exceptions import ConnectionClosed as _WSConnectionClosed
    from websockets.http11 import Response
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "websockets_routes.transports.websockets needs the websockets library: "
        "pip install websockets-routes[websockets]"
    ) from exc

from ..core import (
    Accept,
    Close,
    ConnectionClosed,
    Decision,
    Headers,
    Request,
    Respond,
    RoutedPath,
)
from ..core.handshake import resolve_pending, resolve_rest, resolve_start
from ..core.naming import peer_name, route_name
from ..core.observe import handshake_route, report_handshake, route_label
from ..core.paths import BadTarget, split_target
from ..core.policy import warn_unapplied
from ..core.router import resolves_in_steps

if TYPE_CHECKING:
    from .. import Router

    Protocol: type[Any]  # built on first use by __getattr__ below

__all__ = ["handle", "process_request", "serve", "Protocol", "Serve"]

logger = logging.getLogger("websockets_routes.websockets")

# Where the handshake leaves its outcome for handle(): an attribute of the connection
# (as websockets.asyncio.router does with connection.handler), holding (router, kept):
# the accepted RoutedPath, or the Close. Not the whole Accept: its 101 headers are
# websockets' business, and a crowd of pending handshakes should not hold them.
_STASH = "_websockets_routes_decision"
# The legacy process_request(path, headers) hook cannot reach the connection.
_LEGACY_PENDING: contextvars.ContextVar[tuple[Any, str, RoutedPath | Close] | None] = (
    contextvars.ContextVar("websockets_routes_legacy_pending", default=None)
)
_UNSET: Any = object()
# serve() options that only the legacy server understands.
_LEGACY_OPTIONS = frozenset(
    {"create_protocol", "klass", "extra_headers", "timeout", "legacy_recv", "read_limit"}
)


# Small helpers


def _remote_address(ws: Any) -> Any:
    try:
        return ws.remote_address
    except Exception:  # the transport may already be gone
        return None


def _core_request(target: str, headers: Any, remote_address: Any, method: str = "GET") -> Request:
    # The legacy server reads GET requests only; the new one passes any method on
    # (and rejects what is not GET itself, unless a hook answers first).
    # websockets parsed the fields into (str, str) pairs already: the core takes them as
    # they are, without its per-field type checks (decide() still checks their text).
    return Request(
        method, target, Headers.of_text(headers.raw_items()), remote_address=remote_address
    )


def _forced_subprotocol(router: Router, decision: Accept, headers: Any) -> Any:
    """The subprotocol websockets must use for this Accept, or _UNSET to leave its own.

    The core already chose among the route's (or router's) subprotocols; when it chose
    none although the client offered some, websockets' own choice (server-wide
    ``subprotocols=``) must not override the route's configuration either.
    """
    if decision.subprotocol is not None:
        return decision.subprotocol
    if not headers.get_all("Sec-WebSocket-Protocol"):
        return _UNSET
    if router.subprotocols is not None:
        return None
    try:
        path, _ = split_target(str(decision.path))
    except BadTarget:  # pragma: no cover - decide() accepted this target
        return _UNSET
    found = router.lookup(path)
    if found is not None and found[0].subprotocols is not None:
        return None
    return _UNSET


def _close_code(status: int) -> int:
    """The close code for an HTTP rejection that can only be carried out after the
    handshake: 4xx -> status * 10 (404 -> 4040, as websockets-routes 0.2 did)."""
    if 400 <= status <= 499:
        return status * 10
    if status >= 500:
        return 1011
    return 1008


def _close_reason(respond: Respond) -> str:
    line = respond.body.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if not line:
        try:
            line = http.HTTPStatus(respond.status).phrase
        except ValueError:
            line = str(respond.status)
    encoded = line.encode("utf-8")[:123]
    return encoded.decode("utf-8", "ignore")


async def _close(ws: Any, code: int, reason: str = "") -> None:
    close = getattr(ws, "close", None)
    if close is None or not inspect.iscoroutinefunction(close):
        close = ws.aclose  # websockets.trio connections
    try:
        await close(code, reason)
    except (_WSConnectionClosed, ConnectionClosed, OSError):
        pass


def _response(decision: Respond, method: str = "GET") -> Response:
    """A websockets Response for a Respond; Content-Length always matches the body,
    which a HEAD request does not get."""
    headers = _WSHeaders()
    names = set()
    for name, value in decision.headers:
        if name.lower() == "content-length":
            continue
        names.add(name.lower())
        headers[name] = value
    if "date" not in names:
        headers["Date"] = email.utils.formatdate(usegmt=True)
    if "connection" not in names:
        headers["Connection"] = "close"
    headers["Content-Length"] = str(len(decision.body))
    try:
        phrase = http.HTTPStatus(decision.status).phrase
    except ValueError:
        phrase = ""
    return Response(decision.status, phrase, headers, b"" if method == "HEAD" else decision.body)


def _legacy_response(decision: Respond) -> tuple[http.HTTPStatus, list[tuple[str, str]], bytes]:
    try:
        status = http.HTTPStatus(decision.status)
    except ValueError:
        # The legacy server writes status.phrase, so it only takes known statuses.
        logger.error(
            "HTTP status %d is unknown to the legacy websockets server; sending 500",
            decision.status,
        )
        return (http.HTTPStatus.INTERNAL_SERVER_ERROR, [], b"500 Internal Server Error\n")
    headers = [(n, v) for n, v in decision.headers if n.lower() != "content-length"]
    return (status, headers, decision.body)


# The handshake hook


async def process_request(router: Router, *args: Any) -> Any:
    """``router.process_request``: a ``process_request`` hook for ``websockets``.

    New API (asyncio and trio): ``hook(connection, request)`` returns a ``Response``
    or None. Legacy API: ``hook(path, request_headers)`` returns
    ``(HTTPStatus, headers, body)`` or None.
    """
    if len(args) != 2:
        raise TypeError(
            "process_request takes (connection, request) or, for the legacy API, "
            f"(path, request_headers); got {len(args)} arguments"
        )
    first, second = args
    if isinstance(first, str):
        return await _legacy_process_request(router, first, second)
    response = _hook(router, first, second)
    return (await response) if inspect.isawaitable(response) else response


def _hook(router: Router, connection: Any, request: Any) -> Any:
    """The new-API hook itself, what ``router.serve()`` installs: the ``Response`` or
    None at once when nothing is left to await (no view hook, no HTTP view: the
    usual case, without a coroutine), else a coroutine giving it. websockets takes
    either."""
    core_request = _core_request(
        request.path,
        request.headers,
        _remote_address(connection),
        getattr(request, "method", "GET"),  # websockets < 15 parses GET only
    )
    if getattr(router, "observer", None) is not None:
        return _carry_out_later(router, connection, core_request, _observed(router, core_request))
    if not resolves_in_steps(router):
        return _carry_out_later(router, connection, core_request, router.resolve(core_request))
    decision = resolve_start(router, core_request)
    if resolve_pending(decision):
        rest = resolve_rest(decision, core_request)
        return _carry_out_later(router, connection, core_request, rest)
    return _carry_out(router, connection, core_request, decision)


async def _observed(router: Router, request: Request) -> Decision:
    """``router.resolve(request)``, reported to the router's observer."""
    started = time.monotonic()
    decision = await router.resolve(request)
    report_handshake(router.observer, router, request, decision, time.monotonic() - started)
    return decision


async def _carry_out_later(
    router: Router, connection: Any, request: Request, decision: Awaitable[Decision]
) -> Response | None:
    return _carry_out(router, connection, request, await decision)


def _carry_out(router: Router, connection: Any, request: Request, decision: Decision) -> Any:
    """What the hook answers websockets for ``decision`` on the core ``request``."""
    if isinstance(decision, Accept):  # the usual case first
        setattr(connection, _STASH, (router, decision.path))
        if decision.subprotocol is not None or "sec-websocket-protocol" in request.headers:
            forced = _forced_subprotocol(router, decision, request.headers)
            if forced is not _UNSET:
                # Per connection, the way websockets installs its own select_subprotocol
                # callback: ServerProtocol.process_subprotocol() calls this attribute.
                connection.protocol.select_subprotocol = lambda offered: forced
        return None
    if isinstance(decision, Respond):
        return _response(decision, request.method)
    assert isinstance(decision, Close)
    setattr(connection, _STASH, (router, decision))
    return None


async def _legacy_process_request(router: Router, path: str, headers: Any) -> Any:
    core_request = _core_request(str(path), headers, None)
    if getattr(router, "observer", None) is not None:
        decision = await _observed(router, core_request)
    else:
        decision = await router.resolve(core_request)
    if isinstance(decision, Respond):
        return _legacy_response(decision)
    assert isinstance(decision, (Accept, Close))
    _LEGACY_PENDING.set((router, str(path), _kept(decision)))
    return None


# The connection handler


def _kept(decision: Accept | Close) -> RoutedPath | Close:
    return decision.path if isinstance(decision, Accept) else decision


def _take_decision(router: Router, ws: Any, target: str) -> RoutedPath | Close | None:
    stashed = getattr(ws, _STASH, None)
    if stashed is not None:
        setattr(ws, _STASH, None)
        if stashed[0] is router:
            return stashed[1]
    pending = _LEGACY_PENDING.get()
    if pending is not None:
        _LEGACY_PENDING.set(None)
        owner, pending_target, decision = pending
        if owner is router and pending_target == target:
            return decision
    return None


def _target_and_headers(ws: Any, path: str | None) -> tuple[str, Any]:
    request = getattr(ws, "request", None)
    if request is not None and hasattr(request, "headers"):  # new API, trio
        return (str(path) if path is not None else request.path), request.headers
    # The legacy protocol keeps the request line's target and headers.
    return (str(path) if path is not None else str(ws.path)), ws.request_headers


async def handle(router: Router, ws: Any, path: str | None = None) -> None:
    """``router.handle`` / ``router``: a ``websockets`` connection handler.

    ``path`` is None when ``websockets`` calls it with the connection alone (every
    server of websockets 14+); a ``(ws, path)`` caller may pass the target.
    """
    routed = _accepted(router, ws)
    if routed is None:
        routed = await _routed_path(router, ws, path)
        if routed is None:
            return
    if routed.policy is not None:  # options websockets keeps per server (core.policy)
        routed.policy.log_unapplied(routed.template, "the websockets server")
    observer = getattr(router, "observer", None)
    if observer is not None:
        observer.opened(route_label(routed), None)
    # The RoutedPath as ws.path, for a view of (ws) alone (websockets 14+ style): new
    # websockets connections have no .path; the legacy ones hold the raw target there.
    try:
        ws.path = routed
    except AttributeError:  # pragma: no cover - a connection class that refuses it
        pass
    try:
        try:
            await routed.route.handle(ws, routed)
        except (_WSConnectionClosed, ConnectionClosed) as exc:
            # The peer went away while the view was talking to it: not a server error.
            logger.debug(
                "connection of route %r from %s closed during the handler: %s",
                route_name(routed),
                peer_name(_remote_address(ws)),
                exc,
            )
        except Exception:
            logger.exception(
                "handler of route %r failed for the connection from %s",
                route_name(routed),
                peer_name(_remote_address(ws)),
            )
            await _close(ws, 1011, "internal error")
        if observer is not None:
            await _close(ws, 1000)  # as websockets does once the handler returns
    finally:
        if observer is not None:
            observer.closed(route_label(routed), _final_code(ws), None)


def _accepted(router: Router, ws: Any) -> RoutedPath | None:
    """The path this router's hook accepted during the handshake (the usual case,
    taken without the coroutine of _routed_path()), else None."""
    stashed = getattr(ws, _STASH, None)
    if stashed is not None and stashed[0] is router and type(stashed[1]) is not Close:
        setattr(ws, _STASH, None)
        return stashed[1]  # type: ignore[no-any-return]
    return None


async def _routed_path(router: Router, ws: Any, path: str | None) -> RoutedPath | None:
    """The accepted path, or None once the connection is closed as decided.

    A function of its own so that nothing but the RoutedPath stays referenced from
    handle()'s frame while the view runs.
    """
    target, headers = _target_and_headers(ws, path)
    decision: RoutedPath | Decision | None = _take_decision(router, ws, target)
    if isinstance(decision, RoutedPath):
        return decision
    observer = getattr(router, "observer", None)
    route = ""
    if decision is None:
        # No hook ran during the handshake: decide now. The view's hook still runs,
        # and an HTTP rejection becomes a close code (404 -> 4040).
        request = _core_request(target, headers, _remote_address(ws))
        decision = await router.resolve(request)
        if observer is not None:  # the handshake is over: it was an accept
            route = handshake_route(router, request, decision) or ""
            accepted = isinstance(decision, Accept)
            observer.handshake(route, "accept" if accepted else "close", None)
    if isinstance(decision, Accept):  # resolve() never returns ServeHTTP
        return decision.path
    if isinstance(decision, Close):
        code, reason = decision.code, decision.reason
        route = route or route_label(decision.path)
    else:
        assert isinstance(decision, Respond)
        code, reason = _close_code(decision.status), _close_reason(decision)
    if observer is not None:
        observer.opened(route, None)
    try:
        await _close(ws, code, reason)
    finally:
        if observer is not None:
            observer.closed(route, _final_code(ws), None)
    return None


def _final_code(ws: Any) -> int:
    """The close code to count: the peer's close frame's, else ours, else 1006."""
    state = getattr(ws, "protocol", ws)  # new API: the sans-I/O protocol; legacy: ws
    for frame in (getattr(state, "close_rcvd", None), getattr(state, "close_sent", None)):
        if frame is not None:
            return int(frame.code)
    return 1006


# router.serve()


class Serve:
    """What ``router.serve(host, port, **kwargs)`` returns.

    It starts the server when first awaited, inside the running loop, so it works as
    ``server = await router.serve(...)``, ``async with router.serve(...) as server:``
    and, as websockets-routes 0.2's README wrote it,
    ``loop.run_until_complete(router.serve(...))``. The server is the ``websockets``
    one (``websockets.asyncio.server.Server``, or the legacy ``WebSocketServer`` when a
    legacy-only option such as ``create_protocol`` is given), with ``port`` set to the
    bound port.
    """

    def __init__(self, router: Router, host: Any, port: int | None, kwargs: dict[str, Any]) -> None:
        self.router = router
        self.host = host
        self.port = port
        self.kwargs = kwargs
        self.server: Any = None

    def _create(self) -> Any:
        # websockets negotiates compression and sets max_size, max_queue and pings per
        # server: a route's own cannot apply (core.policy).
        warn_unapplied(self.router, "the websockets server (transports.websockets)", 4)
        kwargs = dict(self.kwargs)
        if _LEGACY_OPTIONS & kwargs.keys():
            legacy_serve = _legacy_server().serve
            kwargs.setdefault("create_protocol", _protocol_class())
            return legacy_serve(self.router, self.host, self.port, **kwargs)
        from websockets.asyncio.server import serve as asyncio_serve

        kwargs["process_request"] = _chain(self.router, kwargs.get("process_request"))
        # The transport's handle() itself, not router.handle, which imports this module
        # on each call: one call and one package import less per connection. A router
        # class with its own handle() keeps it.
        handler: Callable[[Any], Awaitable[None]] = self.router.handle
        if _inherits(self.router, "handle"):
            handler = functools.partial(handle, self.router)
        return asyncio_serve(handler, self.host, self.port, **kwargs)

    async def _start(self) -> Any:
        if self.server is None:
            server = await self._create()
            sockets = list(server.sockets or ())
            if sockets and not hasattr(server, "port"):
                server.port = sockets[0].getsockname()[1]
            self.server = server
        return self.server

    def __await__(self) -> Generator[Any, None, Any]:
        return self._start().__await__()

    async def __aenter__(self) -> Any:
        return await self._start()

    async def __aexit__(self, *exc_info: Any) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    def __repr__(self) -> str:
        return f"<Serve {self.router!r} on {self.host}:{self.port}>"


def _chain(router: Router, user_hook: Callable[..., Any] | None) -> Callable[[Any, Any], Any]:
    """The router's hook, after a user-supplied one (which may answer first); it returns
    the answer or an awaitable giving it, as websockets allows."""
    if user_hook is None or getattr(user_hook, "__self__", None) is router:
        if not _inherits(router, "process_request"):
            return router.process_request  # a router class with its own hook
        return functools.partial(_hook, router)

    routed_hook = (
        functools.partial(_hook, router)
        if _inherits(router, "process_request")
        else router.process_request
    )

    async def chained(connection: Any, request: Any) -> Any:
        response = user_hook(connection, request)
        if inspect.isawaitable(response):
            response = await response
        if response is not None:
            return response
        response = routed_hook(connection, request)
        return (await response) if inspect.isawaitable(response) else response

    return chained


def _inherits(router: Router, method: str) -> bool:
    """Whether the router's class takes ``method`` from websockets_routes.Router, so
    that serve() may call this module's function behind it directly."""
    from .. import Router as PublicRouter

    return getattr(type(router), method, None) is getattr(PublicRouter, method)


def serve(router: Router, host: Any = None, port: int | None = None, **kwargs: Any) -> Serve:
    """Serve ``router`` with ``websockets``: the handler and ``process_request`` both.

    Options go to ``websockets.asyncio.server.serve``; a ``process_request`` given here
    runs first, and the router's runs when it returns None.
    """
    return Serve(router, host, port, kwargs)


# The legacy Protocol


def _legacy_server() -> Any:
    # Importing websockets.legacy warns (deprecated in websockets 14); Protocol exists
    # for code written against websockets-routes 0.2, so silence that warning only.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"websockets\.legacy is deprecated", category=DeprecationWarning
        )
        import websockets.legacy.server as legacy_server
    return legacy_server


def _router_of(ws_handler: Any) -> Any:
    from .. import Router as PublicRouter

    for candidate in (ws_handler, getattr(ws_handler, "__self__", None)):
        if isinstance(candidate, PublicRouter):
            return candidate
    return None


_protocol: type | None = None


def _protocol_class() -> type:
    global _protocol
    if _protocol is not None:
        return _protocol
    base = _legacy_server().WebSocketServerProtocol

    class Protocol(base):  # type: ignore[misc, valid-type]
        """A legacy ``websockets`` server protocol that routes during the handshake.

        ``websockets.legacy.server.serve(router, host, port, create_protocol=Protocol)``:
        an unknown path gets HTTP 404 before the handshake (or is accepted, then closed
        with 4040, under ``Router(close_unmatched=True)``), view hooks run, and the
        handler gets the resolved ``RoutedPath``. The router is the handler given to
        ``serve`` (the router or ``router.handle``), or a subclass's ``router``
        attribute. Subclasses may override ``process_request`` and call ``super()``.
        """

        router: Any = None

        def __init__(self, ws_handler: Any, ws_server: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(ws_handler, ws_server, *args, **kwargs)
            router = _router_of(ws_handler) or type(self).router
            if router is None:
                raise TypeError(
                    "websockets_routes.Protocol needs the router: pass it as the handler "
                    "(serve(router, ..., create_protocol=Protocol)) or set a subclass's "
                    "'router' attribute"
                )
            self.router = router
            self._routes_subprotocol: Any = _UNSET

        async def read_http_request(self) -> tuple[str, Any]:
            # As in 0.2, hooks see a RoutedPath; params is None when no route matches.
            path, headers = await super().read_http_request()
            routed = self.router.match(path)
            if routed is None:
                routed = RoutedPath(path)
                routed.params = None  # type: ignore[assignment]
            return routed, headers

        async def process_request(self, path: str, request_headers: Any) -> Any:
            # A process_request= given to serve() answers first, as websockets does it;
            # router.process_request given there too would only run the hooks twice.
            user_hook = self._process_request
            if user_hook is not None and getattr(user_hook, "__self__", None) is not self.router:
                early = await super().process_request(path, request_headers)
                if early is not None:
                    return early
            core_request = _core_request(str(path), request_headers, _remote_address(self))
            if getattr(self.router, "observer", None) is not None:
                decision = await _observed(self.router, core_request)
            else:
                decision = await self.router.resolve(core_request)
            if isinstance(decision, Respond):
                return _legacy_response(decision)
            assert isinstance(decision, (Accept, Close))
            routed = decision.path
            if routed is not None:
                context = getattr(path, "context", None)
                if context:  # what an overriding process_request put there first
                    routed.context = {**context, **routed.context}
                self.path = routed
            if isinstance(decision, Accept):
                self._routes_subprotocol = _forced_subprotocol(
                    self.router, decision, request_headers
                )
            setattr(self, _STASH, (self.router, _kept(decision)))
            return None

        def process_subprotocol(self, headers: Any, available_subprotocols: Any) -> Any:
            if self._routes_subprotocol is not _UNSET:
                return self._routes_subprotocol
            return super().process_subprotocol(headers, available_subprotocols)

    Protocol.__module__ = __name__
    _protocol = Protocol
    return Protocol


def __getattr__(name: str) -> Any:
    if name == "Protocol":
        return _protocol_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
