"""The handshake decision engine: the accept key and the rules of decide() (Headers and
Request are in test_http.py, the decision values in test_decisions.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from websockets_routes import Router
from websockets_routes.core import (
    Accept,
    Close,
    Request,
    Respond,
    RoutedPath,
    ServeHTTP,
    accept_key,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 4.2.2 sample nonce
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # its Sec-WebSocket-Accept, from the RFC

BASE = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def handshake(
    target: str | bytes = "/thing/1",
    method: str | bytes = "GET",
    *,
    drop: Iterable[str] = (),
    replace: dict[str, str] | None = None,
    extra: Iterable[tuple[Any, Any]] = (),
) -> Request:
    dropped = {d.lower() for d in drop} | {r.lower() for r in (replace or {})}
    headers: list[tuple[Any, Any]] = [(n, v) for n, v in BASE if n.lower() not in dropped]
    headers += list((replace or {}).items()) + list(extra)
    return Request(method, target, headers)


async def view(ws: Any, path: RoutedPath) -> None:
    pass


@pytest.fixture
def router() -> Router:
    router = Router()
    router.route("/thing/{id}", name="thing")(view)
    return router


def status_of(decision: Any) -> int:
    assert isinstance(decision, Respond), decision
    return decision.status


def header(decision: Any, name: str) -> list[str]:
    return [v for n, v in decision.headers if n.lower() == name.lower()]


# The accept key


def test_accept_key_matches_rfc_6455_sample() -> None:
    assert accept_key(KEY) == ACCEPT


# The rules, in order


def test_valid_handshake_is_accepted_with_the_full_101_headers(router: Router) -> None:
    decision = router.decide(handshake("/thing/42?x=1"))
    assert isinstance(decision, Accept)
    assert decision.subprotocol is None
    assert decision.headers == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ACCEPT),
    ]
    assert str(decision.path) == "/thing/42?x=1"
    assert decision.path.params == {"id": "42"} and decision.path.name == "thing"
    assert decision.path.query == "x=1"


def test_bytes_everywhere_are_accepted(router: Router) -> None:
    req = Request(b"GET", b"/thing/1", [(n.encode(), v.encode()) for n, v in BASE])
    assert isinstance(router.decide(req), Accept)


def test_same_request_same_decision(router: Router) -> None:
    for req in (handshake(), handshake("/nope"), handshake(drop=["Host"])):
        assert router.decide(req) == router.decide(req)


@pytest.mark.parametrize(
    "target",
    [
        "thing/1",
        "*",
        "http://example.com/thing/1",
        "",
        "/thing/1#frag",
        "/thing/ 1",
        "/thing/\x00",
        "/thing/\u00e9",
        "/thing/%zz",
        "/thing/%4",
        b"/thing/\xff",
        b"/thing/\r\n",
    ],
)
def test_rule1_unparseable_target_is_400(router: Router, target: str | bytes) -> None:
    decision = router.decide(handshake(target))
    assert status_of(decision) == 400
    assert decision.body  # type: ignore[union-attr]


def test_rule1_bad_escape_in_the_query_is_fine(router: Router) -> None:
    assert isinstance(router.decide(handshake("/thing/1?q=%zz")), Accept)


def test_an_escape_that_is_not_utf8_is_bad_bytes(router: Router) -> None:
    assert status_of(router.decide(handshake("/thing/%ff"))) == 400


def test_escape_that_is_not_utf8_is_a_bad_request_not_a_miss() -> None:
    router = Router()

    @router.route("/thing/{id}")
    async def thing(ws, path):  # pragma: no cover - never connected
        pass

    decision = router.decide(Request("GET", "/thing/%FF", BASE))
    assert isinstance(decision, Respond) and decision.status == 400
    assert b"not UTF-8" in decision.body
    assert router.decide(Request("GET", "/other/%C3%A9", BASE)).status == 404


@pytest.mark.parametrize(
    "request_",
    [
        Request("G ET", "/thing/1", BASE),
        Request(b"G\xffT", "/thing/1", BASE),
        Request("GET", "/thing/1", [*BASE, ("Bad Name", "x")]),
        Request("GET", "/thing/1", [*BASE, ("X-A:b", "x")]),
        Request("GET", "/thing/1", [("A:", "x"), *BASE]),
        Request("GET", "/thing/1", [*BASE, ("", "x")]),
        Request("GET", "/thing/1", [*BASE, ("X-Evil", "a\r\nInjected: 1")]),
        Request("GET", "/thing/1", [*BASE, ("X-Nul", "a\x00b")]),
        Request("GET", "/thing/1", [*BASE, (b"X-Bin", b"\x7f")]),
        Request("GET", "/thing/1", [*BASE, ("X-Wide", "\u20ac")]),
        Request("GET", "/nope", [*BASE, ("X-Evil", "a\nb")]),
    ],
)
def test_bad_bytes_in_method_or_headers_are_400_never_an_exception(
    router: Router, request_: Request
) -> None:
    assert status_of(router.decide(request_)) == 400


def test_obs_text_in_a_header_value_is_allowed(router: Router) -> None:
    assert isinstance(router.decide(handshake(extra=[(b"X-Latin", b"caf\xe9")])), Accept)


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD", "DELETE"])
def test_rule2_unknown_path_is_404_whatever_the_method(router: Router, method: str) -> None:
    decision = router.decide(handshake("/nope?thing/1", method))
    assert status_of(decision) == 404
    assert b"/nope" in decision.body  # type: ignore[union-attr]
    assert status_of(router.decide(handshake("/nope", method, drop=["Upgrade"]))) == 404


def test_rule2_close_unmatched_closes_a_valid_get_with_4040() -> None:
    router = Router(close_unmatched=True, subprotocols=["chat"])
    router.route("/thing/{id}")(view)
    decision = router.decide(handshake("/nope?q=1", extra=[("Sec-WebSocket-Protocol", "chat")]))
    assert isinstance(decision, Close)
    assert decision.code == 4040 and decision.reason
    assert decision.path is not None and str(decision.path) == "/nope?q=1"
    assert ("Sec-WebSocket-Accept", ACCEPT) in decision.headers
    assert ("Upgrade", "websocket") in decision.headers
    assert ("Connection", "Upgrade") in decision.headers


def test_rule2_close_unmatched_still_applies_rules_4_to_6_then_404() -> None:
    router = Router(close_unmatched=True)
    assert status_of(router.decide(handshake("/nope", drop=["Upgrade"]))) == 426
    assert (
        status_of(router.decide(handshake("/nope", replace={"Sec-WebSocket-Version": "8"}))) == 426
    )
    assert status_of(router.decide(handshake("/nope", drop=["Host"]))) == 400
    assert status_of(router.decide(handshake("/nope", replace={"Sec-WebSocket-Key": "x"}))) == 400
    for method in ("POST", "HEAD", "PUT"):
        assert status_of(router.decide(handshake("/nope", method))) == 404
    assert status_of(router.decide(handshake("nope"))) == 400  # rule 1 still first


def test_rule2_close_unmatched_does_not_check_origins() -> None:
    router = Router(close_unmatched=True, origins=["https://ok"])
    assert isinstance(router.decide(handshake("/nope", extra=[("Origin", "https://bad")])), Close)


def test_rule3_http_route_answers_get_and_head_else_405() -> None:
    router = Router()

    @router.http("/health", name="health")
    async def health(request: Request) -> str:
        return "ok"

    for method in ("GET", "HEAD"):
        decision = router.decide(Request(method, "/health?full=1", [("Host", "x")]))
        assert isinstance(decision, ServeHTTP)
        assert str(decision.path) == "/health?full=1" and decision.path.name == "health"
    decision = router.decide(Request("POST", "/health", [("Host", "x")]))
    assert status_of(decision) == 405
    assert sorted(v.strip() for v in header(decision, "Allow")[0].split(",")) == ["GET", "HEAD"]


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "OPTIONS", "get"])
def test_rule3_websocket_route_with_another_method_is_405_allow_get(
    router: Router, method: str
) -> None:
    decision = router.decide(handshake(method=method))
    assert status_of(decision) == 405
    assert header(decision, "Allow") == ["GET"]


@pytest.mark.parametrize(
    ("upgrade", "connection"),
    [
        (None, "Upgrade"),
        ("websocket", None),
        (None, None),
        ("h2c", "Upgrade"),
        ("websocket", "keep-alive"),
        ("websockets", "Upgrade"),
        ("", "Upgrade"),
        ("websocket", "Upgrade-Insecure"),
    ],
)
def test_rule4_missing_or_wrong_upgrade_is_426(
    router: Router, upgrade: str | None, connection: str | None
) -> None:
    extra = []
    if upgrade is not None:
        extra.append(("Upgrade", upgrade))
    if connection is not None:
        extra.append(("Connection", connection))
    decision = router.decide(handshake(drop=["Upgrade", "Connection"], extra=extra))
    assert status_of(decision) == 426
    assert header(decision, "Upgrade") == ["websocket"]


@pytest.mark.parametrize(
    ("upgrade", "connection"),
    [
        ("WebSocket", "upgrade"),
        ("WEBSOCKET", "UPGRADE"),
        ("h2c, websocket", "keep-alive, Upgrade"),
        ("websocket", "keep-alive,upgrade"),
        ("websocket", "  Upgrade  ,  close"),
    ],
)
def test_rule4_token_lists_are_case_insensitive(
    router: Router, upgrade: str, connection: str
) -> None:
    req = handshake(replace={"Upgrade": upgrade, "Connection": connection})
    assert isinstance(router.decide(req), Accept)


def test_rule4_tokens_may_come_in_several_fields(router: Router) -> None:
    req = handshake(
        drop=["Connection"], extra=[("Connection", "keep-alive"), ("connection", "Upgrade")]
    )
    assert isinstance(router.decide(req), Accept)


@pytest.mark.parametrize("version", [None, "8", "12", "14", "13, 8", "", "thirteen"])
def test_rule5_version_not_13_is_426_naming_13(router: Router, version: str | None) -> None:
    extra = [] if version is None else [("Sec-WebSocket-Version", version)]
    decision = router.decide(handshake(drop=["Sec-WebSocket-Version"], extra=extra))
    assert status_of(decision) == 426
    assert header(decision, "Sec-WebSocket-Version") == ["13"]


def test_rule5_comes_after_rule4(router: Router) -> None:
    req = handshake(drop=["Upgrade"], replace={"Sec-WebSocket-Version": "8"})
    assert header(router.decide(req), "Upgrade") == ["websocket"]


def test_rule6_missing_or_repeated_host_is_400(router: Router) -> None:
    assert status_of(router.decide(handshake(drop=["Host"]))) == 400
    assert status_of(router.decide(handshake(extra=[("Host", "again")]))) == 400


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "dGhlIHNhbXBsZSBub25jZQ",  # no padding
        "dGhlIHNhbXBsZSBub25jZQ=",
        "dGhlIHNhbXBsZSBub25jZQ===",
        "dGhlIHNhbXBsZSBub25jZSE=",  # 24 characters, but 17 bytes
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # 21 bytes
        "!!!!!!!!!!!!!!!!!!!!!!==",
        "dGhlIHNhbXBsZSBub25j\u00e9Q==",
        "dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==",
        "dGhlIHNhbXBsZSBub25jZQ=\n",
        "dGhlIHNhbXBsZSBub25jZQ-=",
    ],
)
def test_rule6_bad_key_is_400(router: Router, key: str | None) -> None:
    extra = [] if key is None else [("Sec-WebSocket-Key", key)]
    assert status_of(router.decide(handshake(drop=["Sec-WebSocket-Key"], extra=extra))) == 400


@pytest.mark.parametrize(
    "key",
    [
        "AAAAAAAAAAAAAAAAAAAAAA==",
        "/+/+/+/+/+/+/+/+/+/+/w==",
        "dGhlIHNhbXBsZSBub25jZR==",  # non-zero padding bits: still 16 bytes
        "  dGhlIHNhbXBsZSBub25jZQ==  ",
    ],
)
def test_rule6_any_base64_of_16_bytes_is_a_good_key(router: Router, key: str) -> None:
    decision = router.decide(handshake(replace={"Sec-WebSocket-Key": key}))
    assert isinstance(decision, Accept)
    assert header(decision, "Sec-WebSocket-Accept") == [accept_key(key.strip())]


def test_rule6_comes_after_rule5(router: Router) -> None:
    req = handshake(drop=["Host"], replace={"Sec-WebSocket-Version": "8"})
    assert status_of(router.decide(req)) == 426


def test_accept_value_follows_the_key(router: Router) -> None:
    key = "AQIDBAUGBwgJCgsMDQ4PEA=="  # bytes 1..16
    decision = router.decide(handshake(replace={"Sec-WebSocket-Key": key}))
    assert isinstance(decision, Accept)
    assert header(decision, "Sec-WebSocket-Accept") == [accept_key(key)]
    import base64
    import hashlib

    expected = base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    ).decode()
    assert accept_key(key) == expected


def test_rule7_origins_on_the_router() -> None:
    router = Router(origins=["https://ok.example"])
    router.route("/thing/{id}")(view)
    ok = handshake(extra=[("Origin", "https://ok.example")])
    assert isinstance(router.decide(ok), Accept)
    for origin in ("https://bad.example", "https://OK.example", "null", ""):
        decision = router.decide(handshake(extra=[("Origin", origin)]))
        assert status_of(decision) == 403
        assert decision.body  # type: ignore[union-attr]
    assert status_of(router.decide(handshake())) == 403  # no Origin, None not listed


def test_rule7_none_lets_requests_without_origin_through() -> None:
    router = Router(origins=[None, "https://ok.example"])
    router.route("/thing/{id}")(view)
    assert isinstance(router.decide(handshake()), Accept)
    assert isinstance(router.decide(handshake(extra=[("Origin", "https://ok.example")])), Accept)
    assert status_of(router.decide(handshake(extra=[("Origin", "https://x")]))) == 403


def test_rule7_repeated_origin_is_403() -> None:
    router = Router(origins=["https://ok.example", None])
    router.route("/thing/{id}")(view)
    twice = [("Origin", "https://ok.example"), ("Origin", "https://ok.example")]
    assert status_of(router.decide(handshake(extra=twice))) == 403


def test_several_origin_headers_are_refused_with_a_clear_reason() -> None:
    router = Router(origins=["https://a.example"])

    @router.route("/x")
    async def x(ws, path):  # pragma: no cover - never connected
        pass

    headers = [*BASE, ("Origin", "https://a.example"), ("Origin", "https://b.example")]
    decision = router.decide(Request("GET", "/x", headers))
    assert decision.status == 403
    assert b"several Origin headers" in decision.body


def test_rule7_route_origins_override_the_router() -> None:
    router = Router(origins=["https://router.example"])
    router.route("/open", origins=[None])(view)
    router.route("/strict", origins=["https://route.example"])(view)
    assert isinstance(router.decide(handshake("/open")), Accept)
    assert status_of(router.decide(handshake("/strict"))) == 403
    from_router = [("Origin", "https://router.example")]
    assert status_of(router.decide(handshake("/strict", extra=from_router))) == 403
    assert status_of(router.decide(handshake("/open", extra=from_router))) == 403


def test_rule7_no_origins_means_any_origin(router: Router) -> None:
    assert isinstance(router.decide(handshake(extra=[("Origin", "https://any")])), Accept)


def test_rule7_comes_after_rule6() -> None:
    router = Router(origins=["https://ok.example"])
    router.route("/thing/{id}")(view)
    assert status_of(router.decide(handshake(drop=["Host"]))) == 400


def test_origins_of_an_included_router_hold_through_the_parent() -> None:
    api = Router(origins=["https://app.example"])
    api.route("/thing/{id}")(view)
    root = Router()
    root.include("/api", api)
    assert status_of(root.decide(handshake("/api/thing/1", extra=[("Origin", "https://x")]))) == 403
    ok = handshake("/api/thing/1", extra=[("Origin", "https://app.example")])
    assert isinstance(root.decide(ok), Accept)


# Subprotocols


def subprotocol_router(**route_options: Any) -> Router:
    router = Router(subprotocols=["chat.v2", "chat.v1"])
    router.route("/thing/{id}", **route_options)(view)
    return router


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["chat.v1, chat.v2"], "chat.v2"),  # server preference, not client order
        (["chat.v1"], "chat.v1"),
        (["chat.v1", "chat.v2"], "chat.v2"),  # several header fields
        (["other"], None),  # none matches: accept without one
        ([], None),
        (["CHAT.V2"], None),  # subprotocol names are case-sensitive
    ],
)
def test_subprotocol_by_server_preference(offered: list[str], chosen: str | None) -> None:
    router = subprotocol_router()
    extra = [("Sec-WebSocket-Protocol", value) for value in offered]
    decision = router.decide(handshake(extra=extra))
    assert isinstance(decision, Accept)
    assert decision.subprotocol == chosen
    assert header(decision, "Sec-WebSocket-Protocol") == ([] if chosen is None else [chosen])


def test_route_subprotocols_override_the_router() -> None:
    router = subprotocol_router(subprotocols=["json"])
    extra = [("Sec-WebSocket-Protocol", "chat.v2, json")]
    assert router.decide(handshake(extra=extra)).subprotocol == "json"  # type: ignore[union-attr]
    none = subprotocol_router(subprotocols=[])
    assert none.decide(handshake(extra=extra)).subprotocol is None  # type: ignore[union-attr]


def test_no_subprotocol_configured_ignores_the_offer(router: Router) -> None:
    decision = router.decide(handshake(extra=[("Sec-WebSocket-Protocol", "chat")]))
    assert isinstance(decision, Accept) and decision.subprotocol is None
    assert header(decision, "Sec-WebSocket-Protocol") == []


# Every Respond says why


def test_every_respond_has_a_short_plain_text_body(router: Router) -> None:
    requests = [
        handshake("bad"),
        handshake("/nope"),
        handshake(method="POST"),
        handshake(drop=["Upgrade"]),
        handshake(replace={"Sec-WebSocket-Version": "7"}),
        handshake(drop=["Host"]),
    ]
    for req in requests:
        decision = router.decide(req)
        assert isinstance(decision, Respond)
        assert 0 < len(decision.body) < 200
        assert decision.body.decode().startswith(str(decision.status))
        assert header(decision, "Content-Type") == ["text/plain; charset=utf-8"]
