"""What the handshake engine decides: small frozen values a transport carries out.

``Accept`` (101), ``Respond`` (plain HTTP, no upgrade), ``Close`` (101, then a close
frame) and ``ServeHTTP`` (a plain-HTTP route matched: ``resolve()`` runs its view).
Every ``headers`` in them is a list of ``(str, str)`` pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from .http import text
from .paths import RoutedPath

__all__ = [
    "Accept",
    "Respond",
    "Close",
    "ServeHTTP",
    "Decision",
    "check_close_code",
    "header_pairs",
    "respond",
]


def header_pairs(headers: Iterable[tuple[Any, Any]]) -> list[tuple[str, str]]:
    """``(str, str)`` pairs of header fields given as str, bytes (latin-1) or int."""
    return [
        (text(name), text(str(value) if isinstance(value, int) else value))
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
        object.__setattr__(self, "headers", header_pairs(self.headers))


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
        object.__setattr__(self, "headers", header_pairs(self.headers))


@dataclass(frozen=True)
class ServeHTTP:
    """A plain-HTTP route matched; ``resolve()`` calls its view for the response."""

    path: RoutedPath


Decision = Accept | Respond | Close | ServeHTTP


def respond(status: HTTPStatus, message: str, headers: Sequence[tuple[str, str]] = ()) -> Respond:
    """A Respond with a short plain-text body saying why."""
    body = f"{status.value} {status.phrase}: {message}\n".encode()
    return Respond(
        int(status),
        [*headers, ("Content-Type", "text/plain; charset=utf-8")],
        body,
    )
