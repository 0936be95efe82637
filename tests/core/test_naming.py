"""core.naming and core.errors helpers: one way to name a peer, a route, a normal close."""

from __future__ import annotations

import sys

import pytest

from websockets_routes.core import RoutedPath
from websockets_routes.core.errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    handler_error_is_close,
    is_normal_close,
)
from websockets_routes.core.naming import host_port, peer_name, route_name


def test_host_port_brackets_ipv6() -> None:
    assert host_port("127.0.0.1", 8765) == "127.0.0.1:8765"
    assert host_port("::1", 8765) == "[::1]:8765"
    assert host_port("example.com", "80") == "example.com:80"


@pytest.mark.parametrize(
    ("address", "name"),
    [
        (("1.2.3.4", 5), "1.2.3.4:5"),
        (["1.2.3.4", 5], "1.2.3.4:5"),
        (("::1", 5, 0, 0), "[::1]:5"),
        (None, "an unknown peer"),
        ((), "an unknown peer"),
        ("/run/app.sock", "/run/app.sock"),
    ],
)
def test_peer_name(address: object, name: str) -> None:
    assert peer_name(address) == name


def test_route_name_never_shows_the_query() -> None:
    assert route_name(RoutedPath("/a/1?t=x", name="thing", template="/a/{id}")) == "thing"
    assert route_name(RoutedPath("/a/1?t=x", template="/a/{id}")) == "/a/{id}"
    assert route_name(RoutedPath("/a/1?t=x")) == "/a/1"
    assert route_name("/a/b?token=secret") == "/a/b"
    assert route_name(None) == "?"


def test_normal_close_codes() -> None:
    assert [c for c in (1000, 1001, 1002, 1005, 1006, 1011, 4000) if is_normal_close(c)] == [
        1000,
        1001,
        1005,
    ]
    assert not is_normal_close(None)
    assert type(ConnectionClosed.for_code(1005)) is ConnectionClosedOK
    assert type(ConnectionClosed.for_code(1006)) is ConnectionClosedError


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is 3.11+")
def test_handler_error_is_close_alone_or_grouped() -> None:
    closed = ConnectionClosedOK(1000)
    assert handler_error_is_close(closed)
    assert handler_error_is_close(ExceptionGroup("g", [closed, ConnectionClosedError(1006)]))  # noqa: F821
    assert not handler_error_is_close(ExceptionGroup("g", [closed, ValueError()]))  # noqa: F821
    assert not handler_error_is_close(ValueError())
