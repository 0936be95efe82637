"""WebSocket frames (RFC 6455 section 5): building the server's, reading the client's.

- ``encode_frame(b0, payload)``: an unmasked frame with first byte ``b0``;
  ``frame_parts(b0, payload)``: the same frame as ``(head, tail)``, the payload itself
  as the tail from ``SEPARATE_PAYLOAD_FROM`` bytes on (see below);
  ``close_payload(code, reason)``, ``truncate_reason(reason)``.
- ``parse_close(payload) -> (code, reason)``: a close frame's payload, ``ParseFailed``
  (as wsproto words it) for a bad one.
- ``FrameReader(max_size, extensions)``: bytes in, whole messages and control frames
  out. ``receive(data, events)`` appends ``Message``/``Ping``/``Pong`` events to
  ``events`` and returns None, or the end of the stream: ``CloseReceived(code,
  reason)`` for the peer's close frame, ``Failure(code, reason)`` for bytes that fail
  the connection (1002 protocol error, 1007 invalid UTF-8 or compressed data, 1009
  message over ``max_size``). After an end it reads nothing more. It answers no ping:
  it sets ``pinged`` when it reports one, and the connection answers.

Speed: the fast path parses, unmasks (``core.masking``: C when ``websockets`` is
installed) and decodes whole unfragmented, uncompressed text/binary frames and short
control frames itself, but only while the general decoder is idle (no partial frame,
no fragmented message in progress); everything else (fragments, compressed frames,
partial text frames, anything invalid) goes to the general decoder: wsproto's public
``FrameDecoder`` (unmasking with ``core.masking.Masker``) and ``MessageDecoder``, as
wsproto's ``FrameProtocol.received_frames()`` drives them, with close frames read by
``parse_close``. Both paths give the same events for the same bytes, however they are
chunked.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

from wsproto.extensions import Extension
from wsproto.frame_protocol import (
    CloseReason,
    FrameDecoder,
    Header,
    MessageDecoder,
    Opcode,
    ParseFailed,
    RsvBits,
)

from .events import Message, Ping, Pong
from .masking import Masker, apply_mask

__all__ = [
    "CloseReceived",
    "Failure",
    "FrameReader",
    "VALID_CLOSE_CODES",
    "SEPARATE_PAYLOAD_FROM",
    "close_payload",
    "message_frame",
    "encode_frame",
    "frame_parts",
    "parse_close",
    "truncate_reason",
]

_FOLD_PARTS = 64  # unfolded message fragments held before they are joined

_PACK_H = struct.Struct("!BBH").pack
_PACK_Q = struct.Struct("!BBQ").pack
# Headers of short frames, by first byte then length: one lookup instead of a pack.
_SHORT = {b0: [bytes((b0, n)) for n in range(126)] for b0 in (0x81, 0x82, 0xC1, 0xC2)}


def encode_frame(b0: int, payload: bytes | bytearray | memoryview) -> bytes:
    """An unmasked frame (server to client) with first byte ``b0``."""
    n = len(payload)
    if n < 126:
        short = _SHORT.get(b0)
        return (short[n] if short is not None else bytes((b0, n))) + payload
    if n < 65536:
        return _PACK_H(b0, 126, n) + payload
    return _PACK_Q(b0, 127, n) + payload


# From this payload size on, frame_parts() leaves the payload out of its frame: a
# transport that writes several buffers at once (writelines: one vectored write on
# uvloop, and on asyncio from Python 3.12) then sends it without the copy that joining
# it to its header costs (64 KiB: one more 64 KiB block to allocate, fill and free).
# Below it, one joined frame is cheaper than a second buffer to hand around.
SEPARATE_PAYLOAD_FROM = 16384


def frame_parts(b0: int, payload: bytes) -> tuple[bytes, bytes]:
    """``encode_frame(b0, payload)`` as ``(head, tail)``, ``head + tail`` being that
    frame: the header and ``payload`` itself (not copied) for a payload of
    ``SEPARATE_PAYLOAD_FROM`` bytes or more, else the whole frame and ``b""``.
    ``payload`` is ``bytes``: what is handed on unsent must not change."""
    n = len(payload)
    if n < SEPARATE_PAYLOAD_FROM:
        return encode_frame(b0, payload), b""
    if n < 65536:
        return _PACK_H(b0, 126, n), payload
    return _PACK_Q(b0, 127, n), payload


def message_frame(message: str | bytes | bytearray | memoryview) -> bytes:
    """The uncompressed frame of a whole message: text for ``str``, else binary. One
    server frame serves every connection without compression (server frames are not
    masked), which is what lets a broadcast encode once and write many times."""
    if isinstance(message, str):
        return encode_frame(0x81, message.encode("utf-8"))
    return encode_frame(0x82, message)


def close_payload(code: int | None, reason: str) -> bytes:
    """The payload of a close frame: none for no code (or 1005), else code and reason."""
    if code is None or code == 1005:
        return b""
    return code.to_bytes(2, "big") + reason.encode("utf-8")


def truncate_reason(reason: str) -> str:
    """``reason`` cut to the 123 bytes of UTF-8 a close frame has room for."""
    data = reason.encode("utf-8")
    if len(data) <= 123:
        return reason
    return data[:123].decode("utf-8", "ignore")


# Close codes a peer may send (RFC 6455 7.4, IANA registry).
VALID_CLOSE_CODES = frozenset([*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)])


def parse_close(payload: bytes) -> tuple[int, str]:
    """``(code, reason)`` of a close frame; ParseFailed as wsproto words it."""
    if not payload:
        return 1005, ""  # RFC 6455 7.1.5: no status code
    if len(payload) == 1:
        raise ParseFailed("CLOSE with 1 byte payload")
    code = (payload[0] << 8) | payload[1]
    if code not in VALID_CLOSE_CODES:
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


class CloseReceived(NamedTuple):
    """The peer's close frame: its code (1005 when it had none) and reason."""

    code: int
    reason: str


class Failure(NamedTuple):
    """Bytes that fail the connection: the close code and reason to send."""

    code: int
    reason: str


class _Decoder(FrameDecoder):
    """wsproto's frame decoder for a server, unmasking with ``Masker`` and enforcing
    ``max_size``.

    ``parse_header()`` is wsproto's, step for step and error for error, through its
    public parts (``buffer``, ``parse_extended_payload_length()``,
    ``extension_processing()``); it keeps the masking key in ``header.masking_key``.
    Uncompressed messages are measured by their frame headers, so a message over the
    limit fails before any of its payload is buffered (compressed ones are measured
    as they inflate, by ``core.deflate.Deflate``).
    """

    def __init__(self, extensions: list[Extension], max_size: int) -> None:
        super().__init__(client=False, extensions=extensions)
        self.max_size = max_size
        self.message_size = 0
        self.in_message = False
        self.count_message = True

    def parse_header(self) -> bool:
        buffer = self.buffer
        data = buffer.consume_exactly(2)
        if data is None:
            buffer.rollback()
            return False
        b0, b1 = data[0], data[1]
        fin = bool(b0 & 0x80)
        rsv = RsvBits(bool(b0 & 0x40), bool(b0 & 0x20), bool(b0 & 0x10))
        try:
            opcode = Opcode(b0 & 0x0F)
        except ValueError:
            raise ParseFailed(f"Invalid opcode {b0 & 0x0F:#x}") from None
        if opcode.iscontrol() and not fin:
            raise ParseFailed("Invalid attempt to fragment control frame")
        payload_len = self.parse_extended_payload_length(opcode, b1 & 0x7F)
        if payload_len is None:
            buffer.rollback()
            return False
        self.extension_processing(opcode, rsv, payload_len)
        if not b1 & 0x80:
            raise ParseFailed("server received unexpected unmasked frame")
        key = buffer.consume_exactly(4)
        if key is None:
            buffer.rollback()
            return False
        buffer.commit()
        masking_key = bytes(key)
        self.header = Header(fin, rsv, opcode, payload_len, masking_key)
        self.masker = Masker(masking_key)  # type: ignore[assignment]
        self.effective_opcode = opcode
        self.payload_required = payload_len if opcode.iscontrol() else 0
        self.payload_consumed = 0
        if opcode < 8:  # a data frame
            if opcode:  # TEXT or BINARY: a new message
                self.in_message = True
                self.message_size = 0
                self.count_message = not rsv.rsv1
            if self.in_message:
                if self.count_message:
                    self.message_size += payload_len
                    if self.message_size > self.max_size:
                        raise ParseFailed("message too big", CloseReason.MESSAGE_TOO_BIG)
                if fin:
                    self.in_message = False
        return True


class FrameReader:
    """The frames a client sends on one connection; see the module docstring."""

    __slots__ = (
        "max_size",
        "extensions",
        "pinged",
        "_decoder",
        "_messages",
        "_busy",
        "_partial",
        "_partial_len",
        "_need",
        "_parts",
        "_parts_text",
        "_parts_folded",
    )

    def __init__(self, max_size: int, extensions: Sequence[Extension] = ()) -> None:
        self.max_size = max_size
        self.extensions = list(extensions)
        self.pinged = False  # a Ping was reported: the connection answers it
        self._decoder: _Decoder | None = None  # the general path, made when first needed
        self._messages: MessageDecoder | None = None
        self._busy = False  # the general decoder holds a partial frame or message
        self._partial: list[bytes] | None = None  # fast path: an incomplete frame
        self._partial_len = 0
        self._need = 0
        self._parts: list[Any] = []  # fragments of a message from the general path
        self._parts_text = False
        self._parts_folded = 0

    def clear(self) -> None:
        """Drop whatever is buffered: nothing more will be read."""
        self._decoder = self._messages = None
        self._partial = None
        self._parts = []

    def receive(
        self, data: bytes | memoryview, events: list[Any]
    ) -> CloseReceived | Failure | None:
        """Read ``data``: append the events it completes; the end of the stream, if any.

        ``data`` may be a view of a buffer the caller reuses as soon as this returns:
        whatever is kept beyond the call is copied."""
        if self._busy:
            return self.receive_general(data, events)
        partial = self._partial
        if partial is not None:
            partial.append(bytes(data))
            self._partial_len += len(data)
            if self._partial_len < self._need:
                return None
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
                    self._hold_partial(data, pos, 2)
                    return None
                n = data[pos + 1]
                if n < 0x80 or n > 0xFD:  # unmasked, or over 125 bytes: a failure
                    break
                stop = pos + 6 + (n & 0x7F)
                if stop > end:
                    self._hold_partial(data, pos, stop - pos)
                    return None
                control = apply_mask(data[pos + 6 : stop], data[pos + 2 : pos + 6])
                pos = stop
                if b0 == 0x89:
                    self.pinged = True
                    events.append(Ping(control))
                elif b0 == 0x8A:
                    events.append(Pong(control))
                else:
                    try:
                        code, reason = parse_close(control)
                    except ParseFailed as exc:
                        return self._failure(exc)
                    self.clear()
                    return CloseReceived(code, reason)
                continue
            if end - pos < 2:
                self._hold_partial(data, pos, 2)
                return None
            n = data[pos + 1]
            if n < 0x80:  # unmasked: a 1002 failure
                break
            n &= 0x7F
            if n < 126:
                start = pos + 6
            elif n == 126:
                if end - pos < 4:
                    self._hold_partial(data, pos, 4)
                    return None
                n = (data[pos + 2] << 8) | data[pos + 3]
                if n < 126:
                    break
                start = pos + 8
            else:
                if end - pos < 10:
                    self._hold_partial(data, pos, 10)
                    return None
                n = int.from_bytes(data[pos + 2 : pos + 10], "big")
                if n < 65536 or n >> 63:
                    break
                start = pos + 14
            if n > max_size:
                break
            stop = start + n
            if stop > end:
                if b0 == 0x81 and start <= end:
                    break  # the general path checks UTF-8 as a text frame arrives (fail fast)
                self._hold_partial(data, pos, (start if b0 == 0x81 else stop) - pos)
                return None
            payload: Any
            if n < 2048:
                payload = apply_mask(data[start:stop], data[start - 4 : start])
            else:
                payload = apply_mask(memoryview(data)[start:stop], data[start - 4 : start])
            if b0 == 0x81:
                try:
                    payload = payload.decode("utf-8")
                except UnicodeDecodeError:
                    self.clear()
                    return Failure(1007, "invalid UTF-8")
            events.append(Message(payload))
            pos = stop
        if pos < end:
            return self.receive_general(data[pos:] if pos else data, events)
        return None

    def _hold_partial(self, data: bytes | memoryview, pos: int, need: int) -> None:
        rest = bytes(data[pos:] if pos else data)
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

    def receive_general(
        self, data: bytes | memoryview, events: list[Any]
    ) -> CloseReceived | Failure | None:
        """``receive()`` through the general decoder only (the fast path's reference)."""
        decoder, messages = self._decoder, self._messages
        if decoder is None or messages is None:
            # Most connections never need it: made on first use.
            decoder = self._decoder = _Decoder(self.extensions, self.max_size)
            messages = self._messages = MessageDecoder()
        decoder.receive_bytes(bytes(data))  # wsproto takes bytes
        try:
            # What wsproto's FrameProtocol.received_frames() does with the two decoders.
            while True:
                frame = decoder.process_buffer()
                if frame is None:
                    break
                opcode = frame.opcode
                if not opcode.iscontrol():
                    frame = messages.process_frame(frame)
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
                            self._parts_text = frame.opcode is Opcode.TEXT
                            self._parts_folded = 0
                        parts.append(payload)
                        if len(parts) - self._parts_folded >= _FOLD_PARTS:
                            self._fold_parts()
                elif opcode is Opcode.PING:
                    self.pinged = True
                    events.append(Ping(bytes(frame.payload)))  # type: ignore[arg-type]
                elif opcode is Opcode.PONG:
                    events.append(Pong(bytes(frame.payload)))  # type: ignore[arg-type]
                else:  # CLOSE
                    code, reason = parse_close(frame.payload)  # type: ignore[arg-type]
                    self.clear()
                    return CloseReceived(code, reason)
        except ParseFailed as exc:
            return self._failure(exc)
        self._busy = (
            decoder.header is not None or len(decoder.buffer) > 0 or messages.opcode is not None
        )
        return None

    def _failure(self, exc: ParseFailed) -> Failure:
        self.clear()
        return Failure(int(exc.code), truncate_reason(self._reason(exc)))

    def _reason(self, exc: ParseFailed) -> str:
        # One wording per cause, whichever path found it; no codec internals.
        if exc.code == CloseReason.MESSAGE_TOO_BIG:
            return f"message over {self.max_size} bytes"
        if exc.code == CloseReason.INVALID_FRAME_PAYLOAD_DATA:
            if "utf-8" in str(exc).lower():
                return "invalid UTF-8"
            return "invalid compressed data"
        return str(exc)
