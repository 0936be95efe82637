"""core.frames.FrameReader against wsproto's own public FrameProtocol, under any chunking.

The reader runs wsproto's public decoders for what its fast path does not take; this
holds the whole reader (fast path included) to a plain ``FrameProtocol(client=False,
extensions=[])`` fed the same bytes in the same pieces: the same messages, the same
control frames, the same close, the same failure code (and wording, for 1002).
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode, ParseFailed

from tests.transports.helpers import frame
from websockets_routes.core.deflate import NO_LIMIT
from websockets_routes.core.events import Message, Ping, Pong
from websockets_routes.core.frames import (
    SEPARATE_PAYLOAD_FROM,
    CloseReceived,
    Failure,
    FrameReader,
    encode_frame,
    frame_parts,
    parse_close,
)

KEY = b"\x01\x02\x03\x04"


def client_frame(opcode: int, payload: bytes = b"", *, key: bytes = KEY, **kw: Any) -> bytes:
    """A client frame (tests.transports.helpers.frame), with a fixed key by default:
    hypothesis replays the same bytes."""
    return frame(opcode, payload, key=key, **kw)


def ours(chunks: list[bytes]) -> list[Any]:
    reader = FrameReader(NO_LIMIT)
    out: list[Any] = []
    for chunk in chunks:
        events: list[Any] = []
        end = reader.receive(chunk, events)
        for event in events:
            if type(event) is Message:
                out.append(("message", event.data))
            elif type(event) is Ping:
                out.append(("ping", event.payload))
            else:
                assert type(event) is Pong
                out.append(("pong", event.payload))
        if type(end) is CloseReceived:
            return [*out, ("close", end.code, end.reason)]
        if type(end) is Failure:
            return [*out, ("fail", end.code, end.reason if end.code == 1002 else "")]
        assert end is None
    return out


def wsproto(chunks: list[bytes]) -> list[Any]:
    proto = FrameProtocol(client=False, extensions=[])
    out: list[Any] = []
    parts: list[Any] = []
    for chunk in chunks:
        proto.receive_bytes(chunk)
        try:
            for frame in proto.received_frames():
                if frame.opcode is Opcode.PING:
                    out.append(("ping", bytes(frame.payload)))  # type: ignore[arg-type]
                elif frame.opcode is Opcode.PONG:
                    out.append(("pong", bytes(frame.payload)))  # type: ignore[arg-type]
                elif frame.opcode is Opcode.CLOSE:
                    code, reason = frame.payload  # type: ignore[misc]
                    return [*out, ("close", int(code), reason)]
                else:
                    parts.append(frame.payload)
                    if frame.message_finished:
                        empty = "" if frame.opcode is Opcode.TEXT else b""
                        out.append(("message", empty.join(parts)))
                        parts = []
        except ParseFailed as exc:
            code = int(exc.code)
            return [*out, ("fail", code, str(exc) if code == 1002 else "")]
    return out


def _wsproto_knows(code: int) -> bool:
    try:
        CloseReason(code)
    except ValueError:
        return False
    return True


def expected(chunks: list[bytes]) -> list[Any]:
    """wsproto's answer, with the one place where we knowingly differ.

    Close code 1014 (Bad Gateway, in the IANA registry of RFC 6455 7.4) is not in
    wsproto 1.3's ``CloseReason``, so wsproto fails it as "unknown reserved code"; we
    accept it, as our own close() may send it, and then check its reason as for any
    code (not UTF-8: 1007, where wsproto stopped at the code).
    """
    theirs = wsproto(chunks)
    mine = ours(chunks)
    if (
        mine
        and (mine[-1][:2] == ("close", 1014) or mine[-1] == ("fail", 1007, ""))
        and not _wsproto_knows(1014)
        and theirs[-1] == ("fail", 1002, "CLOSE with unknown reserved code")
    ):
        return [*theirs[:-1], mine[-1]]
    return theirs


keys = st.binary(min_size=4, max_size=4)
utf8_text = st.text(max_size=40).map(lambda s: s.encode("utf-8"))


@st.composite
def fragmented(draw: Any) -> bytes:
    """A text or binary message in several frames, maybe with control frames between."""
    opcode = draw(st.sampled_from([0x1, 0x2]))
    data = draw(utf8_text if opcode == 0x1 else st.binary(max_size=60))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    out = []
    for i, piece in enumerate(pieces):
        out.append(
            client_frame(opcode if i == 0 else 0x0, piece, key=draw(keys), fin=i == len(pieces) - 1)
        )
        if draw(st.booleans()):
            out.append(client_frame(draw(st.sampled_from([0x9, 0xA])), b"c", key=draw(keys)))
    return b"".join(out)


@st.composite
def one_frame(draw: Any) -> bytes:
    key = draw(keys)
    kind = draw(st.integers(0, 17))
    if kind == 0:
        return client_frame(0x1, draw(utf8_text), key=key)
    if kind == 1:
        return client_frame(0x2, draw(st.binary(max_size=300)), key=key)
    if kind == 2:  # text that may not be UTF-8, maybe fragmented
        return client_frame(0x1, draw(st.binary(max_size=12)), key=key, fin=draw(st.booleans()))
    if kind == 3:
        return client_frame(
            draw(st.sampled_from([0x9, 0xA])), draw(st.binary(max_size=125)), key=key
        )
    if kind == 4:  # a control frame over 125 bytes
        return client_frame(0x9, draw(st.binary(min_size=126, max_size=130)), key=key)
    if kind == 5:  # a fragmented control frame
        return client_frame(0x9, b"x", key=key, fin=False)
    if kind == 6:  # a close with any code and a reason that may not be UTF-8
        code = draw(st.integers(0, 5100))
        reason = draw(st.one_of(utf8_text.map(lambda b: b[:20]), st.binary(max_size=4)))
        return client_frame(0x8, struct.pack("!H", code) + reason, key=key)
    if kind == 7:  # empty, one-byte or odd close payloads
        return client_frame(0x8, draw(st.binary(max_size=3)), key=key)
    if kind == 8:  # reserved opcodes
        opcode = draw(st.sampled_from([0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF]))
        return client_frame(opcode, b"r", key=key)
    if kind == 9:  # RSV bits without an extension
        return client_frame(
            draw(st.sampled_from([0x1, 0x2, 0x9])), b"r", key=key, rsv=draw(st.integers(1, 7))
        )
    if kind == 10:  # unmasked
        return client_frame(draw(st.sampled_from([0x1, 0x2, 0x8, 0x9])), b"u", masked=False)
    if kind == 11:  # a length in a longer field than needed
        size = draw(st.sampled_from([0, 5, 125, 126, 300]))
        return client_frame(0x2, b"l" * size, key=key, long_form=draw(st.sampled_from([2, 8])))
    if kind == 12:  # 8-byte length with the top bit set
        return bytes((0x82, 0xFF)) + struct.pack("!Q", 2**63 + 1) + key
    if kind == 13:  # a continuation with no message to continue
        return client_frame(0x0, b"c", key=key, fin=draw(st.booleans()))
    if kind == 14:  # a 16-bit and a 64-bit length frame
        return client_frame(
            draw(st.sampled_from([0x1, 0x2])),
            b"a" * draw(st.sampled_from([126, 1000, 70000])),
            key=key,
        )
    if kind == 15:
        return draw(fragmented())
    if kind == 16:  # garbage
        return draw(st.binary(max_size=30))
    return client_frame(0x8, struct.pack("!H", 1000), key=key)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    frames=st.lists(one_frame(), max_size=8), cuts=st.lists(st.integers(min_value=0), max_size=6)
)
def test_frame_reader_matches_wsproto_frame_protocol_under_any_chunking(
    frames: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(frames)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert ours(chunks) == expected(chunks)
    assert ours([data]) == expected([data])


def described(event: Any) -> tuple[str, Any]:
    return type(event).__name__, event[0]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(one_frame(), max_size=8), cuts=st.lists(st.integers(min_value=0), max_size=6)
)
def test_frame_reader_copies_what_it_keeps_of_a_reused_buffer(
    frames: list[bytes], cuts: list[int]
) -> None:
    """A transport may hand the reader a view of its read buffer and overwrite the
    buffer after each call: the events are those of the same bytes given as bytes."""
    data = b"".join(frames)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    buffer = bytearray(max((len(c) for c in chunks), default=0))
    reader = FrameReader(NO_LIMIT)
    seen: list[Any] = []
    for chunk in chunks:
        buffer[: len(chunk)] = chunk
        events: list[Any] = []
        end = reader.receive(memoryview(buffer)[: len(chunk)], events)
        buffer[:] = b"\xaa" * len(buffer)  # the transport reads again into it
        seen += [described(e) for e in events]
        if end is not None:
            seen.append(end)
            break
    reference = FrameReader(NO_LIMIT)
    expected_seen: list[Any] = []
    for chunk in chunks:
        events = []
        end = reference.receive(chunk, events)
        expected_seen += [described(e) for e in events]
        if end is not None:
            expected_seen.append(end)
            break
    assert seen == expected_seen


@pytest.mark.parametrize(
    "data",
    [
        client_frame(0x1, "héllo".encode()) + client_frame(0x9, b"p") + client_frame(0xA, b"q"),
        client_frame(0x1, b"a", fin=False) + client_frame(0x9, b"p") + client_frame(0x0, b"b"),
        client_frame(0x1, b"\xff"),
        client_frame(0x1, "é".encode()[:1], fin=False) + client_frame(0x0, "é".encode()[1:]),
        client_frame(0x2, b"x", rsv=4),
        client_frame(0x3, b""),
        client_frame(0x2, b"x", masked=False),
        client_frame(0x8, b"\x03"),
        client_frame(0x8, struct.pack("!H", 1005)),
        client_frame(0x8, struct.pack("!H", 999)),
        client_frame(0x8, struct.pack("!H", 1004)),
        client_frame(0x8, struct.pack("!H", 4999) + b"\xff"),
        client_frame(0x2, b"z" * 70000) + client_frame(0x8, b""),
    ],
)
def test_frame_reader_matches_wsproto_on_known_cases(data: bytes) -> None:
    for size in (1, 2, 7, len(data) or 1):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert ours(chunks) == expected(chunks)


def test_close_code_1014_is_accepted() -> None:
    assert ours([client_frame(0x8, struct.pack("!H", 1014) + b"gw")]) == [("close", 1014, "gw")]
    assert parse_close(struct.pack("!H", 1014)) == (1014, "")


def test_nothing_is_read_after_the_end() -> None:
    reader = FrameReader(NO_LIMIT)
    events: list[Any] = []
    data = client_frame(0x8, struct.pack("!H", 1000)) + client_frame(0x1, b"late")
    assert reader.receive(data, events) == CloseReceived(1000, "")
    assert events == []


def test_pings_are_flagged_for_the_connection_to_answer() -> None:
    reader = FrameReader(NO_LIMIT)
    events: list[Any] = []
    assert reader.receive(client_frame(0xA, b"x"), events) is None and not reader.pinged
    assert reader.receive(client_frame(0x9, b"y"), events) is None and reader.pinged
    assert events == [Pong(b"x"), Ping(b"y")]


def test_max_size_fails_before_the_payload_arrives() -> None:
    reader = FrameReader(10)
    head = client_frame(0x2, b"x" * 11)[:6]  # header and key only
    assert reader.receive(head, []) == Failure(1009, "message over 10 bytes")


def test_encode_frame_lengths() -> None:
    for n in (0, 125, 126, 65535, 65536):
        out = encode_frame(0x82, b"a" * n)
        assert out.endswith(b"a" * n) and out[0] == 0x82
        assert len(out) - n == (2 if n < 126 else 4 if n < 65536 else 10)


@pytest.mark.parametrize("b0", [0x81, 0x82, 0xC1, 0xC2])
@pytest.mark.parametrize(
    "n",
    [0, 125, 126, SEPARATE_PAYLOAD_FROM - 1, SEPARATE_PAYLOAD_FROM, 65535, 65536, 70_000],
)
def test_frame_parts_are_the_frame(b0: int, n: int) -> None:
    payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
    head, tail = frame_parts(b0, payload)
    assert head + tail == encode_frame(b0, payload)
    if n >= SEPARATE_PAYLOAD_FROM:
        assert tail is payload  # written as it is, never copied
        assert len(head) == (4 if n < 65536 else 10)
    else:
        assert tail == b""
