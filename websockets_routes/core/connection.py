"""The sans-IO server connection driver: bytes in, events and bytes out.

One ``ServerConnection`` per TCP (or TLS, or in-memory) connection. It does no I/O,
knows no clock and imports nothing asynchronous: a transport feeds it the bytes it
reads, writes the bytes it produces, runs the timers and the handler. The asyncio
transport, the anyio transport and the TestClient all drive this same object.

Opening handshake (HTTP/1.1: ``core.http11``)::

    REQUEST --receive_data()--> RequestReceived event, state DECIDING
            (malformed request -> 400, header block over max_header_bytes -> 431,
             both queued in data_to_send(), then Closed, state CLOSED)
    DECIDING --carry_out(await router.resolve(event.request))-->
             Accept  -> 101 (Accept.headers + the negotiated permessage-deflate), OPEN
             Close   -> 101, then a close frame with Close.code, CLOSING
             Respond -> the HTTP response (no body for HEAD), Closed, CLOSED

WebSocket (RFC 6455; frames read by ``core.frames.FrameReader``, permessage-deflate
by ``core.deflate``)::

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
  (``(code, reason)`` or None). ``status``: the HTTP status the request was answered
  with (101 for an upgrade, 400/431 for a request that could not be read), None
  before. ``messages_out``: the data messages sent (``send*``), for the access log.
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
  outside OPEN returns ``b""``. ``send_parts(data) -> (head, tail)``: ``send(data)``
  as two buffers to write in that order, for a transport that can write both at once
  (``writelines``): from ``core.frames.SEPARATE_PAYLOAD_FROM`` bytes on, a ``str`` or
  ``bytes`` message's payload is the tail, not copied into its frame; otherwise the
  tail is ``b""``.

Events (``core.events``): ``RequestReceived(request)``, ``Message(data)`` (a whole
message, ``str`` or ``bytes``), ``Ping(payload)`` (pong already queued), ``Pong(payload)``,
``Closed(code, reason)`` exactly once, when the state becomes CLOSED: the transport
writes ``data_to_send()`` and ends the TCP connection (the server closes first).

Close codes: a peer's close is echoed; errors send 1002 (protocol error: unmasked
frame, reserved opcode or RSV bit, bad length encoding, oversized or fragmented
control frame, bad continuation), 1007 (invalid UTF-8 in a text message or close
reason, corrupt deflate data), 1009 (message over ``max_size``). ``Closed.code`` is the
code received, else the code sent, else 1006.

Speed: see ``core.frames`` (a fast path for whole frames, wsproto's public decoders
for the rest, the same events for the same bytes however they are chunked) and
``core.http11`` (a fast parser for plain request heads, h11 for the rest).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from wsproto.extensions import Extension

from .decisions import Accept, Close, Respond, check_close_code
from .deflate import MIN_COMPRESS, NO_LIMIT, Deflate, negotiate_deflate
from .errors import ConnectionClosed
from .events import Closed, Event, Message, Ping, RequestReceived
from .frames import (
    SEPARATE_PAYLOAD_FROM,
    CloseReceived,
    FrameReader,
    close_payload,
    encode_frame,
    frame_parts,
)
from .http import Request
from .http11 import BadRequest, RequestReader, plain_response, switching_protocols

__all__ = ["ServerConnection", "State", "DEFAULT_MAX_SIZE", "DEFAULT_MAX_HEADER_BYTES"]

DEFAULT_MAX_SIZE = 2**20
DEFAULT_MAX_HEADER_BYTES = 16384


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
        "status",
        "messages_out",
        "failure_pending",
        "defer_failure",
        "unanswered",
        "max_size",
        "max_header_bytes",
        "compression",
        "_head",
        "_frames",
        "_early",
        "_out",
        "_deflate",
    )

    _frame_reader = FrameReader  # what reads frames once OPEN (a test may swap it)

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
        self.status: int | None = None
        self.messages_out = 0
        self.failure_pending: tuple[int, str] | None = None
        self.defer_failure = defer_failure
        self.unanswered = False
        self.max_size = NO_LIMIT if max_size is None else max_size
        self.max_header_bytes = max_header_bytes
        self.compression = compression
        self._head: RequestReader | None = RequestReader(max_header_bytes)  # until answered
        self._frames: FrameReader | None = None  # once OPEN
        self._early: list[bytes] = []
        self._out: list[bytes] = []
        self._deflate: Deflate | None = None

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

    def receive_data(self, data: bytes | memoryview) -> list[Event]:
        """Feed bytes read from the peer; return the events they complete.

        ``data`` may be a view of a buffer the caller reuses after the call: what is
        kept is copied."""
        state = self.state
        if state is OPEN or state is CLOSING:
            return self._receive_frames(data)
        if state is REQUEST:
            # h11 reads b"" as the end of the stream; here it is just no input.
            return self._receive_request(bytes(data)) if data else []
        if state is DECIDING and data:
            self._early.append(bytes(data))
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
        self._head = None
        self._frames = None
        events.append(Closed(code, reason))

    # Opening handshake

    def _receive_request(self, data: bytes) -> list[Event]:
        reader = self._head
        assert reader is not None
        try:
            head = reader.receive(data)
        except BadRequest as exc:
            self.status = exc.status
            self._out.append(plain_response(exc.status, exc.message))
            events: list[Event] = []
            self._closed(events)
            return events
        if head is None:
            return []
        method, target, headers, rest = head
        if rest:
            self._early.append(rest)
        request = Request(method, target, headers, remote_address=self.remote_address)
        self.request = request
        self.state = DECIDING
        return [RequestReceived(request)]

    def carry_out(self, decision: Accept | Respond | Close) -> list[Event]:
        """Answer the request as decided; return events of early bytes, if any."""
        if self.state is not DECIDING:
            raise RuntimeError(f"carry_out() needs state DECIDING, not {self.state.name}")
        request = self.request
        assert request is not None
        if isinstance(decision, Respond):
            reader = self._head
            assert reader is not None
            self.status = decision.status
            self._out.append(reader.response(decision, request.method))
            events: list[Event] = []
            self._closed(events)
            return events
        if not isinstance(decision, (Accept, Close)):
            raise TypeError(
                f"carry_out() takes Accept, Respond or Close, not {type(decision).__name__}"
            )
        self.path = decision.path
        self.status = 101
        headers = list(decision.headers)
        if isinstance(decision, Accept):
            self.subprotocol = decision.subprotocol
        extensions: list[Extension] = []
        if self.compression is not None:
            offers = request.headers.get_all("Sec-WebSocket-Extensions")
            if offers:
                negotiated = negotiate_deflate(offers, self.max_size)
                if negotiated is not None:
                    self.extensions, self._deflate = negotiated
                    extensions.append(self._deflate)
                    headers.append(("Sec-WebSocket-Extensions", self.extensions))
        self._out.append(switching_protocols(headers))
        self._head = None
        self._frames = self._frame_reader(self.max_size, extensions)
        self.state = OPEN
        if isinstance(decision, Close):
            self._out.append(self.close(decision.code, decision.reason))
        early = self._early
        if early:
            self._early = []
            return self._receive_frames(b"".join(early))
        return []

    # WebSocket frames

    def _receive_frames(self, data: bytes | memoryview) -> list[Event]:
        events: list[Event] = []
        frames = self._frames
        if frames is None or self.failure_pending is not None:
            return events  # RFC 6455 7.1.7: no more processing of the peer's data
        end = frames.receive(data, events)
        if frames.pinged:
            frames.pinged = False
            if self.state is OPEN:
                for event in events:
                    if type(event) is Ping:
                        self._out.append(encode_frame(0x8A, event.payload))
        if end is not None:
            if type(end) is CloseReceived:
                self._close_received(end.code, end.reason, events)
            else:
                self._fail(end.code, end.reason, events)
        return events

    def _close_received(self, code: int, reason: str, events: list[Event]) -> None:
        self.close_received = (code, reason)
        if self.state is OPEN:
            # RFC 6455 5.5.1: answer with a close frame, echoing the code.
            self.close_sent = (code, reason)
            self._out.append(encode_frame(0x88, close_payload(code, reason)))
        self._closed(events)

    def _fail(self, code: int, reason: str, events: list[Event]) -> None:
        """RFC 6455 7.1.7: send a close frame, then stop reading; the TCP side ends.

        If good messages came before the bad bytes, in this same input or earlier and
        still ``unanswered``, the failure waits (``failure_pending``) so that the
        application can answer them first: the transport calls ``fail_pending()``
        once it has.
        """
        if (
            self.defer_failure
            and self.state is OPEN
            and (self.unanswered or any(type(event) is Message for event in events))
        ):
            self.failure_pending = (code, reason)
            return
        if self.state is OPEN:
            self.close_sent = (code, reason)
            self._out.append(encode_frame(0x88, close_payload(code, reason)))
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
            self._out.append(encode_frame(0x88, close_payload(*failure)))
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
        self.messages_out += 1
        payload = data.encode("utf-8")
        deflate = self._deflate
        if deflate is not None and len(payload) >= MIN_COMPRESS:
            return encode_frame(0xC1, deflate.compress(payload))
        return encode_frame(0x81, payload)

    def send_bytes(self, data: bytes | bytearray | memoryview) -> bytes:
        """A binary message frame, to write now."""
        if self.state is not OPEN:
            raise self._not_open()
        self.messages_out += 1
        deflate = self._deflate
        if deflate is not None and len(data) >= MIN_COMPRESS:
            return encode_frame(0xC2, deflate.compress(bytes(data)))
        return encode_frame(0x82, data)

    def send(self, data: str | bytes | bytearray | memoryview) -> bytes:
        """A text frame for ``str``, a binary frame for bytes-like data."""
        if type(data) is str:
            return self.send_text(data)
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self.send_bytes(data)
        if isinstance(data, str):
            return self.send_text(data)
        raise TypeError(f"a message is str or bytes-like, not {type(data).__name__}")

    def send_parts(self, data: str | bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """``send(data)`` as ``(head, tail)``, to write in that order: for a ``str`` or
        ``bytes`` message whose payload (compressed, if negotiated) is at least
        ``SEPARATE_PAYLOAD_FROM`` bytes, the frame's header and that payload, uncopied;
        else the whole frame and ``b""``. A bytearray or memoryview always goes into
        one frame: its owner may change it before a tail left unsent is written."""
        if type(data) is str:
            b0, payload = 0x81, data.encode("utf-8")
        elif type(data) is bytes:
            b0, payload = 0x82, data
        else:
            return self.send(data), b""
        if self.state is not OPEN:
            raise self._not_open()
        self.messages_out += 1
        deflate = self._deflate
        if deflate is not None and len(payload) >= MIN_COMPRESS:
            return frame_parts(b0 | 0x40, deflate.compress(payload))
        if len(payload) < SEPARATE_PAYLOAD_FROM:  # most messages: no second call
            return encode_frame(b0, payload), b""
        return frame_parts(b0, payload)

    def send_shared(self, data: str | bytes | bytearray | memoryview, frame: bytes) -> bytes:
        """What to write for ``data`` when ``frame`` is its uncompressed frame, built
        once for many connections (``core.frames.message_frame``): that frame, or,
        with compression negotiated, one compressed by this connection's context."""
        if self._deflate is not None:
            return self.send(data)
        if self.state is not OPEN:
            raise self._not_open()
        self.messages_out += 1
        return frame

    def send_ping(self, payload: bytes = b"") -> bytes:
        """A ping frame (payload up to 125 bytes), to write now."""
        if self.state is not OPEN:
            raise self._not_open()
        if len(payload) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        return encode_frame(0x89, bytes(payload))

    def send_pong(self, payload: bytes = b"") -> bytes:
        """An unsolicited pong frame (payload up to 125 bytes), to write now."""
        if self.state is not OPEN:
            raise self._not_open()
        if len(payload) > 125:
            raise ValueError("a pong payload is at most 125 bytes")
        return encode_frame(0x8A, bytes(payload))

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
        return encode_frame(0x88, close_payload(code, reason))
