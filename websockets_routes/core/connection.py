"""The sans-IO server connection driver: bytes in, events and bytes out.

One ``ServerConnection`` per TCP (or TLS, or in-memory) connection. It does no I/O,
knows no clock and imports nothing asynchronous: a transport feeds it the bytes it
reads, writes the bytes it produces, runs the timers and the handler. The asyncio
transport, the anyio transport and the TestClient all drive this same object.

Opening handshake (HTTP/1.1, parsed by h11)::

    REQUEST --receive_data()--> RequestReceived event, state DECIDING
            (malformed request -> 400, header block over max_header_bytes -> 431,
             both queued in data_to_send(), then Closed, state CLOSED)
    DECIDING --carry_out(await router.resolve(event.request))-->
             Accept  -> 101 (Accept.headers + the negotiated permessage-deflate), OPEN
             Close   -> 101, then a close frame with Close.code, CLOSING
             Respond -> the HTTP response (no body for HEAD), Closed, CLOSED

WebSocket (RFC 6455; frames parsed by wsproto's ``FrameProtocol``, with a fast path
for whole unfragmented uncompressed data frames, see below)::

    OPEN    -- close() -----------------------> CLOSING (close frame returned)
    OPEN    -- peer's close frame -------------> CLOSED  (echo queued, Closed event)
    CLOSING -- peer's close frame -------------> CLOSED  (Closed event)
    OPEN/CLOSING -- protocol error ------------> CLOSED  (close 1002/1007/1009 queued)
    any     -- receive_eof() ------------------> CLOSED  (Closed event)

API (every method is synchronous and cheap):

- ``ServerConnection(*, max_size=2**20, max_header_bytes=16384, compression="deflate",
  remote_address=None, defer_failure=False)``. ``max_size``: largest message in bytes after
  decompression, None for no limit; counted as the message grows (frame headers,
  inflated bytes), never after buffering it whole. ``compression``: ``"deflate"``
  (permessage-deflate, RFC 7692, when the client offers it) or None.
- ``state``: a ``State``. ``request``, ``path`` (RoutedPath), ``subprotocol``,
  ``extensions`` (the Sec-WebSocket-Extensions value sent, or None), ``close_code`` /
  ``close_reason`` (set once CLOSED), ``close_sent`` / ``close_received``
  (``(code, reason)`` or None).
- ``receive_data(data: bytes) -> list[Event]``: bytes read from the peer. Data after
  the request, received while DECIDING, is kept until ``carry_out()``; data in CLOSED
  is ignored. Never raises on peer input: errors become a close frame and ``Closed``.
- ``receive_eof() -> list[Event]``: the peer closed (or the transport aborted) the TCP
  connection; gives ``Closed`` unless already CLOSED.
- ``defer_failure=True`` (constructor) and ``failure_pending``: ``(code, reason)`` when
  bytes that must fail the connection (1002/1007/1009) came after good messages: in
  the same input, or in an earlier one while ``unanswered`` is True (the application
  sets it while messages it received wait for its answer). Those messages are
  returned, the rest of the input is ignored, the state stays OPEN so that the
  application can still answer them (Autobahn's "strict" behaviour); then
  ``fail_pending() -> list[Event]`` queues the close frame and gives ``Closed``. With
  the default ``defer_failure=False`` the failure is immediate (the messages are
  still returned, before ``Closed``).
- ``carry_out(decision) -> list[Event]``: do what ``router.resolve()`` decided (state
  DECIDING only). Returns the events of bytes that arrived right after the request.
- ``data_to_send() -> bytes``: what ``receive_data``/``receive_eof``/``carry_out``
  queued (HTTP responses, pongs, close frames). Call it after each of them, before
  writing anything else, and write the result.
- ``send_text(str) -> bytes``, ``send_bytes(bytes-like) -> bytes``, ``send(data)``
  (either), ``send_ping(payload=b"") -> bytes``, ``send_pong(payload=b"") -> bytes``,
  ``close(code=1000, reason="") -> bytes``: return the frame to write at once. Sending
  data or pings needs state OPEN, else ``ConnectionClosed`` is raised; ``close()``
  outside OPEN returns ``b""``.

Events (``core.events``): ``RequestReceived(request)``, ``Message(data)`` (a whole
message, ``str`` or ``bytes``), ``Ping(payload)`` (pong already queued), ``Pong(payload)``,
``Closed(code, reason)`` exactly once, when the state becomes CLOSED: the transport
writes ``data_to_send()`` and ends the TCP connection (the server closes first).

Close codes: a peer's close is echoed; errors send 1002 (protocol error: unmasked
frame, reserved opcode or RSV bit, bad length encoding, oversized or fragmented
control frame, bad continuation), 1007 (invalid UTF-8 in a text message or close
reason, corrupt deflate data), 1009 (message over ``max_size``). ``Closed.code`` is the
code received, else the code sent, else 1006.

Speed: the fast path parses, unmasks (``core.masking``: C when ``websockets`` is
installed) and decodes a whole unfragmented, uncompressed text/binary frame without
going through wsproto, but only while wsproto's decoder is idle (no partial frame,
no fragmented message in progress); everything else (control frames, fragments,
compressed frames, partial text frames, anything invalid) goes to wsproto, whose
decoder unmasks with ``core.masking.Masker`` instead of its pure-Python masker.
Both paths give the same events for the same bytes, however they are chunked.
"""

from __future__ import annotations

import re
import struct
import zlib
from enum import Enum
from http import HTTPStatus
from typing import Any, cast

import h11
from wsproto.extensions import Extension
from wsproto.frame_protocol import (
    CloseReason,
    FrameDecoder,
    FrameProtocol,
    Opcode,
    ParseFailed,
    RsvBits,
    XorMaskerSimple,
)

from .decisions import Accept, Close, Respond, check_close_code
from .errors import ConnectionClosed
from .events import Closed, Event, Message, Ping, Pong, RequestReceived
from .http import Headers, Request
from .masking import Masker, apply_mask

__all__ = ["ServerConnection", "State", "DEFAULT_MAX_SIZE", "DEFAULT_MAX_HEADER_BYTES"]

DEFAULT_MAX_SIZE = 2**20
DEFAULT_MAX_HEADER_BYTES = 16384
_NO_LIMIT = 2**63  # frame lengths cannot exceed it (RFC 6455 5.2)
_FOLD_PARTS = 64  # unfolded message fragments held before they are joined

# permessage-deflate settings, as websockets' defaults: a 4 KiB window and memLevel 5
# keep a compressing connection at tens of KiB instead of hundreds.
_SERVER_MAX_WINDOW_BITS = 12
_MEM_LEVEL = 5
# Messages shorter than this go out uncompressed (RFC 7692 allows it per message):
# deflating a few bytes costs more CPU than it saves on the wire.
_MIN_COMPRESS = 64


class State(Enum):
    """Where a ServerConnection is in its life; see the module docstring."""

    REQUEST = 0
    DECIDING = 1
    OPEN = 2
    CLOSING = 3
    CLOSED = 4


REQUEST = State.REQUEST
DECIDING = State.DECIDING
OPEN = State.OPEN
CLOSING = State.CLOSING
CLOSED = State.CLOSED

_PACK_H = struct.Struct("!BBH").pack
_PACK_Q = struct.Struct("!BBQ").pack
# Headers of short frames, by first byte then length: one lookup instead of a pack.
_SHORT = {b0: [bytes((b0, n)) for n in range(126)] for b0 in (0x81, 0x82, 0xC1, 0xC2)}


def _frame(b0: int, payload: bytes | bytearray | memoryview) -> bytes:
    """An unmasked frame (server to client) with first byte ``b0``."""
    n = len(payload)
    if n < 126:
        short = _SHORT.get(b0)
        return (short[n] if short is not None else bytes((b0, n))) + payload
    if n < 65536:
        return _PACK_H(b0, 126, n) + payload
    return _PACK_Q(b0, 127, n) + payload


def _close_payload(code: int | None, reason: str) -> bytes:
    if code is None or code == 1005:
        return b""
    return code.to_bytes(2, "big") + reason.encode("utf-8")


def _truncate_reason(reason: str) -> str:
    data = reason.encode("utf-8")
    if len(data) <= 123:
        return reason
    return data[:123].decode("utf-8", "ignore")


def _plain_response(status: int, message: str) -> bytes:
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}: {message}\n".encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _Decoder(FrameDecoder):
    """wsproto's frame decoder, unmasking with ``Masker`` and enforcing ``max_size``.

    Uncompressed messages are measured by their frame headers, so a message over the
    limit fails before any of its payload is buffered (compressed ones are measured
    as they inflate, by ``_Deflate``).
    """

    def __init__(self, extensions: list[Extension], max_size: int) -> None:
        super().__init__(client=False, extensions=extensions)
        self.max_size = max_size
        self.message_size = 0
        self.in_message = False
        self.count_message = True

    def parse_header(self) -> bool:
        if not super().parse_header():
            return False
        if type(self.masker) is XorMaskerSimple:
            self.masker = Masker(self.masker._masking_key)  # type: ignore[assignment]
        header = self.header
        assert header is not None
        opcode = header.opcode
        if opcode < 8:  # a data frame
            if opcode:  # TEXT or BINARY: a new message
                self.in_message = True
                self.message_size = 0
                self.count_message = not header.rsv.rsv1
            if self.in_message:
                if self.count_message:
                    self.message_size += header.payload_len
                    if self.message_size > self.max_size:
                        raise ParseFailed("message too big", CloseReason.MESSAGE_TOO_BIG)
                if header.fin:
                    self.in_message = False
        return True


_RSV1 = RsvBits(True, False, False)


class _Deflate(Extension):
    """permessage-deflate (RFC 7692), server side, for wsproto's frame decoder.

    Replaces ``wsproto.extensions.PerMessageDeflate``, which inflates without bound (a
    small message can inflate to gigabytes), loses track of a compressed message when
    a control frame interrupts its fragments, and crashes on a quoted parameter value.
    Inflation here stops one byte past ``max_size``. Compression of outgoing messages
    is ``compress()``, called by ``ServerConnection`` itself.
    """

    name = "permessage-deflate"

    def __init__(
        self,
        *,
        server_no_context_takeover: bool,
        client_no_context_takeover: bool,
        server_max_window_bits: int,
        client_max_window_bits: int,
        max_size: int,
    ) -> None:
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.max_size = max_size
        self._compressor: Any = None
        self._decompressor: Any = None
        self._in_message = False
        self._message_compressed = False
        self._frame_compressed = False
        self._frame_is_data = False
        self._inflated = 0

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool | str:  # a client-side method, required by the ABC
        return False

    def frame_inbound_header(
        self, proto: Any, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        if opcode >= 8:  # control frames are never compressed
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self._frame_compressed = self._frame_is_data = False
            return _RSV1
        self._frame_is_data = True
        # wsproto checks the order of data frames only after their payload went through
        # frame_inbound_payload_data: check it here, before inflating, so that a bad
        # sequence is a 1002 however the bytes were chunked (not a 1007 from zlib first).
        # wsproto may call this hook twice for one header (again once the masking key
        # has arrived), so it must not change what it checks: _in_message moves only
        # when a frame completes.
        if opcode:  # TEXT or BINARY starts a message
            if self._in_message:
                raise ParseFailed(f"expected CONTINUATION, got {opcode!r}")
            self._message_compressed = rsv.rsv1
            self._inflated = 0
            if rsv.rsv1 and self._decompressor is None:
                self._decompressor = zlib.decompressobj(-self.client_max_window_bits)
        elif not self._in_message:
            raise ParseFailed("unexpected CONTINUATION")
        elif rsv.rsv1:  # RSV1 belongs on the first frame of a message only
            return CloseReason.PROTOCOL_ERROR
        self._frame_compressed = self._message_compressed
        return _RSV1

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        # Ask for one byte more than the message may still grow: getting it means too big.
        budget = self.max_size - self._inflated
        try:
            out = self._decompressor.decompress(data, budget + 1 if budget < _NO_LIMIT // 2 else 0)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self.max_size:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._frame_compressed:
            return data
        return self._inflate(data)

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        if not self._frame_is_data:
            return None
        self._in_message = not fin
        if not fin:
            return None
        if not self._frame_compressed:
            return None
        tail = self._inflate(b"\x00\x00\xff\xff")
        if self.client_no_context_takeover:
            self._decompressor = None
        return tail

    def compress(self, data: bytes) -> bytes:
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION,
                zlib.DEFLATED,
                -self.server_max_window_bits,
                _MEM_LEVEL,
            )
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if self.server_no_context_takeover:
            self._compressor = None
        return out[:-4]  # RFC 7692 7.2.1: drop the 00 00 ff ff of the sync flush


def _window_bits(value: str) -> int | None:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if value.isdigit() and value[0] != "0" and 8 <= int(value) <= 15:
        return int(value)
    return None


def negotiate_deflate(offers: list[str], max_size: int) -> tuple[str, _Deflate] | None:
    """The response header value and extension for the first acceptable offer.

    RFC 7692 section 7: an offer with an unknown, repeated or invalid parameter is
    declined; so is ``server_max_window_bits=8``, which zlib cannot honour.
    """
    for value in offers:
        for offer in value.split(","):
            name, *params = (part.strip() for part in offer.split(";"))
            if name.lower() != "permessage-deflate":
                continue
            seen: dict[str, int | None] = {}
            for param in params:
                key, eq, raw = param.partition("=")
                key = key.strip().lower()
                raw = raw.strip()
                if key in seen:
                    break
                if key in ("server_no_context_takeover", "client_no_context_takeover"):
                    if eq:
                        break
                    seen[key] = None
                elif key == "server_max_window_bits":
                    bits = _window_bits(raw)
                    if bits is None or bits < 9:
                        break
                    seen[key] = bits
                elif key == "client_max_window_bits":
                    if eq:
                        bits = _window_bits(raw)
                        if bits is None:
                            break
                        seen[key] = bits
                    else:
                        seen[key] = None
                else:
                    break
            else:
                server_bits = min(seen.get("server_max_window_bits") or 15, _SERVER_MAX_WINDOW_BITS)
                response = ["permessage-deflate"]
                if "server_no_context_takeover" in seen:
                    response.append("server_no_context_takeover")
                if "client_no_context_takeover" in seen:
                    response.append("client_no_context_takeover")
                response.append(f"server_max_window_bits={server_bits}")
                client_bits = 15
                if "client_max_window_bits" in seen:
                    # The client lets us cap its window: a smaller inflate window for us.
                    client_bits = min(seen["client_max_window_bits"] or 15, 12)
                    response.append(f"client_max_window_bits={client_bits}")
                extension = _Deflate(
                    server_no_context_takeover="server_no_context_takeover" in seen,
                    client_no_context_takeover="client_no_context_takeover" in seen,
                    server_max_window_bits=server_bits,
                    # zlib writes a 9-bit window when asked for 8; inflate accordingly.
                    client_max_window_bits=max(client_bits, 9),
                    max_size=max_size,
                )
                return "; ".join(response), extension
    return None


# A strict subset of what h11 accepts (its _abnf grammar, CRLF line ends, HTTP/1.1,
# visible characters only in values, one Host, no body framing headers): a request head
# in this form is parsed here in a few microseconds, to the same result as h11; anything
# else goes to h11, which accepts, or rejects with 400/431, as it always does.
_TOKEN = r"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_IS_TOKEN = re.compile(_TOKEN).fullmatch
_IS_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?").fullmatch


def _fast_head(data: bytes) -> tuple[str, str, list[tuple[str, str]], int] | None:
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


# Close codes a peer may send (RFC 6455 7.4, IANA registry): as wsproto accepts them.
_VALID_CLOSE_CODES = frozenset([*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)])


def _parse_close(payload: bytes) -> tuple[int, str]:
    """``(code, reason)`` of a close frame; ParseFailed as wsproto words it."""
    if not payload:
        return 1005, ""  # RFC 6455 7.1.5: no status code
    if len(payload) == 1:
        raise ParseFailed("CLOSE with 1 byte payload")
    code = (payload[0] << 8) | payload[1]
    if code not in _VALID_CLOSE_CODES:
        if code < 1000 or code > 4999:
            raise ParseFailed("CLOSE with invalid code")
        if code in (1005, 1006, 1015):
            raise ParseFailed("remote CLOSE with local-only reason")
        raise ParseFailed("CLOSE with unknown reserved code")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseFailed(
            f"Error decoding CLOSE reason: {exc}", CloseReason.INVALID_FRAME_PAYLOAD_DATA
        ) from None
    return code, reason


class ServerConnection:
    """One server-side WebSocket connection, sans I/O. See the module docstring."""

    __slots__ = (
        "state",
        "request",
        "path",
        "subprotocol",
        "extensions",
        "remote_address",
        "close_code",
        "close_reason",
        "close_sent",
        "close_received",
        "failure_pending",
        "defer_failure",
        "unanswered",
        "max_size",
        "max_header_bytes",
        "compression",
        "_h11",
        "_head",
        "_head_bytes",
        "_early",
        "_out",
        "_proto",
        "_decoder",
        "_extensions",
        "_deflate",
        "_busy",
        "_partial",
        "_partial_len",
        "_need",
        "_parts",
        "_parts_text",
        "_parts_folded",
    )

    def __init__(
        self,
        *,
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        compression: str | None = "deflate",
        remote_address: Any = None,
        defer_failure: bool = False,
    ) -> None:
        if compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {compression!r}")
        if max_size is not None and max_size < 0:
            raise ValueError("max_size must be a positive int or None")
        self.state = REQUEST
        self.request: Request | None = None
        self.path: Any = None
        self.subprotocol: str | None = None
        self.extensions: str | None = None
        self.remote_address = remote_address
        self.close_code: int | None = None
        self.close_reason = ""
        self.close_sent: tuple[int, str] | None = None
        self.close_received: tuple[int, str] | None = None
        self.failure_pending: tuple[int, str] | None = None
        self.defer_failure = defer_failure
        self.unanswered = False
        self.max_size = _NO_LIMIT if max_size is None else max_size
        self.max_header_bytes = max_header_bytes
        self.compression = compression
        self._h11: h11.Connection | None = None  # only when _fast_head() cannot parse
        self._head = b""
        self._head_bytes = 0
        self._early: list[bytes] = []
        self._out: list[bytes] = []
        self._proto: FrameProtocol | None = None  # made when first needed
        self._decoder: _Decoder | None = None
        self._extensions: list[Extension] = []
        self._deflate: _Deflate | None = None
        self._busy = False  # wsproto holds a partial frame or a fragmented message
        self._partial: list[bytes] | None = None  # fast path: an incomplete frame
        self._partial_len = 0
        self._need = 0
        self._parts: list[Any] = []  # fragments of a message from wsproto
        self._parts_text = False
        self._parts_folded = 0

    def __repr__(self) -> str:
        return f"<ServerConnection {self.state.name} {self.remote_address!r}>"

    # Output

    def data_to_send(self) -> bytes:
        """Bytes queued by receive_data/receive_eof/carry_out, to write now."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    # Input

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the peer; return the events they complete."""
        state = self.state
        if state is OPEN or state is CLOSING:
            return self._receive_frames(data)
        if state is REQUEST:
            # h11 reads b"" as the end of the stream; here it is just no input.
            return self._receive_request(data) if data else []
        if state is DECIDING and data:
            self._early.append(data)
        return []

    def receive_eof(self) -> list[Event]:
        """The TCP connection ended (or was aborted) on the peer's side."""
        if self.state is CLOSED:
            return []
        events: list[Event] = []
        self._closed(events)
        return events

    def _closed(self, events: list[Event]) -> None:
        self.state = CLOSED
        if self.close_received is not None:
            code, reason = self.close_received
        elif self.close_sent is not None:
            code, reason = self.close_sent
        else:
            code, reason = 1006, ""
        self.close_code = code
        self.close_reason = reason
        self._h11 = None
        self._head = b""
        self._partial = None
        self._parts = []
        events.append(Closed(code, reason))

    # Opening handshake

    def _receive_request(self, data: bytes) -> list[Event]:
        conn = self._h11
        if conn is None:
            if not self._head_bytes:
                parsed = _fast_head(data)
                if parsed is not None:
                    method, target, headers, size = parsed
                    if size > self.max_header_bytes:
                        return self._reject(
                            431, f"request header block over {self.max_header_bytes} bytes"
                        )
                    self._head = data[:size]
                    if len(data) > size:
                        self._early.append(data[size:])
                    return self._request(method, target, Headers.of_text(headers))
            conn = self._h11 = h11.Connection(
                h11.SERVER, max_incomplete_event_size=self.max_header_bytes
            )
        self._head_bytes += len(data)
        try:
            conn.receive_data(data)
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == 431:
                return self._reject(431, f"request header block over {self.max_header_bytes} bytes")
            return self._reject(status, "malformed HTTP request")
        if event is h11.NEED_DATA:
            return []
        if type(event) is not h11.Request:  # ConnectionClosed cannot come from data
            return self._reject(400, "malformed HTTP request")
        trailing = conn.trailing_data[0]
        if self._head_bytes - len(trailing) > self.max_header_bytes:
            # h11 only bounds requests that arrive in pieces; bound whole ones too.
            return self._reject(431, f"request header block over {self.max_header_bytes} bytes")
        if trailing:
            self._early.append(trailing)
        return self._request(event.method, event.target, event.headers.raw_items())

    def _request(self, method: Any, target: Any, headers: Any) -> list[Event]:
        request = Request(method, target, headers, remote_address=self.remote_address)
        self.request = request
        self.state = DECIDING
        return [RequestReceived(request)]

    def _reject(self, status: int, message: str) -> list[Event]:
        self._out.append(_plain_response(status, message))
        events: list[Event] = []
        self._closed(events)
        return events

    def carry_out(self, decision: Accept | Respond | Close) -> list[Event]:
        """Answer the request as decided; return events of early bytes, if any."""
        if self.state is not DECIDING:
            raise RuntimeError(f"carry_out() needs state DECIDING, not {self.state.name}")
        if isinstance(decision, Respond):
            self._out.append(self._response(decision))
            events: list[Event] = []
            self._closed(events)
            return events
        if not isinstance(decision, (Accept, Close)):
            raise TypeError(
                f"carry_out() takes Accept, Respond or Close, not {type(decision).__name__}"
            )
        request = self.request
        assert request is not None
        self.path = decision.path
        headers = decision.headers
        if isinstance(decision, Accept):
            self.subprotocol = decision.subprotocol
        lines = ["HTTP/1.1 101 Switching Protocols\r\n"]
        for name, value in headers:
            lines.append(f"{name}: {value}\r\n")
        extensions: list[Extension] = []
        max_size = self.max_size
        if self.compression is not None:
            offers = request.headers.get_all("Sec-WebSocket-Extensions")
            if offers:
                negotiated = negotiate_deflate(offers, max_size)
                if negotiated is not None:
                    self.extensions, self._deflate = negotiated
                    extensions.append(self._deflate)
                    lines.append(f"Sec-WebSocket-Extensions: {self.extensions}\r\n")
        lines.append("\r\n")
        self._out.append("".join(lines).encode("latin-1"))
        self._h11 = None
        self._head = b""
        self._extensions = extensions
        self.state = OPEN
        if isinstance(decision, Close):
            self._out.append(self.close(decision.code, decision.reason))
        early = self._early
        if early:
            self._early = []
            return self._receive_frames(b"".join(early))
        return []

    def _response(self, decision: Respond) -> bytes:
        conn = self._h11
        if conn is None:  # the fast parser read the request: let h11 read it too
            conn = h11.Connection(h11.SERVER)
            conn.receive_data(self._head)
            conn.next_event()
        assert self.request is not None
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
            if body and self.request.method != "HEAD":
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # The application built a response HTTP cannot carry (a 1xx status, a
            # header with a line break): answer 500 rather than send it.
            return _plain_response(500, "the application returned an invalid response")
        assert data is not None
        return data

    # WebSocket frames

    def _receive_frames(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        if self.failure_pending is not None:
            return events  # RFC 6455 7.1.7: no more processing of the peer's data
        if self._busy:
            self._slow(data, events)
            return events
        partial = self._partial
        if partial is not None:
            partial.append(data)
            self._partial_len += len(data)
            if self._partial_len < self._need:
                return events
            data = b"".join(partial)
            self._partial = None
        # Fast path: whole, unfragmented, uncompressed, masked TEXT/BINARY frames.
        pos = 0
        end = len(data)
        max_size = self.max_size
        while pos < end:
            b0 = data[pos]
            if b0 != 0x81 and b0 != 0x82:
                if b0 < 0x88 or b0 > 0x8A:
                    break
                # A close, ping or pong frame (FIN set, no RSV bit).
                if end - pos < 2:
                    self._keep(data, pos, 2)
                    return events
                n = data[pos + 1]
                if n < 0x80 or n > 0xFD:  # unmasked, or over 125 bytes: wsproto fails it
                    break
                stop = pos + 6 + (n & 0x7F)
                if stop > end:
                    self._keep(data, pos, stop - pos)
                    return events
                control = apply_mask(data[pos + 6 : stop], data[pos + 2 : pos + 6])
                pos = stop
                if b0 == 0x89:
                    if self.state is OPEN:
                        self._out.append(_frame(0x8A, control))
                    events.append(Ping(control))
                elif b0 == 0x8A:
                    events.append(Pong(control))
                else:
                    try:
                        code, reason = _parse_close(control)
                    except ParseFailed as exc:
                        self._fail(exc.code, self._reason(exc), events)
                    else:
                        self._close_received(code, reason, events)
                    return events
                continue
            if end - pos < 2:
                self._keep(data, pos, 2)
                return events
            n = data[pos + 1]
            if n < 0x80:  # unmasked: wsproto fails it with 1002
                break
            n &= 0x7F
            if n < 126:
                start = pos + 6
            elif n == 126:
                if end - pos < 4:
                    self._keep(data, pos, 4)
                    return events
                n = (data[pos + 2] << 8) | data[pos + 3]
                if n < 126:
                    break
                start = pos + 8
            else:
                if end - pos < 10:
                    self._keep(data, pos, 10)
                    return events
                n = int.from_bytes(data[pos + 2 : pos + 10], "big")
                if n < 65536 or n >> 63:
                    break
                start = pos + 14
            if n > max_size:
                break
            stop = start + n
            if stop > end:
                if b0 == 0x81 and start <= end:
                    break  # wsproto checks UTF-8 as a text frame arrives (fail fast)
                self._keep(data, pos, (start if b0 == 0x81 else stop) - pos)
                return events
            payload: Any
            if n < 2048:
                payload = apply_mask(data[start:stop], data[start - 4 : start])
            else:
                payload = apply_mask(memoryview(data)[start:stop], data[start - 4 : start])
            if b0 == 0x81:
                try:
                    payload = payload.decode("utf-8")
                except UnicodeDecodeError:
                    self._fail(CloseReason.INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8", events)
                    return events
            events.append(Message(payload))
            pos = stop
        if pos < end:
            self._slow(data[pos:] if pos else data, events)
        return events

    def _keep(self, data: bytes, pos: int, need: int) -> None:
        rest = data[pos:] if pos else data
        self._partial = [rest]
        self._partial_len = len(rest)
        self._need = need

    def _fold_parts(self) -> None:
        # Tiny fragments cost an object each (~40 bytes over their payload): join the
        # latest ones into one piece, so that a message held in parts stays near its
        # size. Only unfolded pieces are joined, so each byte is copied once here.
        parts, folded = self._parts, self._parts_folded
        piece = ("" if self._parts_text else b"").join(parts[folded:])
        del parts[folded:]
        parts.append(piece)
        self._parts_folded = folded + 1

    def _slow(self, data: bytes, events: list[Event]) -> None:
        proto = self._proto
        if proto is None:
            # Most connections never need wsproto: build it on first use.
            proto = self._proto = FrameProtocol(client=False, extensions=self._extensions)
            self._decoder = proto._frame_decoder = _Decoder(self._extensions, self.max_size)
        proto.receive_bytes(data)
        try:
            for frame in proto.received_frames():
                opcode = frame.opcode
                if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                    payload: Any = frame.payload
                    parts = self._parts
                    if frame.message_finished:
                        if parts:
                            parts.append(payload)
                            payload = ("" if self._parts_text else b"").join(parts)
                            self._parts = []
                        events.append(Message(payload))
                    elif payload:
                        if not parts:
                            self._parts_text = opcode is Opcode.TEXT
                            self._parts_folded = 0
                        parts.append(payload)
                        if len(parts) - self._parts_folded >= _FOLD_PARTS:
                            self._fold_parts()
                elif opcode is Opcode.PING:
                    if self.state is OPEN:
                        self._out.append(_frame(0x8A, frame.payload))  # type: ignore[arg-type]
                    events.append(Ping(bytes(frame.payload)))  # type: ignore[arg-type]
                elif opcode is Opcode.PONG:
                    events.append(Pong(bytes(frame.payload)))  # type: ignore[arg-type]
                elif opcode is Opcode.CLOSE:
                    code, reason = cast("tuple[int, str]", frame.payload)
                    self._close_received(int(code), reason, events)
                    return
        except ParseFailed as exc:
            self._fail(exc.code, self._reason(exc), events)
            return
        decoder = self._decoder
        assert decoder is not None and proto is not None
        self._busy = (
            decoder.header is not None
            or len(decoder.buffer) > 0
            or proto._message_decoder.opcode is not None
        )

    def _close_received(self, code: int, reason: str, events: list[Event]) -> None:
        self.close_received = (code, reason)
        if self.state is OPEN:
            # RFC 6455 5.5.1: answer with a close frame, echoing the code.
            self.close_sent = (code, reason)
            self._out.append(_frame(0x88, _close_payload(code, reason)))
        self._closed(events)

    def _reason(self, exc: ParseFailed) -> str:
        # One wording per cause, whichever path found it; no codec internals.
        if exc.code == CloseReason.MESSAGE_TOO_BIG:
            return f"message over {self.max_size} bytes"
        if exc.code == CloseReason.INVALID_FRAME_PAYLOAD_DATA:
            if "utf-8" in str(exc).lower():
                return "invalid UTF-8"
            return "invalid compressed data"
        return str(exc)

    def _fail(self, code: int, reason: str, events: list[Event]) -> None:
        """RFC 6455 7.1.7: send a close frame, then stop reading; the TCP side ends.

        If good messages came before the bad bytes, in this same input or earlier and
        still ``unanswered``, the failure waits (``failure_pending``) so that the
        application can answer them first: the transport calls ``fail_pending()``
        once it has.
        """
        reason = _truncate_reason(reason)
        if (
            self.defer_failure
            and self.state is OPEN
            and (self.unanswered or any(type(event) is Message for event in events))
        ):
            self.failure_pending = (int(code), reason)
            self._partial = None
            return
        if self.state is OPEN:
            self.close_sent = (int(code), reason)
            self._out.append(_frame(0x88, _close_payload(int(code), reason)))
        self._closed(events)

    def fail_pending(self) -> list[Event]:
        """Carry out ``failure_pending``: the close frame goes to ``data_to_send()``."""
        events: list[Event] = []
        failure = self.failure_pending
        if failure is None or self.state is CLOSED:
            return events
        self.failure_pending = None
        if self.state is OPEN:
            self.close_sent = failure
            self._out.append(_frame(0x88, _close_payload(*failure)))
        self._closed(events)
        return events

    # Sending

    def _not_open(self) -> ConnectionClosed:
        if self.state is CLOSED:
            return ConnectionClosed.for_code(self.close_code or 1006, self.close_reason)
        if self.state is CLOSING and self.close_sent is not None:
            return ConnectionClosed.for_code(*self.close_sent)
        raise RuntimeError(f"the connection is not open yet (state {self.state.name})")

    def send_text(self, data: str) -> bytes:
        """A text message frame, to write now."""
        if self.state is not OPEN:
            raise self._not_open()
        payload = data.encode("utf-8")
        deflate = self._deflate
        if deflate is not None and len(payload) >= _MIN_COMPRESS:
            return _frame(0xC1, deflate.compress(payload))
        return _frame(0x81, payload)

    def send_bytes(self, data: bytes | bytearray | memoryview) -> bytes:
        """A binary message frame, to write now."""
        if self.state is not OPEN:
            raise self._not_open()
        deflate = self._deflate
        if deflate is not None and len(data) >= _MIN_COMPRESS:
            return _frame(0xC2, deflate.compress(bytes(data)))
        return _frame(0x82, data)

    def send(self, data: str | bytes | bytearray | memoryview) -> bytes:
        """A text frame for ``str``, a binary frame for bytes-like data."""
        if type(data) is str:
            return self.send_text(data)
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self.send_bytes(data)
        if isinstance(data, str):
            return self.send_text(data)
        raise TypeError(f"a message is str or bytes-like, not {type(data).__name__}")

    def send_ping(self, payload: bytes = b"") -> bytes:
        """A ping frame (payload up to 125 bytes), to write now."""
        if self.state is not OPEN:
            raise self._not_open()
        if len(payload) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        return _frame(0x89, bytes(payload))

    def send_pong(self, payload: bytes = b"") -> bytes:
        """An unsolicited pong frame (payload up to 125 bytes), to write now."""
        if self.state is not OPEN:
            raise self._not_open()
        if len(payload) > 125:
            raise ValueError("a pong payload is at most 125 bytes")
        return _frame(0x8A, bytes(payload))

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """Start the closing handshake: the close frame to write now (state CLOSING).

        Outside OPEN there is nothing to send (already closing or closed): ``b""``.
        """
        if self.state is not OPEN:
            if self.state is REQUEST or self.state is DECIDING:
                raise RuntimeError("close() before the handshake was carried out")
            return b""
        check_close_code(code, reason)
        self.close_sent = (code, reason)
        self.state = CLOSING
        return _frame(0x88, _close_payload(code, reason))
