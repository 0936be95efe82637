"""How log lines (and ``repr``\\ s) name a peer and a route: one rule for every transport.

- ``host_port(host, port)``: ``host:port``, ``[v6]:port`` for an IPv6 host.
- ``peer_name(address)``: the same for a socket address (a ``(host, port, ...)`` tuple
  or list); ``"an unknown peer"`` for none; ``str(address)`` for anything else (a
  Unix socket path).
- ``route_name(path)``: the route a request took: its name, else its template, else
  the path of the target without its query string (a query may carry a credential);
  ``"?"`` for no path at all.

Whether a close code is a normal one is ``core.errors.is_normal_close``.
"""

from __future__ import annotations

from typing import Any

from .paths import without_query

__all__ = ["host_port", "peer_name", "route_name"]


def host_port(host: Any, port: Any) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::1]:8765``)."""
    host = str(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def peer_name(address: Any) -> str:
    """``host:port`` (``[v6]:port``) of a peer address, for log lines."""
    if not address:
        return "an unknown peer"
    if isinstance(address, (tuple, list)) and len(address) >= 2:
        return host_port(address[0], address[1])
    return str(address)


def route_name(path: Any) -> str:
    """The route a connection took, for log lines: its name, else its template."""
    name = getattr(path, "name", None) or getattr(path, "template", None)
    if name:
        return str(name)
    return without_query(path) if path is not None else "?"
