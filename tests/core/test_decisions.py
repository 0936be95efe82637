"""core.decisions: the values decide() and resolve() return are frozen and checked."""

from __future__ import annotations

import dataclasses
from http import HTTPStatus

import pytest

from websockets_routes.core import Accept, Close, Respond, RoutedPath


def test_decisions_are_frozen_with_str_header_pairs() -> None:
    respond = Respond(HTTPStatus.NOT_FOUND, [(b"X-A", b"1"), ("X-N", 2)], "gone")  # type: ignore[list-item]
    assert respond.status == 404 and respond.body == b"gone"
    assert respond.headers == [("X-A", "1"), ("X-N", "2")]
    close = Close(4040, "bye", headers=[(b"Upgrade", b"websocket")])
    assert close.headers == [("Upgrade", "websocket")] and close.path is None
    for decision in (respond, close, Accept(RoutedPath("/"), None, [])):
        with pytest.raises(dataclasses.FrozenInstanceError):
            decision.headers = []  # type: ignore[misc]


def test_respond_and_close_validate_their_values() -> None:
    for status in (99, 600, "200"):
        with pytest.raises(ValueError):
            Respond(status)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Respond(200, [], 3)  # type: ignore[arg-type]
    for code in (999, 1005, 1006, 1015, 2000, 5000):
        with pytest.raises(ValueError):
            Close(code)
    with pytest.raises(ValueError):
        Close(4000, "x" * 124)
    assert Close(4999, "x" * 123).code == 4999
