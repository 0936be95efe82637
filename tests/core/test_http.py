"""core.http: Headers (a case-insensitive multi-mapping) and Request."""

from __future__ import annotations

import pytest

from websockets_routes.core import Headers, Request


def test_headers_is_a_case_insensitive_multi_mapping() -> None:
    h = Headers([("Host", "x"), (b"X-Multi", b"1"), ("x-multi", "2"), ("Origin", "o")])
    assert h["host"] == h["HOST"] == "x"
    assert h["X-MULTI"] == "1, 2"  # repeated fields join with ", "
    assert h.get_all("x-multi") == ["1", "2"]
    assert h.get("x-multi") == "1, 2"
    assert h.get("missing") is None and h.get("missing", "d") == "d"
    assert h.get_all("missing") == []
    assert "ORIGIN" in h and "missing" not in h and 3 not in h
    assert h.items() == [("Host", "x"), ("X-Multi", "1"), ("x-multi", "2"), ("Origin", "o")]
    assert list(h) == ["Host", "X-Multi", "x-multi", "Origin"]
    assert len(h) == 4
    with pytest.raises(KeyError):
        h["missing"]
    assert Headers(h) == h and Headers() != h


def test_headers_read_bytes_as_latin1() -> None:
    h = Headers([(b"X-Raw", b"caf\xe9")])
    assert h["x-raw"] == "caf\u00e9"
    assert all(isinstance(n, str) and isinstance(v, str) for n, v in h.items())


def test_request_keeps_headers_as_headers_and_decodes_bytes() -> None:
    req = Request(b"GET", b"/thing/1?q", [(b"Host", b"x")], remote_address=("1.2.3.4", 5))
    assert req.method == "GET" and req.target == "/thing/1?q"
    assert isinstance(req.headers, Headers) and req.headers["host"] == "x"
    assert req.remote_address == ("1.2.3.4", 5)
    given = Headers([("Host", "y")])
    assert Request("GET", "/", given).headers is given
    with pytest.raises(TypeError):
        Request("GET", "/", [("Host", 3)])  # type: ignore[list-item]
