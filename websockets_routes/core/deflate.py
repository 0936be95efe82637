"""permessage-deflate (RFC 7692), server side, with a bounded inflate.

``negotiate_deflate(offers, max_size)`` picks the first acceptable offer of the
client's ``Sec-WebSocket-Extensions`` fields and returns the response header value
and a ``Deflate``: the wsproto ``Extension`` that ``core.frames.FrameReader`` hands
compressed frames to, and the compressor ``core.connection`` sends with.
"""

from __future__ import annotations

import zlib
from typing import Any

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, Opcode, ParseFailed, RsvBits

__all__ = ["Deflate", "negotiate_deflate", "MIN_COMPRESS", "NO_LIMIT"]

NO_LIMIT = 2**63  # frame lengths cannot exceed it (RFC 6455 5.2): "no max_size"

# permessage-deflate settings, as websockets' defaults: a 4 KiB window and memLevel 5
# keep a compressing connection at tens of KiB instead of hundreds.
_SERVER_MAX_WINDOW_BITS = 12
_MEM_LEVEL = 5
# Messages shorter than this go out uncompressed (RFC 7692 allows it per message):
# deflating a few bytes costs more CPU than it saves on the wire.
MIN_COMPRESS = 64

_RSV1 = RsvBits(True, False, False)


class Deflate(Extension):
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
            out = self._decompressor.decompress(data, budget + 1 if budget < NO_LIMIT // 2 else 0)
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


def negotiate_deflate(offers: list[str], max_size: int) -> tuple[str, Deflate] | None:
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
                extension = Deflate(
                    server_no_context_takeover="server_no_context_takeover" in seen,
                    client_no_context_takeover="client_no_context_takeover" in seen,
                    server_max_window_bits=server_bits,
                    # zlib writes a 9-bit window when asked for 8; inflate accordingly.
                    client_max_window_bits=max(client_bits, 9),
                    max_size=max_size,
                )
                return "; ".join(response), extension
    return None
