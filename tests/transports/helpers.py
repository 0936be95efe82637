"""Byte-level helpers: client handshakes and masked client frames, built by hand."""

from __future__ import annotations

import base64
import os
import struct
import zlib

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3, for KEY


def handshake(
    target: str = "/echo",
    *,
    key: str = KEY,
    extra: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    method: str = "GET",
) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in extra),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def random_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def mask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    key: bytes | None = None,
    length: int | None = None,
    long_form: int | None = None,
) -> bytes:
    """A client frame. ``length`` overrides the declared length; ``long_form`` (2 or 8)
    forces an extended length field even when a shorter one would do."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if masked else 0
    if long_form == 8 or (long_form is None and n > 0xFFFF):
        head = bytes((b0, mbit | 127)) + struct.pack("!Q", n)
    elif long_form == 2 or (long_form is None and n > 125):
        head = bytes((b0, mbit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, mbit | n))
    if not masked:
        return head + payload
    key = os.urandom(4) if key is None else key
    return head + key + mask(payload, key)


def text(data: str, **kw: object) -> bytes:
    return frame(0x1, data.encode(), **kw)  # type: ignore[arg-type]


def binary(data: bytes, **kw: object) -> bytes:
    return frame(0x2, data, **kw)  # type: ignore[arg-type]


def close(code: int | None = 1000, reason: str = "", raw: bytes | None = None) -> bytes:
    if raw is not None:
        return frame(0x8, raw)
    payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
    return frame(0x8, payload)


def deflate(data: bytes, compressor: zlib._Compress | None = None) -> bytes:
    """A permessage-deflate payload (RFC 7692 7.2.1)."""
    c = compressor or zlib.compressobj(9, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def parse_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """Server frames (unmasked) -> [(first byte, length, payload)]; all must be whole."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert not b1 & 0x80, "a server frame must not be masked"
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            (n,) = struct.unpack("!H", data[pos : pos + 2])
            pos += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[pos : pos + 8])
            pos += 8
        frames.append((b0, n, data[pos : pos + n]))
        pos += n
    assert pos == len(data)
    return frames


def close_code_of(data: bytes) -> int | None:
    """The code of the close frame at the end of ``data`` (None: empty close)."""
    b0, _, payload = parse_frames(data)[-1]
    assert b0 == 0x88, f"last frame is {b0:#x}, not a close frame"
    return struct.unpack("!H", payload[:2])[0] if payload else None


class RawClient:
    """A byte-level client on an anyio socket stream (asyncio or trio)."""

    def __init__(self, stream: object) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        import anyio

        return cls(await anyio.connect_tcp("127.0.0.1", port))

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stream.aclose()  # type: ignore[attr-defined]

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)  # type: ignore[attr-defined]

    async def _fill(self) -> bool:
        import anyio

        try:
            chunk = await self.stream.receive()  # type: ignore[attr-defined]
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return False
        self.buffer += chunk
        return True

    async def read_head(self) -> str:
        """The HTTP response head (status line and headers), without the blank line."""
        while b"\r\n\r\n" not in self.buffer:
            if not await self._fill():
                raise EOFError(f"EOF before the end of the response head: {bytes(self.buffer)!r}")
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        return head.decode("latin-1")

    async def read_to_eof(self) -> bytes:
        while await self._fill():
            pass
        data, self.buffer = bytes(self.buffer), bytearray()
        return data

    async def read_frame(self) -> tuple[int, bytes]:
        """The next server frame: (first byte, payload); EOFError at EOF."""
        while True:
            data = bytes(self.buffer)
            if len(data) >= 2:
                n = data[1] & 0x7F
                pos = 2
                if n == 126 and len(data) >= 4:
                    (n,) = struct.unpack("!H", data[2:4])
                    pos = 4
                elif n == 127 and len(data) >= 10:
                    (n,) = struct.unpack("!Q", data[2:10])
                    pos = 10
                if (data[1] & 0x7F) < 126 or pos > 2:
                    if len(data) >= pos + n:
                        del self.buffer[: pos + n]
                        return data[0], data[pos : pos + n]
            if not await self._fill():
                raise EOFError("EOF before a whole frame")

    async def open(self, target: str = "/echo", extra: list[tuple[str, str]] | tuple = ()) -> str:
        """Send a handshake; return the response head, which must be a 101."""
        await self.send(handshake(target, key=random_key(), extra=extra))
        head = await self.read_head()
        assert head.startswith("HTTP/1.1 101 "), head
        return head

    async def expect_close(self) -> int | None:
        """Read frames up to a close frame (skipping pings); return its code."""
        while True:
            b0, payload = await self.read_frame()
            if b0 == 0x88:
                return struct.unpack("!H", payload[:2])[0] if payload else None
            assert b0 == 0x89, f"unexpected frame {b0:#x}"
