"""resolve(): the view's process_request hook and plain-HTTP views, and the no-loop core."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any

import pytest

from websockets_routes import Router
from websockets_routes.core import Accept, Close, Headers, Request, Respond, RoutedPath
from websockets_routes.core import resolve as core_resolve

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
BASE = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def handshake(target: str = "/room/1", method: str = "GET", **kw: Any) -> Request:
    return Request(method, target, [*BASE, ("Authorization", "Bearer s3cret")], **kw)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never waits on I/O, with no event loop at all."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the coroutine tried to suspend")


def hooked_router(hook: Any, **route_options: Any) -> Router:
    router = Router(subprotocols=["chat"])

    class Room:
        process_request = hook

        async def handle(self, ws: Any, path: RoutedPath) -> None:
            pass

    router.route("/room/{room}", name="room", **route_options)(Room)
    return router


@pytest.mark.anyio
async def test_hook_returning_none_keeps_the_accept() -> None:
    seen: list[tuple[Any, Any]] = []

    async def hook(self: Any, path: RoutedPath, headers: Headers) -> None:
        seen.append((path, headers))
        path.context["user"] = "alice"

    router = hooked_router(hook)
    req = handshake("/room/7?x=1")
    decision = await router.resolve(req)
    assert isinstance(decision, Accept)
    assert ("Sec-WebSocket-Accept", ACCEPT) in decision.headers
    [(path, headers)] = seen
    assert path is decision.path and path.params == {"room": "7"} and path.query == "x=1"
    assert isinstance(headers, Headers) and headers is req.headers
    assert decision.path.context == {"user": "alice"}  # handed on to handle()


@pytest.mark.anyio
async def test_sync_hooks_work_too() -> None:
    def hook(self: Any, path: RoutedPath, headers: Headers) -> Any:
        return (403, [("X-Why", "sync")], b"no")

    decision = await hooked_router(hook).resolve(handshake())
    assert decision == Respond(403, [("X-Why", "sync")], b"no")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            (401, [("WWW-Authenticate", "Bearer")], b"who?"),
            Respond(401, [("WWW-Authenticate", "Bearer")], b"who?"),
        ),
        ((HTTPStatus.FORBIDDEN, [], b"no"), Respond(403, [], b"no")),
        ((HTTPStatus.FORBIDDEN, {"X-A": "1"}, "text"), Respond(403, [("X-A", "1")], b"text")),
        ((429, Headers([("Retry-After", "1")]), b""), Respond(429, [("Retry-After", "1")], b"")),
        (Respond(503, [], b"busy"), Respond(503, [], b"busy")),
    ],
)
async def test_hook_returning_a_response(result: Any, expected: Respond) -> None:
    async def hook(self: Any, path: RoutedPath, headers: Headers) -> Any:
        return result

    decision = await hooked_router(hook).resolve(handshake())
    assert decision == expected
    assert isinstance(decision, Respond)
    assert type(decision.status) is int  # an HTTPStatus comes out as a plain int


@pytest.mark.anyio
async def test_hook_returning_close_gets_the_101_headers_filled_in() -> None:
    async def hook(self: Any, path: RoutedPath, headers: Headers) -> Any:
        return Close(4003, "forbidden room")

    req = Request("GET", "/room/1", [*BASE, ("Sec-WebSocket-Protocol", "chat")])
    decision = await hooked_router(hook).resolve(req)
    assert isinstance(decision, Close)
    assert (decision.code, decision.reason) == (4003, "forbidden room")
    assert decision.path is not None and decision.path.params == {"room": "1"}
    assert list(decision.headers) == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ACCEPT),
        ("Sec-WebSocket-Protocol", "chat"),
    ]


@pytest.mark.anyio
async def test_hook_close_keeps_its_own_path() -> None:
    own = RoutedPath("/elsewhere")

    async def hook(self: Any, path: RoutedPath, headers: Headers) -> Any:
        return Close(4000, "", own)

    decision = await hooked_router(hook).resolve(handshake())
    assert isinstance(decision, Close) and decision.path is own and decision.headers


@pytest.mark.anyio
@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("boom"),
        "not a decision",  # a bad return value is the hook's fault too
        (999, [], b""),  # a bad status
        (200, [], 3),  # a bad body
    ],
)
async def test_hook_failure_becomes_500_and_a_log_line_naming_the_route(
    failure: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def hook(self: Any, path: RoutedPath, headers: Headers) -> Any:
        if isinstance(failure, Exception):
            raise failure
        return failure

    router = hooked_router(hook)
    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        decision = await router.resolve(handshake("/room/9", remote_address=("10.0.0.9", 4242)))
    assert isinstance(decision, Respond) and decision.status == 500
    assert decision.body
    [record] = [r for r in caplog.records if r.name == "websockets_routes"]
    message = record.getMessage()
    assert "'room'" in message and "/room/9" in message and "10.0.0.9" in message
    assert "s3cret" not in message and "s3cret" not in caplog.text
    # ...and the router keeps serving.
    assert isinstance(router.decide(handshake("/room/9")), Accept)


@pytest.mark.anyio
async def test_unnamed_route_is_logged_by_its_template(caplog: pytest.LogCaptureFixture) -> None:
    router = Router()

    class Room:
        async def process_request(self, path: RoutedPath, headers: Headers) -> None:
            raise ValueError("nope")

        async def handle(self, ws: Any, path: RoutedPath) -> None:
            pass

    router.route("/r/{id}")(Room)
    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        assert (await router.resolve(handshake("/r/1"))).status == 500  # type: ignore[union-attr]
    assert "/r/{id}" in caplog.text


@pytest.mark.anyio
async def test_hook_failure_log_leaves_out_the_query(caplog) -> None:
    router = Router()

    @router.route("/room/{room}", name="room")
    class Room:
        async def process_request(self, path, headers):
            raise ValueError("boom")

        async def handle(self, ws, path):  # pragma: no cover - never run
            pass

    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        decision = await router.resolve(Request("GET", "/room/a?session=s3cret", BASE))
    assert decision.status == 500
    assert "'room'" in caplog.text and "/room/a" in caplog.text
    assert "s3cret" not in caplog.text


@pytest.mark.anyio
async def test_hook_is_not_run_when_decide_rejects() -> None:
    calls: list[str] = []

    async def hook(self: Any, path: RoutedPath, headers: Headers) -> None:
        calls.append(str(path))

    router = hooked_router(hook, origins=["https://ok"])
    assert (await router.resolve(handshake())).status == 403  # type: ignore[union-attr]
    assert (await router.resolve(handshake("/nope"))).status == 404  # type: ignore[union-attr]
    assert calls == []


@pytest.mark.anyio
async def test_close_unmatched_decision_passes_through_resolve() -> None:
    router = Router(close_unmatched=True)
    decision = await router.resolve(handshake("/nope"))
    assert isinstance(decision, Close) and decision.code == 4040


@pytest.mark.anyio
async def test_class_view_gets_a_new_instance_per_connection() -> None:
    instances: list[Any] = []

    async def hook(self: Any, path: RoutedPath, headers: Headers) -> None:
        instances.append(self)
        assert path.route is self

    router = hooked_router(hook)
    first = await router.resolve(handshake())
    second = await router.resolve(handshake())
    assert isinstance(first, Accept) and isinstance(second, Accept)
    assert len(instances) == 2 and instances[0] is not instances[1]
    assert first.path.route is instances[0] and second.path.route is instances[1]


@pytest.mark.anyio
async def test_view_init_failure_is_500_and_logged_without_query(caplog) -> None:
    router = Router()

    @router.route("/broken/{id}")
    class Broken:
        def __init__(self) -> None:
            raise RuntimeError("no database")

        async def handle(self, ws, path):  # pragma: no cover - never made
            pass

    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        decision = await router.resolve(
            Request("GET", "/broken/1?token=s3cret", BASE, remote_address=("127.0.0.1", 5000))
        )
    assert isinstance(decision, Respond) and decision.status == 500
    assert "/broken/1" in caplog.text and "127.0.0.1:5000" in caplog.text
    assert "s3cret" not in caplog.text


@pytest.mark.anyio
async def test_function_view_route_is_an_object_whose_handle_is_the_function() -> None:
    router = Router()

    async def thing(ws: Any, path: RoutedPath) -> None:
        pass

    router.route("/thing/{id}")(thing)
    decision = await router.resolve(handshake("/thing/1"))
    assert isinstance(decision, Accept)
    assert decision.path.route.handle is thing
    assert not hasattr(decision.path.route, "process_request")


# Plain-HTTP routes


def http_router(result: Any) -> Router:
    router = Router()

    @router.http("/health/{part}", name="health")
    async def health(request: Request) -> Any:
        assert request.path is not None and request.path.params["part"]
        if isinstance(result, Exception):
            raise result
        return result

    return router


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_http_route_tuple_answer(method: str) -> None:
    router = http_router((HTTPStatus.OK, [("X-A", "1")], b"fine"))
    decision = await router.resolve(Request(method, "/health/db", [("Host", "x")]))
    # HEAD gets the same Respond; the transport sends its headers without the body.
    assert decision == Respond(200, [("X-A", "1")], b"fine")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("result", "content_type", "body"),
    [
        ("ok", "text/plain; charset=utf-8", b"ok"),
        (b"\x00raw", "text/plain; charset=utf-8", b"\x00raw"),
        ("<p>hi</p>", "text/html; charset=utf-8", b"<p>hi</p>"),
        ("caf\u00e9", "text/plain; charset=utf-8", "caf\u00e9".encode()),
    ],
)
async def test_http_route_str_or_bytes_answer(result: Any, content_type: str, body: bytes) -> None:
    decision = await http_router(result).resolve(Request("GET", "/health/x", []))
    assert isinstance(decision, Respond) and decision.status == 200
    assert ("Content-Type", content_type) in decision.headers and decision.body == body


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("result", "body"),
    [
        ({"ok": True, "n": [1, 2.5, None]}, b'{"ok":true,"n":[1,2.5,null]}'),
        ([], b"[]"),
        (["caf\u00e9", {"k": "\u2603"}], '["caf\u00e9",{"k":"\u2603"}]'.encode()),
    ],
)
async def test_http_route_dict_or_list_answer_is_json(result: Any, body: bytes) -> None:
    decision = await http_router(result).resolve(Request("GET", "/health/x", []))
    assert decision == Respond(200, [("Content-Type", "application/json")], body)


@pytest.mark.anyio
async def test_http_route_json_that_does_not_serialize_is_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        decision = await http_router({"when": object()}).resolve(Request("GET", "/health/x", []))
    assert isinstance(decision, Respond) and decision.status == 500
    assert "'health'" in caplog.text


@pytest.mark.anyio
async def test_http_route_other_method_is_405() -> None:
    decision = await http_router("ok").resolve(Request("POST", "/health/x", []))
    assert isinstance(decision, Respond) and decision.status == 405


@pytest.mark.anyio
@pytest.mark.parametrize("result", [RuntimeError("db down"), 42, (1000, [], b"")])
async def test_http_view_failure_is_500_and_logged(
    result: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="websockets_routes"):
        decision = await http_router(result).resolve(Request("GET", "/health/x", []))
    assert isinstance(decision, Respond) and decision.status == 500
    assert "'health'" in caplog.text and "/health/x" in caplog.text


@pytest.mark.anyio
async def test_sync_http_view() -> None:
    router = Router()
    router.http("/s")(lambda request: "sync")
    decision = await router.resolve(Request("GET", "/s", []))
    assert isinstance(decision, Respond) and decision.body == b"sync"


@pytest.mark.anyio
async def test_module_level_resolve_is_the_same_engine() -> None:
    router = http_router("ok")
    assert await core_resolve(router, Request("GET", "/health/x", [])) == await router.resolve(
        Request("GET", "/health/x", [])
    )


# The core with no event loop at all


def test_resolve_runs_without_any_event_loop() -> None:
    def hook(self: Any, path: RoutedPath, headers: Headers) -> Any:
        return None if path.params["room"] == "ok" else Close(4001, "no")

    async def async_hook(self: Any, path: RoutedPath, headers: Headers) -> Any:
        return (HTTPStatus.PAYMENT_REQUIRED, [], b"pay")

    router = hooked_router(hook)
    assert isinstance(run(router.resolve(handshake("/room/ok"))), Accept)
    closed = run(router.resolve(handshake("/room/other")))
    assert isinstance(closed, Close) and closed.code == 4001
    assert run(hooked_router(async_hook).resolve(handshake())).status == 402
    assert run(http_router("ok").resolve(Request("GET", "/health/x", []))).body == b"ok"
    assert run(router.resolve(handshake("/nope"))).status == 404


@pytest.mark.anyio
async def test_a_rejected_handshake_makes_no_class_view_instance() -> None:
    made: list[Any] = []
    router = Router()

    @router.route("/room/{room}")
    class Room:
        def __init__(self) -> None:
            made.append(self)

        async def handle(self, ws: Any, path: RoutedPath) -> None:
            pass

    rejected = Request("GET", "/room/1", [("Host", "x")])  # no Upgrade: 426
    assert (await router.resolve(rejected)).status == 426  # type: ignore[union-attr]
    assert (await router.resolve(handshake("/room/1", "POST"))).status == 405  # type: ignore[union-attr]
    assert made == []
    decision = await router.resolve(handshake("/room/1"))
    assert isinstance(decision, Accept) and made == [decision.path.route]
