"""Per-route policy: param converters, option overrides and handshake rate limits.

``route(..., convert=, max_size=, max_queue=, compression=, ping_interval=,
ping_timeout=, rate_limit=, rate_limit_key=)`` is checked here once, when the view is
decorated, and kept on the ``Route`` as one ``RoutePolicy`` (None for a route that sets
nothing, so such a route costs nothing per request):

- converters run in ``Router.lookup()`` after the matcher found the route: a
  ``ValueError``/``TypeError`` means the route does not match (the next one may);
- the option overrides are merged with the server's options once per server
  (``ServerOptions.merged()``, cached here) and ``Session`` switches to them when it
  carries out the decision;
- the rate limiter runs in ``resolve()`` (``handshake.resolve_start``), with the time
  given as a value; ``decide()`` stays pure.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from .decisions import Respond, respond

__all__ = [
    "INHERIT",
    "OPTION_NAMES",
    "PolicyWarning",
    "RateLimiter",
    "RoutePolicy",
    "check_rate_limit",
    "client_host",
    "make_policy",
    "warn_unapplied",
]


class _Inherit:
    """The default of a per-route option: the server's value (``None`` is a value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "INHERIT"

    def __bool__(self) -> bool:
        return False


INHERIT: Any = _Inherit()

logger = logging.getLogger("websockets_routes")

# The server options a route may override.
OPTION_NAMES = ("max_size", "max_queue", "compression", "ping_interval", "ping_timeout")

# Clients remembered per rate-limited route; past it the least recently seen is forgotten.
DEFAULT_MAX_CLIENTS = 10_000


def client_host(request: Any) -> Any:
    """The host of ``request.remote_address`` (a (host, port, ...) tuple, or a str for
    a Unix socket); None when unknown."""
    address = getattr(request, "remote_address", None)
    if isinstance(address, (tuple, list)):
        return address[0] if address else None
    return address if address else None


class RateLimiter:
    """At most ``count`` admitted handshakes per client per sliding window of
    ``seconds``: the times of the last ``count`` admissions of each client.

    State is bounded: at most ``max_clients`` clients (least recently seen forgotten
    first), each holding at most ``count`` times. Time comes in as ``now``.
    """

    __slots__ = ("count", "seconds", "max_clients", "_clients")

    def __init__(self, count: int, seconds: float, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        self.count = count
        self.seconds = seconds
        self.max_clients = max_clients
        self._clients: OrderedDict[Any, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        """How many clients are remembered."""
        return len(self._clients)

    def hit(self, key: Any, now: float) -> int:
        """Admit one handshake of ``key`` at ``now``: 0, or the whole seconds (>= 1)
        to wait when it is over the limit (then it is not counted)."""
        clients = self._clients
        times = clients.get(key)
        if times is None:
            if len(clients) >= self.max_clients:
                clients.popitem(last=False)
            clients[key] = deque((now,), maxlen=self.count)
            return 0
        clients.move_to_end(key)
        start = now - self.seconds
        while times and times[0] <= start:
            times.popleft()
        if len(times) < self.count:
            times.append(now)
            return 0
        return max(1, math.ceil(times[0] + self.seconds - now))

    def __repr__(self) -> str:
        return f"RateLimiter({self.count}, {self.seconds}, max_clients={self.max_clients})"


def check_rate_limit(value: Any, where: str) -> tuple[int, float] | None:
    """``(count, seconds)`` checked: count an int >= 1, seconds a number > 0; None
    for None or False (False: no limit, not even the router's default)."""
    if value is None or value is False:
        return None
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError(f"{where}: rate_limit must be (count, seconds), not {value!r}")
    count, seconds = value
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"{where}: rate_limit count must be an int >= 1, not {count!r}")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not seconds > 0
        or math.isinf(seconds)
    ):
        raise ValueError(f"{where}: rate_limit window must be seconds > 0, not {seconds!r}")
    return count, float(seconds)


def _check_overrides(overrides: dict[str, Any], where: str) -> tuple[tuple[str, Any], ...]:
    from .options import ServerOptions

    given = {name: value for name, value in overrides.items() if value is not INHERIT}
    if "compression" in given and given["compression"] is False:
        given["compression"] = None
    try:
        ServerOptions(**given)  # the server's own checks, with the server's messages
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    return tuple(given.items())


class RoutePolicy:
    """What a route sets beyond routing: converters, option overrides, a rate limit."""

    __slots__ = ("convert", "overrides", "limiter", "key", "_merged", "_unapplied_logged")

    def __init__(
        self,
        convert: tuple[tuple[str, Callable[[str], Any]], ...] | None,
        overrides: tuple[tuple[str, Any], ...],
        limiter: RateLimiter | None,
        key: Callable[[Any], Any] | None,
    ) -> None:
        self.convert = convert
        self.overrides = overrides
        self.limiter = limiter
        self.key = key
        # Server options -> merged options, one entry per server that served the route.
        self._merged: dict[Any, Any] = {}
        self._unapplied_logged = False

    def log_unapplied(self, template: str | None, server: str) -> None:
        """Log once, at the first connection a server serves on this route, that it
        cannot apply the route's option overrides (the websockets hook installed by
        hand, which has no start-up to warn at)."""
        if self.overrides and not self._unapplied_logged:
            self._unapplied_logged = True
            logger.warning(
                "%s cannot apply the %s set on route %r: its connections get the "
                "server's options",
                server,
                ", ".join(name for name, _ in self.overrides),
                template,
            )

    def options(self, server: Any) -> Any:
        """The server's options with this route's overrides (the server's own if none)."""
        if not self.overrides:
            return server
        merged = self._merged.get(id(server))
        if merged is None or merged[0] is not server:
            if len(self._merged) >= 64:  # servers come and go (tests): stay bounded
                self._merged.clear()
            merged = self._merged[id(server)] = (server, server.merged(self.overrides))
        return merged[1]

    def limit(self, request: Any, now: float) -> Respond | None:
        """``Respond(429)`` with ``Retry-After`` when this handshake is over the limit."""
        limiter = self.limiter
        if limiter is None:
            return None
        key = client_host(request) if self.key is None else self.key(request)
        if key is None:
            return None
        wait = limiter.hit(key, now)
        if not wait:
            return None
        return respond(
            HTTPStatus.TOO_MANY_REQUESTS,
            f"too many handshakes on this route: retry in {wait} s",
            [("Retry-After", str(wait))],
        )

    def describe(self) -> str:
        """What ``routes`` shows: converters, overrides and the rate limit."""
        parts = [f"{name}:{_callable_name(fn)}" for name, fn in self.convert or ()]
        parts += [f"{name}={value}" for name, value in self.overrides]
        if self.limiter is not None:
            parts.append(f"rate_limit={self.limiter.count}/{self.limiter.seconds:g}s")
        return ",".join(parts)

    def __repr__(self) -> str:
        return f"RoutePolicy({self.describe()})"


def _callable_name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else repr(fn)


def make_policy(
    template: Any,
    kind: str,
    *,
    convert: Mapping[str, Callable[[str], Any]] | None,
    overrides: dict[str, Any],
    rate_limit: Any,
    rate_limit_key: Callable[[Any], Any] | None,
    default_rate_limit: tuple[int, float] | None = None,
) -> RoutePolicy | None:
    """The checked policy of a route, None when it sets nothing; a clear TypeError or
    ValueError naming the route for bad input."""
    where = f"route {template.source!r}"
    converters = None
    if convert is not None:
        if not isinstance(convert, Mapping):
            raise TypeError(f"{where}: convert must be a dict of param name -> callable")
        for name, fn in convert.items():
            if name not in template.names:
                raise ValueError(
                    f"{where}: convert names {name!r}, which is not a param of the "
                    f"template (params: {', '.join(template.names) or 'none'})"
                )
            if not callable(fn):
                raise TypeError(f"{where}: the converter of {name!r} is not callable: {fn!r}")
        converters = tuple(convert.items()) or None
    limit = check_rate_limit(rate_limit, where)
    if rate_limit_key is not None and not callable(rate_limit_key):
        raise TypeError(f"{where}: rate_limit_key must be a function of (request)")
    given = any(value is not INHERIT for value in overrides.values())
    if kind == "http" and (given or limit is not None or rate_limit_key is not None):
        raise ValueError(f"HTTP {where}: WebSocket options and rate limits do not apply")
    checked = _check_overrides(overrides, where) if given else ()
    if rate_limit is None:
        limit = default_rate_limit
    if rate_limit_key is not None and limit is None:
        raise ValueError(f"{where}: rate_limit_key without a rate_limit")
    limiter = RateLimiter(*limit) if limit is not None else None
    if converters is None and not checked and limiter is None:
        return None
    return RoutePolicy(converters, checked, limiter, rate_limit_key)


class PolicyWarning(UserWarning):
    """Per-route options that a server cannot apply (the websockets hook, ASGI)."""


def warn_unapplied(router: Any, server: str, stacklevel: int = 3) -> None:
    """Warn, when a server starts, of the routes whose option overrides it cannot apply
    (converters and rate limits run in ``resolve()`` and apply everywhere)."""
    unapplied = [
        f"{route.template.source} ({', '.join(name for name, _ in route.policy.overrides)})"
        for route in getattr(router, "routes", ())
        if route.policy is not None and route.policy.overrides
    ]
    if unapplied:
        warnings.warn(
            f"{server} cannot apply per-route {', '.join(OPTION_NAMES)}: connections on "
            f"{'; '.join(unapplied)} get the server's own options. Serve the router with "
            "websockets_routes.transports.asyncio or .anyio to apply them.",
            PolicyWarning,
            stacklevel=stacklevel,
        )
