"""An AsyncAPI 3.0.0 document of a router's WebSocket routes.

The router knows every route, param and subprotocol as values, so the document is
built from them, with nothing written by hand: one channel per WebSocket route (its
address the template with ``{param}`` placeholders), the params with their patterns,
a ``receive`` operation (what clients send the server) and a ``send`` operation (what
the server sends them), the view's docstring and the subprotocols as descriptions.
Plain-HTTP routes are not channels. The document validates against the official
AsyncAPI 3.0.0 JSON Schema (tests/data/asyncapi/).
"""

from __future__ import annotations

import inspect
import re
from typing import Any
from urllib.parse import urlsplit

__all__ = ["asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
WEBSOCKETS_BINDING = {"method": "GET", "bindingVersion": "0.1.0"}
# Messages are text or binary frames; what they hold is the app's to say.
MESSAGES = {
    "text": {
        "name": "text",
        "title": "Text message",
        "contentType": "text/plain",
        "payload": {"type": "string"},
    },
    "binary": {
        "name": "binary",
        "title": "Binary message",
        "contentType": "application/octet-stream",
        "payload": {"type": "string", "format": "binary"},
    },
}
_ID_CHARS = re.compile(r"[^\w\-]+")
_SERVER_ID_CHARS = re.compile(r"[^A-Za-z0-9_\-]+")  # the form the spec asks of map keys


def asyncapi_document(
    router: Any,
    title: str = "WebSocket API",
    version: str = "1.0.0",
    servers: dict[str, Any] | list[str] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``router`` (see ``Router.asyncapi``)."""
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": version},
    }
    if servers:
        document["servers"] = _servers(servers)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for route in router.routes:
        if route.kind != "websocket":
            continue
        channel_id = _unique(route.name or _id_from(route.template.address()), channels)
        channels[channel_id] = _channel(route, router)
        ref = {"$ref": f"#/channels/{_escape(channel_id)}"}
        messages = [
            {"$ref": f"#/channels/{_escape(channel_id)}/messages/{name}"} for name in MESSAGES
        ]
        operations[f"{channel_id}.receive"] = {
            "action": "receive",
            "channel": ref,
            "summary": "What a client sends on this route.",
            "messages": messages,
        }
        operations[f"{channel_id}.send"] = {
            "action": "send",
            "channel": ref,
            "summary": "What the server sends to a client on this route.",
            "messages": messages,
        }
    document["channels"] = channels
    document["operations"] = operations
    return document


def _channel(route: Any, router: Any) -> dict[str, Any]:
    template = route.template
    channel: dict[str, Any] = {"address": template.address(), "title": template.source}
    description = [_docstring(route.endpoint)]
    subprotocols = route.subprotocols if route.subprotocols is not None else router.subprotocols
    if subprotocols:
        description.append(
            "Subprotocols, in the server's order of preference: " + ", ".join(subprotocols)
        )
    text = "\n\n".join(part for part in description if part)
    if text:
        channel["description"] = text
    patterns = template.patterns()
    requirements = route.requirements or {}
    if patterns:
        channel["parameters"] = {
            name: {"description": _param_description(requirements.get(name) or pattern)}
            for name, pattern in patterns.items()
        }
    channel["messages"] = {name: dict(message) for name, message in MESSAGES.items()}
    channel["bindings"] = {"ws": dict(WEBSOCKETS_BINDING)}
    return channel


def _param_description(pattern: str | None) -> str:
    if pattern is None:
        return "One path segment (no '/')."
    if pattern == ".*":
        return "The rest of the path, '/' included."
    return f"A value matching the regular expression {pattern}"


def _docstring(endpoint: Any) -> str:
    doc = inspect.getdoc(endpoint)
    if doc is None and isinstance(endpoint, type):
        doc = inspect.getdoc(getattr(endpoint, "handle", None))
    return doc or ""


def _id_from(address: str) -> str:
    """A channel id from an address: ``/rooms/{room}`` -> ``rooms_room``."""
    return _ID_CHARS.sub("_", address).strip("_") or "root"


def _unique(channel_id: str, taken: dict[str, Any]) -> str:
    candidate, n = channel_id, 2
    while candidate in taken:
        candidate, n = f"{channel_id}_{n}", n + 1
    return candidate


def _escape(channel_id: str) -> str:
    """A JSON Pointer token (RFC 6901)."""
    return channel_id.replace("~", "~0").replace("/", "~1")


def _servers(servers: dict[str, Any] | list[str]) -> dict[str, Any]:
    if isinstance(servers, dict):
        return dict(servers)
    found: dict[str, Any] = {}
    for url in servers:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError(f"a server URL is ws://host[:port][/path] or wss://..., not {url!r}")
        server: dict[str, Any] = {"host": parts.netloc, "protocol": parts.scheme}
        if parts.path not in ("", "/"):
            server["pathname"] = parts.path
        name = _SERVER_ID_CHARS.sub("_", parts.netloc).strip("_") or "server"
        found[_unique(name, found)] = server
    return found
