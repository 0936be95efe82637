"""The opening-handshake decision engine: a Request in, a decision out.

``decide()`` is pure and synchronous: routing plus the RFC 6455 section 4.2.1 checks.
``resolve()`` adds the one asynchronous step, the view's ``process_request`` hook (or a
plain-HTTP view), and never raises: a failing hook becomes ``Respond(500)``.

The router is anything with the ``RoutingTable`` shape (``core.router.Router`` is one):
this module imports no Router. ``Headers``/``Request`` (``core.http``) and the decision
values (``core.decisions``) are re-exported here for code that imported them from here.
"""

from __future__ import annotations

import binascii
import hashlib
import inspect
import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any, Protocol

from .decisions import (
    Accept,
    Close,
    Decision,
    Respond,
    ServeHTTP,
    check_close_code,
    header_pairs,
    respond,
)
from .http import TOKEN, HeaderPairs, Headers, Request
from .naming import peer_name, route_name
from .paths import (
    BAD_ESCAPE,
    TARGET_CHARS,
    BadTarget,
    RoutedPath,
    routed_path,
    split_path,
    split_target,
    without_query,
)

__all__ = [
    "Headers",
    "HeaderPairs",
    "Request",
    "Accept",
    "Respond",
    "Close",
    "ServeHTTP",
    "Decision",
    "RoutingTable",
    "RouteEntry",
    "check_close_code",
    "respond",
    "decide",
    "resolve",
    "resolve_start",
    "resolve_pending",
    "resolve_rest",
    "accept_key",
    "choose_subprotocol",
]


class RouteEntry(Protocol):
    """What decide() reads of a route (``core.router.Route`` is one)."""

    @property
    def kind(self) -> str: ...
    @property
    def origins(self) -> tuple[str | None, ...] | None: ...
    @property
    def subprotocols(self) -> tuple[str, ...] | None: ...
    @property
    def routing(self) -> tuple[Any, type | None, str | None, str]: ...
    @property
    def policy(self) -> Any: ...


class RoutingTable(Protocol):
    """What decide() reads of a router (``core.router.Router`` is one)."""

    close_unmatched: bool
    origins: tuple[str | None, ...] | None
    subprotocols: tuple[str, ...] | None

    def lookup(self, path: str) -> tuple[RouteEntry, dict[str, str]] | None: ...


logger = logging.getLogger("websockets_routes")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return _b64(_sha1((key + GUID).encode("ascii")).digest(), newline=False).decode("ascii")


_sha1, _b64 = hashlib.sha1, binascii.b2a_base64


def _malformed(request: Request) -> str | None:
    method = request.method
    if method != "GET" and not TOKEN.match(method):
        return "request method is not a token"
    return request.headers.problem()


def _has_token(values: list[str] | None, token: str) -> bool:
    """Whether a comma-separated token list (in one or more fields) holds ``token``."""
    if values is None:
        return False
    for value in values:
        if value.lower() == token:  # the usual single-token field
            return True
        for part in value.split(","):
            if part.strip().lower() == token:
                return True
    return False


def _check_upgrade(request: Request) -> Respond | str:
    """RFC 6455 4.2.1 items 3-6, in the order the design gives them.

    Returns the rejection, or the (stripped) Sec-WebSocket-Key when all is well.
    """
    fields = request.headers.by_name
    upgrade, connection = fields.get("upgrade"), fields.get("connection")
    if not (
        upgrade is not None
        and connection is not None
        and (
            (len(upgrade) == 1 and upgrade[0].lower() == "websocket")
            or _has_token(upgrade, "websocket")
        )
        and (
            (len(connection) == 1 and connection[0].lower() == "upgrade")
            or _has_token(connection, "upgrade")
        )
    ):
        return respond(
            HTTPStatus.UPGRADE_REQUIRED,
            "this is a WebSocket endpoint: send Upgrade: websocket and Connection: Upgrade",
            [("Upgrade", "websocket"), ("Connection", "Upgrade")],
        )
    versions = fields.get("sec-websocket-version")
    if versions is None or len(versions) != 1 or versions[0] != "13":
        return respond(
            HTTPStatus.UPGRADE_REQUIRED,
            "unsupported Sec-WebSocket-Version, only 13 is supported",
            [("Sec-WebSocket-Version", "13")],
        )
    hosts = fields.get("host")
    if hosts is None or len(hosts) != 1:
        return respond(HTTPStatus.BAD_REQUEST, "missing or repeated Host header")
    keys = fields.get("sec-websocket-key")
    key = keys[0].strip() if keys is not None and len(keys) == 1 else ""
    if _KEY.fullmatch(key) is None:
        return respond(HTTPStatus.BAD_REQUEST, "Sec-WebSocket-Key must be base64 of 16 bytes")
    return key


# Base64 of exactly 16 bytes: 22 characters of the alphabet and "==" (24 without
# padding decode to 18 bytes, 23 and "=" to 17), as b64decode(validate=True) sees it.
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")


def _response_headers(key: str, subprotocol: str | None) -> list[tuple[str, str]]:
    accept = _b64(_sha1((key + GUID).encode("ascii")).digest(), newline=False)
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept.decode("ascii")),  # accept_key(key), inlined
    ]
    if subprotocol is not None:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    return headers


def choose_subprotocol(request: Request, supported: Sequence[str] | None) -> str | None:
    """The first of the server's subprotocols that the client offered, or None."""
    if not supported:
        return None
    offered = {
        token.strip()
        for value in request.headers.get_all("Sec-WebSocket-Protocol")
        for token in value.split(",")
    }
    for candidate in supported:
        if candidate in offered:
            return candidate
    return None


_new_object, _new_str = object.__new__, str.__new__


def decide(router: RoutingTable, request: Request) -> Decision:
    """Route and validate an opening handshake; pure and synchronous, no hooks run."""
    target = request.target
    path: str | None
    # split_target() inlined for the usual target; it explains the unusual ones.
    if TARGET_CHARS.fullmatch(target) is not None:
        path = target.partition("?")[0] if "?" in target else target
        if "%" in path and BAD_ESCAPE.search(path) is not None:
            path = None
    else:
        path = None
    if path is None:
        try:
            path, _query = split_target(target)
        except BadTarget as exc:
            return respond(HTTPStatus.BAD_REQUEST, str(exc))
    problem = _malformed(request)
    if problem is not None:
        return respond(HTTPStatus.BAD_REQUEST, problem)
    found = router.lookup(path)
    if found is None:
        if router.close_unmatched and request.method == "GET":
            checked = _check_upgrade(request)
            if isinstance(checked, Respond):
                return checked
            return Close(
                4040,
                "no route for this path",
                RoutedPath(request.target),
                _response_headers(checked, None),
            )
        if "%" in path and split_path(path) is None:
            return respond(HTTPStatus.BAD_REQUEST, "a percent-escape in the path is not UTF-8")
        return respond(HTTPStatus.NOT_FOUND, f"no route for {path}")
    route, params = found
    if route.kind == "http":
        shared, view_class, name, source = route.routing
        routed = routed_path(target, params, shared, name, source, view_class)
        if request.method not in ("GET", "HEAD"):
            return respond(
                HTTPStatus.METHOD_NOT_ALLOWED, "use GET or HEAD", [("Allow", "GET, HEAD")]
            )
        return ServeHTTP(routed)
    if request.method != "GET":
        return respond(
            HTTPStatus.METHOD_NOT_ALLOWED, "a WebSocket handshake uses GET", [("Allow", "GET")]
        )
    checked = _check_upgrade(request)
    if isinstance(checked, Respond):
        return checked
    origins = route.origins if route.origins is not None else router.origins
    if origins is not None:
        sent = request.headers.get_all("Origin")
        origin = sent[0] if len(sent) == 1 else None
        if len(sent) > 1:
            return respond(HTTPStatus.FORBIDDEN, "several Origin headers: send exactly one")
        if origin not in origins:
            return respond(HTTPStatus.FORBIDDEN, f"origin {origin!r} is not allowed here")
    supported = route.subprotocols if route.subprotocols is not None else router.subprotocols
    subprotocol = choose_subprotocol(request, supported) if supported else None
    # The view is not made here (decide() is pure): a class view's instance is made
    # when the RoutedPath's .route is first read, by resolve() or by the transport.
    shared, view_class, name, source = route.routing
    routed = _new_str(RoutedPath, target)  # routed_path(), inlined
    attributes = routed.__dict__
    attributes["params"] = params
    if view_class is None:
        attributes["route"] = shared
    else:
        attributes["view_class"] = view_class  # .route: an instance, made when read
    attributes["name"] = name
    attributes["template"] = source
    policy = route.policy
    if policy is not None:  # converters, options, rate limit: core.policy
        attributes["policy"] = policy
    # Accept(...) without the frozen dataclass's field-by-field object.__setattr__
    # calls, which cost about a tenth of a whole decision.
    accept = _new_object(Accept)
    accept.__dict__.update(
        path=routed, subprotocol=subprotocol, headers=_response_headers(checked, subprotocol)
    )
    return accept


async def resolve(router: RoutingTable, request: Request, now: float | None = None) -> Decision:
    """``decide()``, the route's rate limit, then the view's hook; never raises, never
    returns ServeHTTP."""
    decision = resolve_start(router, request, now)
    if resolve_pending(decision):
        return await resolve_rest(decision, request)
    return decision


def resolve_start(router: RoutingTable, request: Request, now: float | None = None) -> Decision:
    """The synchronous first step of ``resolve()``: ``decide()``, the route's rate limit
    (``core.policy``; at ``now``, None: the router's ``clock()``), then the view (a class
    view's instance, for ``request.path.route``); a failing view set-up or converter
    logged and answered with 500. Unless ``resolve_pending()`` says so, this is
    already what ``resolve()`` returns; a transport that answers it at once, in the
    callback that read the request, saves a loop iteration before the 101."""
    try:
        decision = decide(router, request)
        if type(decision) is Accept or type(decision) is ServeHTTP:
            path = decision.path
            policy = path.policy
            if policy is not None and policy.limiter is not None:
                if now is None:
                    now = getattr(router, "clock", time.monotonic)()
                refused = policy.limit(request, now)
                if refused is not None:
                    return refused
            path.route  # noqa: B018 - a class view's instance, made now: its __init__ may raise
            request.path = path
    except Exception:  # a class view whose __init__ raises: the user's bug, not the peer's
        logger.exception(
            "routing or making the view for %s failed, request from %s",
            without_query(request.target),
            peer_name(request.remote_address),
        )
        return respond(HTTPStatus.INTERNAL_SERVER_ERROR, "the server could not set up this view")
    return decision


def resolve_pending(decision: Decision) -> bool:
    """Whether ``resolve_rest()`` has something to await: an HTTP view, or a view's
    ``process_request`` hook."""
    if isinstance(decision, Accept):
        return getattr(decision.path.route, "process_request", None) is not None
    return isinstance(decision, ServeHTTP)


async def resolve_rest(decision: Decision, request: Request) -> Decision:
    """The rest of ``resolve()`` after ``resolve_start()``: run the HTTP view or the
    hook; never raises, never returns ServeHTTP."""
    if isinstance(decision, ServeHTTP):
        request.path = decision.path  # the HTTP view reads it
        return await _serve_http(decision.path, request)
    if not isinstance(decision, Accept):
        return decision
    path = decision.path
    hook = getattr(path.route, "process_request", None)
    if hook is None:
        return decision
    try:
        result = hook(path, request.headers)
        if inspect.isawaitable(result):
            result = await result
        return _hook_decision(result, decision, request)
    except Exception:
        logger.exception(
            "process_request of route %r failed for %s from %s",
            route_name(path),
            without_query(path),
            peer_name(request.remote_address),
        )
        return respond(HTTPStatus.INTERNAL_SERVER_ERROR, "the server could not check this request")


def _hook_decision(result: Any, accepted: Accept, request: Request) -> Decision:
    if result is None:
        return accepted
    if isinstance(result, Close):
        return Close(
            result.code,
            result.reason,
            result.path if result.path is not None else accepted.path,
            accepted.headers,
        )
    if isinstance(result, Respond):
        return result
    if isinstance(result, tuple) and len(result) == 3:
        status, headers, body = result
        return Respond(int(status), header_pairs(_header_items(headers)), body)
    raise TypeError(
        "process_request must return None, (status, headers, body) or Close, "
        f"not {type(result).__name__}"
    )


def _header_items(headers: Any) -> Iterable[tuple[Any, Any]]:
    if isinstance(headers, Headers):
        return headers.items()
    if hasattr(headers, "raw_items"):  # websockets.datastructures.Headers
        return headers.raw_items()
    if hasattr(headers, "items"):
        return headers.items()
    return headers


async def _serve_http(path: RoutedPath, request: Request) -> Respond:
    view = path.route
    try:
        result = view.handle(request)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Respond):
            return result
        if isinstance(result, (bytes, str)):
            content_type = "text/plain; charset=utf-8"
            if isinstance(result, str) and result.lstrip().startswith("<"):
                content_type = "text/html; charset=utf-8"
            body = result.encode() if isinstance(result, str) else result
            return Respond(200, [("Content-Type", content_type)], body)
        if isinstance(result, tuple) and len(result) == 3:
            status, headers, body = result
            return Respond(int(status), header_pairs(_header_items(headers)), body)
        if isinstance(result, (dict, list)):
            text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
            return Respond(200, [("Content-Type", "application/json")], text.encode())
        raise TypeError(
            "an HTTP view must return (status, headers, body), bytes, str, dict or list, "
            f"not {type(result).__name__}"
        )
    except Exception:
        logger.exception(
            "HTTP view %r failed for %s from %s",
            route_name(path),
            without_query(path),
            peer_name(request.remote_address),
        )
        return respond(HTTPStatus.INTERNAL_SERVER_ERROR, "the view failed")
