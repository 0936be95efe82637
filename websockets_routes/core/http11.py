"""HTTP/1.1 for the opening handshake: the request head in, the response head out.

- ``RequestReader``: feed it the bytes of a request head, in as many pieces as they
  come; it gives ``(method, target, headers, rest)`` once the head is complete, or
  raises ``BadRequest`` (400 for a malformed head, 431 for one over
  ``max_header_bytes``). A plain head (``parse_plain_head()``) is parsed here in a few
  microseconds; anything else goes to h11, which accepts or rejects it as it always
  does. ``response(decision, method)`` then renders a ``Respond`` through h11.
- ``switching_protocols(headers)``: the 101 response head.
- ``plain_response(status, message)``: a short text/plain answer, for the rejections
  that come before any decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import NamedTuple

import h11

from .decisions import Respond
from .http import Headers

__all__ = [
    "BadRequest",
    "RequestHead",
    "RequestReader",
    "parse_plain_head",
    "plain_response",
    "switching_protocols",
]


class BadRequest(Exception):
    """The request head cannot be answered: ``status`` (400 or 431) and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class RequestHead(NamedTuple):
    """A complete request head, and the bytes that came after it (``rest``)."""

    method: str | bytes
    target: str | bytes
    headers: Headers
    rest: bytes


def plain_response(status: int, message: str) -> bytes:
    """A whole ``Connection: close`` response with a one-line text body."""
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}: {message}\n".encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def switching_protocols(headers: Iterable[tuple[str, str]]) -> bytes:
    """The head of a 101 response with these header fields."""
    lines = ["HTTP/1.1 101 Switching Protocols\r\n"]
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


# A strict subset of what h11 accepts (its _abnf grammar, CRLF line ends, HTTP/1.1,
# visible characters only in values, one Host, no body framing headers): a request head
# in this form is parsed here in a few microseconds, to the same result as h11; anything
# else goes to h11, which accepts, or rejects with 400/431, as it always does.
_TOKEN = r"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_IS_TOKEN = re.compile(_TOKEN).fullmatch
_IS_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?").fullmatch


def parse_plain_head(data: bytes) -> tuple[str, str, list[tuple[str, str]], int] | None:
    """``(method, target, headers, head size)`` of a plain request head, else None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    request_line = lines[0].split(" ")
    if len(request_line) != 3:
        return None
    method, target, version = request_line
    # The usual case passes str checks done in C; the exact grammar decides the rest.
    # No line holds a CR or LF: they are neither token characters nor visible ones.
    if (
        version != "HTTP/1.1"
        or not (method.isalpha() and method.isascii() or _IS_TOKEN(method))
        or not (target and target.isascii() and target.isprintable())
    ):
        return None
    headers = []
    hosts = 0
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            return None
        if not (name.isascii() and name.replace("-", "").isalnum()) and not _IS_TOKEN(name):
            return None
        value = value.strip(" \t")
        if not (value.isascii() and value.isprintable()) and not _IS_VALUE(value):
            return None
        lowered = name.lower()
        if lowered == "host":
            hosts += 1
        elif lowered == "content-length" or lowered == "transfer-encoding":
            return None
        headers.append((name, value))
    if hosts != 1:
        return None
    return method, target, headers, end + 4


class RequestReader:
    """One connection's request head, read from the pieces it arrives in."""

    __slots__ = ("max_header_bytes", "_h11", "_head", "_size")

    def __init__(self, max_header_bytes: int) -> None:
        self.max_header_bytes = max_header_bytes
        self._h11: h11.Connection | None = None  # only when parse_plain_head() cannot parse
        self._head = b""  # the head parse_plain_head() parsed, for response()
        self._size = 0  # bytes given to h11

    def _too_big(self) -> BadRequest:
        return BadRequest(431, f"request header block over {self.max_header_bytes} bytes")

    def receive(self, data: bytes) -> RequestHead | None:
        """Feed bytes of the request (not b""); the head once complete, else None.

        Raises ``BadRequest`` for a head HTTP/1.1 rejects or one that is too big.
        """
        conn = self._h11
        if conn is None:
            parsed = parse_plain_head(data)
            if parsed is not None:
                method, target, headers, size = parsed
                if size > self.max_header_bytes:
                    raise self._too_big()
                self._head = data[:size]
                return RequestHead(method, target, Headers.of_text(headers), data[size:])
            conn = self._h11 = h11.Connection(
                h11.SERVER, max_incomplete_event_size=self.max_header_bytes
            )
        self._size += len(data)
        try:
            conn.receive_data(data)
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:
                raise self._too_big() from None
            raise BadRequest(exc.error_status_hint, "malformed HTTP request") from None
        if event is h11.NEED_DATA:
            return None
        if type(event) is not h11.Request:  # ConnectionClosed cannot come from data
            raise BadRequest(400, "malformed HTTP request")
        trailing = conn.trailing_data[0]
        if self._size - len(trailing) > self.max_header_bytes:
            # h11 only bounds requests that arrive in pieces; bound whole ones too.
            raise self._too_big()
        return RequestHead(
            event.method, event.target, Headers(event.headers.raw_items()), bytes(trailing)
        )

    def response(self, decision: Respond, method: str) -> bytes:
        """The HTTP response for ``decision`` to the request read (no body for HEAD)."""
        conn = self._h11
        if conn is None:  # the fast parser read the request: let h11 read it too
            conn = h11.Connection(h11.SERVER)
            conn.receive_data(self._head)
            conn.next_event()
        body = decision.body
        headers = [
            (name, value)
            for name, value in decision.headers
            if name.lower() not in ("content-length", "transfer-encoding", "connection")
        ]
        headers.append(("Content-Length", str(len(body))))
        headers.append(("Connection", "close"))
        try:
            reason = HTTPStatus(decision.status).phrase
        except ValueError:
            reason = ""
        try:
            data = conn.send(
                h11.Response(status_code=decision.status, headers=headers, reason=reason)
            )
            if body and method != "HEAD":
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # The application built a response HTTP cannot carry (a 1xx status, a
            # header with a line break): answer 500 rather than send it.
            return plain_response(500, "the application returned an invalid response")
        assert data is not None
        return data
