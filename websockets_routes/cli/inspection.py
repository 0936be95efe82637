"""The commands that look at a router without serving it: ``routes``, ``check`` and
``asyncapi``."""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Sequence
from typing import Any

from ..core import Accept, Close, Decision, Request, Respond, Router, ServeHTTP
from .common import UsageError, load_router

BODY_SHOWN = 400
SAMPLE_KEY = base64.b64encode(b"websockets-route").decode()


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"header {text!r} must look like 'Name: value'")
    return name.strip(), value.strip()


def build_request(
    target: str, header_args: Sequence[str], method: str = "GET", upgrade: bool = True
) -> Request:
    """A handshake request: a valid WebSocket GET unless headers override it."""
    given = [_parse_header(h) for h in header_args]
    names = {name.lower() for name, _ in given}
    defaults = [("Host", "localhost")]
    if upgrade:
        defaults += [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", SAMPLE_KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    headers = [(n, v) for n, v in defaults if n.lower() not in names] + given
    return Request(method, target, headers)


def describe(decision: Decision) -> str:
    """A human-readable account of a decision."""
    lines: list[str] = []
    if isinstance(decision, (Accept, Close, ServeHTTP)) and decision.path is not None:
        path = decision.path
        if path.template is not None:
            lines.append(
                f"route    {path.template}"
                + (f" (name {path.name})" if path.name else "")
                + f" -> {_view_name(path.route)}"
            )
            lines.append(f"params   {path.params}")
    if isinstance(decision, Accept):
        lines.insert(0, "Accept   101 Switching Protocols")
        lines.append(f"subprotocol {decision.subprotocol}")
        lines += [f"  {name}: {value}" for name, value in decision.headers]
    elif isinstance(decision, Close):
        lines.insert(0, f"Close    accept, then close with {decision.code} {decision.reason!r}")
    elif isinstance(decision, ServeHTTP):
        lines.insert(0, "HTTP     plain-HTTP route (its view answers)")
    elif isinstance(decision, Respond):
        lines.append(f"Respond  HTTP {decision.status}")
        lines += [f"  {name}: {value}" for name, value in decision.headers]
        if decision.body:
            text = decision.body[:BODY_SHOWN].decode("utf-8", "replace").rstrip("\n")
            if len(decision.body) > BODY_SHOWN:
                text += f"\n... ({len(decision.body)} bytes in all)"
            lines += ["", text]
    return "\n".join(lines)


def _view_name(view: Any) -> str:
    handle = getattr(view, "handle", None)
    if type(view).__name__ == "FunctionView" and handle is not None:
        return f"{handle.__module__}.{handle.__qualname__}"
    return f"{type(view).__module__}.{type(view).__qualname__}"


def route_table(router: Router) -> str:
    rows = [("TEMPLATE", "NAME", "KIND", "VIEW", "SUBPROTOCOLS", "ORIGINS", "POLICY")]
    for route in router.routes:
        endpoint = route.endpoint
        # What the route inherits from the router counts as much as what it sets.
        subprotocols = route.subprotocols if route.subprotocols is not None else router.subprotocols
        origins = route.origins if route.origins is not None else router.origins
        if route.kind == "http":
            subprotocols = origins = None
        rows.append(
            (
                route.template.source,
                route.name or "-",
                route.kind,
                f"{endpoint.__module__}.{endpoint.__qualname__}",
                ",".join(subprotocols) if subprotocols else "-",
                ",".join(str(o) for o in origins) if origins is not None else "-",
                route.policy.describe() if route.policy is not None else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def check_command(args: argparse.Namespace) -> int:
    router = load_router(args.router)
    request = build_request(args.target, args.header, args.method, not args.no_upgrade)
    if args.no_hooks:
        decision = router.decide(request)
    else:
        import anyio

        decision = anyio.run(router.resolve, request)
    print(describe(decision))
    if args.exit_code and not _succeeded(router, decision, args):
        return 1
    return 0


def _succeeded(router: Router, decision: Decision, args: argparse.Namespace) -> bool:
    """``check --exit-code``: an Accept, or the 2xx answer of a plain-HTTP route's view
    (``ServeHTTP`` with --no-hooks, where the view does not run)."""
    if isinstance(decision, (Accept, ServeHTTP)):
        return True
    if not isinstance(decision, Respond) or not 200 <= decision.status < 300:
        return False
    # A 2xx counts when a plain-HTTP route's view gave it, not a hook refusing a handshake.
    again = build_request(args.target, args.header, args.method, not args.no_upgrade)
    return isinstance(router.decide(again), ServeHTTP)


def asyncapi_command(args: argparse.Namespace) -> int:
    router = load_router(args.router)
    try:
        document = router.asyncapi(args.title, args.version, args.server or None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.yaml:
        try:
            import yaml
        except ImportError:
            raise UsageError("--yaml needs PyYAML: pip install pyyaml") from None
        print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")
    else:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0
