"""The opening-handshake decision engine: a Request in, a decision out.

``decide()`` is pure and synchronous: routing plus the RFC 6455 section 4.2.1 checks.
``resolve()`` adds the one asynchronous step, the view's ``process_request`` hook (or a
plain-HTTP view), and never raises: a failing hook becomes ``Respond(500)``.
"""

from __future__ import annotations

import binascii
import hashlib
import inspect
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .router import Router

__all__ = [
    "Headers",
    "HeaderPairs",
    "Request",
    "Accept",
    "Respond",
    "Close",
    "ServeHTTP",
    "Decision",
    "decide",
    "resolve",
    "resolve_start",
    "resolve_pending",
    "resolve_rest",
    "accept_key",
]

logger = logging.getLogger("websockets_routes")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HeaderPairs = Iterable[tuple[str | bytes, str | bytes]]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, str):
        return value
    raise TypeError(f"header names and values must be str or bytes, not {type(value).__name__}")


class Headers:
    """Case-insensitive multi-mapping of HTTP header fields, in arrival order.

    ``h[name]`` and ``h.get(name)`` join repeated fields with ``", "`` (RFC 9110 section
    5.3); ``h.get_all(name)`` lists each value. ``bytes`` are read as latin-1.
    """

    # _names and _values repeat _items column by column: decide() checks every name and
    # every value of each request, and joining a list is cheaper than unzipping pairs.
    __slots__ = ("_items", "_index", "_names", "_values")

    def __init__(self, pairs: HeaderPairs | Headers | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        self._names: list[str] = []
        self._values: list[str] = []
        if pairs is None:
            return
        items = pairs.items() if isinstance(pairs, Headers) else pairs
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _of_text(cls, items: list[tuple[str, str]]) -> Headers:
        """Headers over ``items``, ``(str, str)`` pairs the caller has checked (the
        driver's request parser): no per-field type checks, ``items`` kept as is."""
        self = object.__new__(cls)
        self._items = items
        names: list[str] = []
        values: list[str] = []
        index: dict[str, list[str]] = {}
        for name, value in items:
            names.append(name)
            values.append(value)
            key = name.lower()
            found = index.get(key)
            if found is None:
                index[key] = [value]
            else:
                found.append(value)
        self._names, self._values, self._index = names, values, index
        return self

    def add(self, name: str | bytes, value: str | bytes) -> None:
        name, value = _text(name), _text(value)
        self._items.append((name, value))
        self._names.append(name)
        self._values.append(value)
        self._index.setdefault(name.lower(), []).append(value)

    def __getitem__(self, name: str) -> str:
        values = self._index.get(name.lower())
        if values is None:
            raise KeyError(name)
        return values[0] if len(values) == 1 else ", ".join(values)

    def get(self, name: str, default: Any = None) -> Any:
        values = self._index.get(name.lower())
        if values is None:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def get_all(self, name: str) -> list[str]:
        return list(self._index.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def raw_items(self) -> list[tuple[str, str]]:
        """The same as ``items()``: the name ``websockets.datastructures.Headers`` uses,
        so 0.2-era hooks that called it keep working."""
        return list(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self) -> list[str]:
        return [name for name, _ in self._items]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Request:
    """An opening-handshake request: method, target and headers (str or bytes)."""

    __slots__ = ("method", "target", "headers", "path", "remote_address")

    def __init__(
        self,
        method: str | bytes,
        target: str | bytes,
        headers: HeaderPairs | Headers = (),
        *,
        remote_address: Any = None,
    ) -> None:
        self.method = _text(method)
        self.target = _text(target)
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.path: RoutedPath | None = None  # set once routed
        self.remote_address = remote_address

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r})"


def _pairs(headers: Iterable[tuple[Any, Any]]) -> list[tuple[str, str]]:
    return [
        (_text(name), _text(str(value) if isinstance(value, int) else value))
        for name, value in headers
    ]


@dataclass(frozen=True)
class Accept:
    """Complete the handshake with these 101 response headers."""

    path: RoutedPath
    subprotocol: str | None
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Respond:
    """Answer with this HTTP response and do not upgrade."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise ValueError(f"HTTP status must be an int from 100 to 599, not {self.status!r}")
        if isinstance(self.body, str):
            object.__setattr__(self, "body", self.body.encode("utf-8"))
        elif not isinstance(self.body, (bytes, bytearray, memoryview)):
            raise TypeError(f"response body must be bytes or str, not {type(self.body).__name__}")
        else:
            object.__setattr__(self, "body", bytes(self.body))
        object.__setattr__(self, "headers", _pairs(self.headers))


_RESERVED_CLOSE_CODES = {1004, 1005, 1006, 1015}


def check_close_code(code: int, reason: str = "") -> None:
    """Raise ValueError unless ``code``/``reason`` may be sent in a close frame."""
    if (
        not isinstance(code, int)
        or code in _RESERVED_CLOSE_CODES
        or not (1000 <= code <= 1014 or 3000 <= code <= 4999)
    ):
        raise ValueError(f"{code!r} is not a close code an endpoint may send (RFC 6455 7.4)")
    if len(reason.encode("utf-8")) > 123:
        raise ValueError("close reason must be at most 123 bytes of UTF-8")


@dataclass(frozen=True)
class Close:
    """Complete the handshake, then close at once with ``code``."""

    code: int
    reason: str = ""
    path: RoutedPath | None = None
    headers: Sequence[tuple[str, str]] = ()

    def __post_init__(self) -> None:
        check_close_code(self.code, self.reason)
        object.__setattr__(self, "headers", _pairs(self.headers))


@dataclass(frozen=True)
class ServeHTTP:
    """A plain-HTTP route matched; ``resolve()`` calls its view for the response."""

    path: RoutedPath


Decision = Accept | Respond | Close | ServeHTTP


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return _b64(_sha1((key + GUID).encode("ascii")).digest(), newline=False).decode("ascii")


_sha1, _b64 = hashlib.sha1, binascii.b2a_base64


def respond(status: HTTPStatus, message: str, headers: Sequence[tuple[str, str]] = ()) -> Respond:
    """A Respond with a short plain-text body saying why."""
    body = f"{status.value} {status.phrase}: {message}\n".encode()
    return Respond(
        int(status),
        [*headers, ("Content-Type", "text/plain; charset=utf-8")],
        body,
    )


def _malformed(request: Request) -> str | None:
    method = request.method
    if method != "GET" and not _TOKEN.match(method):
        return "request method is not a token"
    headers = request.headers
    names, values = headers._names, headers._values
    if not names:
        return None
    # The usual headers pass two string scans done in C: names of letters, digits and
    # dashes, values of printable ASCII (a space joins them; it is allowed in a value).
    # Anything else (other token characters, tabs, obs-text) gets the exact checks.
    dashed = "-".join(names)
    joined = " ".join(values)
    if (
        dashed.isascii()
        and dashed.replace("-", "").isalnum()
        and "" not in names
        and joined.isascii()
        and joined.isprintable()
    ):
        return None
    for name, value in headers._items:
        if not _TOKEN.match(name):
            return f"header name {name!r} is not a token"
        if not _FIELD_VALUE.match(value):
            return f"header {name!r} has a forbidden character"
    return None


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
    index = request.headers._index
    upgrade, connection = index.get("upgrade"), index.get("connection")
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
    versions = index.get("sec-websocket-version")
    if versions is None or len(versions) != 1 or versions[0] != "13":
        return respond(
            HTTPStatus.UPGRADE_REQUIRED,
            "unsupported Sec-WebSocket-Version, only 13 is supported",
            [("Sec-WebSocket-Version", "13")],
        )
    hosts = index.get("host")
    if hosts is None or len(hosts) != 1:
        return respond(HTTPStatus.BAD_REQUEST, "missing or repeated Host header")
    keys = index.get("sec-websocket-key")
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


def decide(router: Router, request: Request) -> Decision:
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
    found = router._matcher.match(path)
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
        routed = routed_path(
            request.target, params, route.view(), route.name, route.template.source
        )
        request.path = routed
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
    # Only now, for a handshake that will complete, the view: a class view's instance
    # is made per connection, and a rejected handshake is not one.
    shared, name, source = route.routing
    routed = _new_str(RoutedPath, target)  # routed_path(), inlined
    attributes = routed.__dict__
    attributes["params"] = params
    attributes["route"] = route.endpoint() if shared is None else shared
    attributes["name"] = name
    attributes["template"] = source
    request.path = routed
    # Accept(...) without the frozen dataclass's field-by-field object.__setattr__
    # calls, which cost about a tenth of a whole decision.
    accept = _new_object(Accept)
    accept.__dict__.update(
        path=routed, subprotocol=subprotocol, headers=_response_headers(checked, subprotocol)
    )
    return accept


async def resolve(router: Router, request: Request) -> Decision:
    """``decide()``, then the view's hook; never raises, never returns ServeHTTP."""
    decision = resolve_start(router, request)
    if resolve_pending(decision):
        return await resolve_rest(decision, request)
    return decision


def resolve_start(router: Router, request: Request) -> Decision:
    """The synchronous first step of ``resolve()``: ``decide()``, a failing view set-up
    logged and answered with 500. Unless ``resolve_pending()`` says so, this is
    already what ``resolve()`` returns; a transport that answers it at once, in the
    callback that read the request, saves a loop iteration before the 101."""
    try:
        return decide(router, request)
    except Exception:  # a class view whose __init__ raises: the user's bug, not the peer's
        logger.exception(
            "making the view for %s failed, request from %s",
            without_query(request.target),
            _peer(request),
        )
        return respond(HTTPStatus.INTERNAL_SERVER_ERROR, "the server could not set up this view")


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
            path.name or path.template,
            without_query(path),
            _peer(request),
        )
        return respond(HTTPStatus.INTERNAL_SERVER_ERROR, "the server could not check this request")


def _peer(request: Request) -> str:
    address = request.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address) if address else "an unknown peer"


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
        return Respond(int(status), _pairs(_header_items(headers)), body)
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
            return Respond(int(status), _pairs(_header_items(headers)), body)
        raise TypeError(
            "an HTTP view must return (status, headers, body), bytes or str, "
            f"not {type(result).__name__}"
        )
    except Exception:
        logger.exception(
            "HTTP view %r failed for %s from %s",
            path.name or path.template,
            without_query(path),
            _peer(request),
        )
        return respond(HTTPStatus.INTERNAL_SERVER_ERROR, "the view failed")
