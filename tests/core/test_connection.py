"""The sans-IO connection driver alone: bytes in, events and bytes out, no I/O."""

from __future__ import annotations

import os
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Opcode as WsOpcode
from websockets.http11 import Response as WsResponse
from websockets.uri import parse_uri

from tests.transports.helpers import (
    ACCEPT,
    binary,
    close,
    close_code_of,
    deflate,
    frame,
    handshake,
    parse_frames,
    text,
)
from websockets_routes.core import Close, ConnectionClosed, Respond, Router
from websockets_routes.core.connection import ServerConnection, State
from websockets_routes.core.events import Closed, Message, Ping, Pong, RequestReceived
from websockets_routes.core.frames import SEPARATE_PAYLOAD_FROM, FrameReader
from websockets_routes.core.http11 import parse_plain_head

router = Router()


@router.route("/echo", subprotocols=["chat.v2", "chat.v1"])
async def echo(ws, path):  # pragma: no cover - never run here
    pass


def deciding(data: bytes | None = None, **options) -> tuple[ServerConnection, list]:
    conn = ServerConnection(**options)
    events = conn.receive_data(handshake() if data is None else data)
    return conn, events


def opened(extra=(), **options) -> tuple[ServerConnection, bytes]:
    conn, events = deciding(handshake(extra=extra), **options)
    (event,) = events
    assert type(event) is RequestReceived
    assert conn.carry_out(router.decide(event.request)) == []
    assert conn.state is State.OPEN
    return conn, conn.data_to_send()


def feed(conn: ServerConnection, data: bytes) -> list:
    return conn.receive_data(data)


# Opening handshake


def test_accept_writes_101_with_accept_key_and_subprotocol():
    conn, response = opened(extra=[("Sec-WebSocket-Protocol", "chat.v1, chat.v2")])
    head = response.decode()
    assert head.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {ACCEPT}\r\n" in head
    assert "Sec-WebSocket-Protocol: chat.v2\r\n" in head
    assert head.endswith("\r\n\r\n")
    assert conn.subprotocol == "chat.v2"
    assert conn.path == "/echo" and conn.request.method == "GET"


def test_request_event_carries_request_and_peer():
    conn = ServerConnection(remote_address=("10.0.0.1", 5000))
    (event,) = conn.receive_data(handshake("/echo?x=1"))
    assert event.request.target == "/echo?x=1"
    assert event.request.headers["sec-websocket-version"] == "13"
    assert event.request.remote_address == ("10.0.0.1", 5000)
    assert conn.state is State.DECIDING


def test_request_split_in_single_bytes_reads_as_a_whole_one():
    data = handshake(extra=[("X-Spaces", "  a  b  "), ("x-empty", "")])
    conn = ServerConnection()
    events = []
    for i in range(len(data)):
        events += conn.receive_data(data[i : i + 1])  # h11 parses this one
    (whole,) = ServerConnection().receive_data(data)  # the fast parser this one
    assert [type(e) for e in events] == [RequestReceived]
    assert events[0].request.headers.items() == whole.request.headers.items()
    assert whole.request.headers["x-spaces"] == "a  b"
    assert parse_plain_head(data) is not None


def test_deflate_negotiated_by_default_and_reflected_in_101():
    conn, response = opened(
        extra=[("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
    )
    assert (
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12; "
        "client_max_window_bits=12\r\n" in response.decode()
    )


def test_compression_none_turns_deflate_off():
    conn, response = opened(
        extra=[("Sec-WebSocket-Extensions", "permessage-deflate")], compression=None
    )
    assert b"Sec-WebSocket-Extensions" not in response
    assert conn.send_text("x" * 1000)[0] == 0x81  # no RSV1


def test_compression_option_is_checked():
    with pytest.raises(ValueError, match="compression"):
        ServerConnection(compression="gzip")


def test_respond_writes_http_response_and_closes():
    conn, _ = deciding()
    events = conn.carry_out(Respond(403, [("X-Why", "no")], b"forbidden"))
    assert events == [Closed(1006, "")]
    assert conn.state is State.CLOSED
    out = conn.data_to_send()
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"x-why: no" in head.lower()
    assert b"content-length: 9" in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"forbidden"


def test_respond_to_head_has_headers_but_no_body():
    conn, _ = deciding(handshake(method="HEAD"))
    conn.carry_out(Respond(200, [("Content-Type", "text/plain")], b"hello"))
    out = conn.data_to_send()
    assert out.lower().startswith(b"http/1.1 200 ok\r\n")
    assert b"content-length: 5" in out.lower()
    assert out.endswith(b"\r\n\r\n")


def test_respond_with_header_injection_becomes_500():
    conn, _ = deciding()
    conn.carry_out(Respond(200, [("X-A", "a\r\nSet-Cookie: evil=1")], b""))
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 500 ")
    assert b"evil" not in out


def test_close_decision_completes_handshake_then_closes_with_code():
    conn, events = deciding()
    decision = router.decide(events[0].request)
    conn.carry_out(Close(4040, "no route", decision.path, decision.headers))
    out = conn.data_to_send()
    head, _, frames = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert parse_frames(frames) == [(0x88, 10, struct.pack("!H", 4040) + b"no route")]
    assert conn.state is State.CLOSING
    assert feed(conn, close(4040)) == [Closed(4040, "")]
    assert conn.data_to_send() == b""  # nothing more: the handshake is complete


def test_malformed_request_gets_400():
    conn = ServerConnection()
    events = conn.receive_data(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
    assert events == [Closed(1006, "")]
    assert conn.data_to_send().startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_header_block_over_limit_in_pieces_gets_431():
    conn = ServerConnection(max_header_bytes=1024)
    events = conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert events == []
    events = conn.receive_data(b"X-Big: " + b"a" * 2000 + b"\r\n")
    assert events == [Closed(1006, "")]
    assert conn.data_to_send().startswith(b"HTTP/1.1 431 ")


def test_header_block_over_limit_in_one_piece_gets_431():
    conn = ServerConnection(max_header_bytes=1024)
    events = conn.receive_data(handshake(extra=[("X-Big", "a" * 2000)]))
    assert events == [Closed(1006, "")]
    assert conn.data_to_send().startswith(b"HTTP/1.1 431 ")


def test_eof_before_request_is_closed_1006():
    conn = ServerConnection()
    conn.receive_data(b"GET / HT")
    assert conn.receive_eof() == [Closed(1006, "")]
    assert conn.receive_eof() == []  # exactly once
    assert conn.receive_data(b"more") == []


def test_bytes_after_request_are_delivered_after_carry_out():
    conn, events = deciding(handshake() + text("early"))
    conn.receive_data(binary(b"while deciding"))
    assert [type(e) for e in events] == [RequestReceived]
    assert conn.carry_out(router.decide(events[0].request)) == [
        Message("early"),
        Message(b"while deciding"),
    ]


def test_carry_out_needs_deciding_state():
    conn = ServerConnection()
    with pytest.raises(RuntimeError):
        conn.carry_out(Respond(404))


# Messages


def test_text_and_binary_messages():
    conn, _ = opened()
    assert feed(conn, text("héllo") + binary(b"\x00\xff") + text("")) == [
        Message("héllo"),
        Message(b"\x00\xff"),
        Message(""),
    ]


@pytest.mark.parametrize("size", [125, 126, 65535, 65536, 300_000])
def test_message_length_encodings(size):
    conn, _ = opened()
    payload = os.urandom(size)
    assert feed(conn, binary(payload)) == [Message(payload)]


def test_fragmented_message_with_interleaved_ping():
    conn, _ = opened()
    data = (
        frame(0x1, b"frag", fin=False)
        + frame(0x9, b"ping!")
        + frame(0x0, "mént".encode()[:2], fin=False)
        + frame(0x0, "mént".encode()[2:])
    )
    assert feed(conn, data) == [Ping(b"ping!"), Message("fragmént")]
    assert parse_frames(conn.data_to_send()) == [(0x8A, 5, b"ping!")]


def test_pong_event():
    conn, _ = opened()
    assert feed(conn, frame(0xA, b"p")) == [Pong(b"p")]
    assert conn.data_to_send() == b""


def test_large_message_split_across_reads():
    conn, _ = opened()
    payload = os.urandom(200_000)
    data = binary(payload) + text("after")
    events = []
    for i in range(0, len(data), 7000):
        events += feed(conn, data[i : i + 7000])
    assert events == [Message(payload), Message("after")]


# Limits


def test_message_over_max_size_closes_1009():
    conn, _ = opened(max_size=1000)
    assert feed(conn, binary(b"x" * 1000)) == [Message(b"x" * 1000)]
    events = feed(conn, binary(b"x" * 1001))
    assert events == [Closed(1009, "message over 1000 bytes")]
    assert close_code_of(conn.data_to_send()) == 1009


def test_max_size_is_checked_on_the_header_before_the_payload_arrives():
    conn, _ = opened(max_size=1000)
    head = frame(0x2, b"x" * 100_000)[:14]  # header + mask only
    assert feed(conn, head) == [Closed(1009, "message over 1000 bytes")]


def test_fragmented_message_over_max_size_closes_1009_as_it_grows():
    conn, _ = opened(max_size=1000)
    events = feed(conn, frame(0x2, b"a" * 600, fin=False))
    assert events == []
    # The second fragment's header alone is enough to know.
    events = feed(conn, frame(0x0, b"b" * 600, fin=False)[:8])
    assert events == [Closed(1009, "message over 1000 bytes")]


def test_max_size_none_is_unlimited():
    conn, _ = opened(extra=[("Sec-WebSocket-Extensions", "permessage-deflate")], max_size=None)
    payload = b"z" * (2**20 + 1)
    assert feed(conn, binary(payload)) == [Message(payload)]
    assert feed(conn, frame(0x2, deflate(payload), rsv=0b100)) == [Message(payload)]


def test_deflate_bomb_is_cut_as_it_inflates():
    conn, _ = opened(extra=[("Sec-WebSocket-Extensions", "permessage-deflate")], max_size=2**20)
    bomb = deflate(b"\x00" * (16 * 2**20))  # 16 MiB of zeros in ~16 KiB
    assert len(bomb) < 100_000
    events = feed(conn, frame(0x2, bomb, rsv=0b100))
    assert events == [Closed(1009, "message over 1048576 bytes")]
    assert close_code_of(conn.data_to_send()) == 1009


def test_compressed_message_at_max_size_passes():
    conn, _ = opened(extra=[("Sec-WebSocket-Extensions", "permessage-deflate")], max_size=5000)
    payload = b"abc" * 1666 + b"ab"  # 5000 bytes
    assert feed(conn, frame(0x2, deflate(payload), rsv=0b100)) == [Message(payload)]
    events = feed(conn, frame(0x2, deflate(payload + b"!"), rsv=0b100))
    assert [e.code for e in events] == [1009]


# Protocol errors


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x1, b"hi", masked=False), 1002),  # unmasked client frame
        (frame(0x3, b"hi"), 1002),  # reserved data opcode
        (frame(0xB, b""), 1002),  # reserved control opcode
        (frame(0x1, b"hi", rsv=0b100), 1002),  # RSV1 without an extension
        (frame(0x1, b"hi", rsv=0b010), 1002),  # RSV2
        (frame(0x1, b"hi", rsv=0b001), 1002),  # RSV3
        (frame(0x9, b"x" * 126), 1002),  # control frame over 125 bytes
        (frame(0x9, b"x", fin=False), 1002),  # fragmented control frame
        (frame(0x0, b"x"), 1002),  # continuation with no message
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),  # new message mid-message
        (frame(0x2, b"x" * 10, long_form=2), 1002),  # non-minimal length
        (frame(0x2, b"x" * 200, long_form=8), 1002),
        (close(raw=b"\x03"), 1002),  # one-byte close payload
        (close(999), 1002),
        (close(1004), 1002),
        (close(1005), 1002),
        (close(1006), 1002),
        (close(1015), 1002),
        (close(2000), 1002),
        (close(5000), 1002),
        (frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8, fast path
        (frame(0x1, b"\xed\xa0\x80"), 1007),  # a surrogate
        (frame(0x1, b"ok", fin=False) + frame(0x0, b"\xc0\xaf"), 1007),  # overlong, slow path
        (frame(0x8, b"\x03\xe8\xff"), 1007),  # invalid UTF-8 in the close reason
    ],
)
def test_protocol_errors_close_with_the_rfc_code(data, code):
    conn, _ = opened()
    events = feed(conn, data)
    assert [type(e) for e in events] == [Closed]
    assert events[0].code == code
    assert close_code_of(conn.data_to_send()) == code
    assert conn.state is State.CLOSED
    assert feed(conn, text("ignored")) == []


def test_failure_after_good_messages_is_immediate_by_default():
    conn, _ = opened()
    events = feed(conn, text("hello") + frame(0x5, b"reserved opcode"))
    assert events == [Message("hello"), Closed(1002, "Invalid opcode 0x5")]
    assert conn.failure_pending is None


def test_failure_after_good_messages_waits_for_them_to_be_answered():
    conn, _ = opened(defer_failure=True)
    events = feed(conn, text("hello") + frame(0x5, b"reserved opcode") + text("ignored"))
    assert events == [Message("hello")]
    assert conn.failure_pending == (1002, "Invalid opcode 0x5")
    assert conn.state is State.OPEN and conn.data_to_send() == b""
    assert feed(conn, text("ignored too")) == []
    echo = conn.send_text("hello")  # the application answers what came before
    assert conn.fail_pending() == [Closed(1002, "Invalid opcode 0x5")]
    assert parse_frames(echo) == [(0x81, 5, b"hello")]
    assert close_code_of(conn.data_to_send()) == 1002
    assert conn.fail_pending() == []


def test_failure_pending_then_application_close():
    conn, _ = opened(defer_failure=True)
    feed(conn, text("hello") + frame(0x1, b"\xff"))
    assert conn.failure_pending == (1007, "invalid UTF-8")
    assert close_code_of(conn.close(1000)) == 1000
    assert conn.fail_pending() == [Closed(1000, "")]  # our close went first: no second one
    assert conn.data_to_send() == b""


def test_invalid_utf8_fails_fast_in_a_partial_text_frame():
    conn, _ = opened()
    data = frame(0x1, b"valid " + b"\xff" + b"x" * 1000)
    # Only the start of the frame has arrived: the error is already certain.
    assert [e.code for e in feed(conn, data[:20])] == [1007]


def test_utf8_split_across_fragments_is_fine():
    conn, _ = opened()
    euro = "€".encode()
    data = frame(0x1, euro[:1], fin=False) + frame(0x0, euro[1:2], fin=False) + frame(0x0, euro[2:])
    assert feed(conn, data) == [Message("€")]


# Closing handshake


def test_peer_close_is_echoed():
    conn, _ = opened()
    assert feed(conn, close(1001, "bye")) == [Closed(1001, "bye")]
    assert parse_frames(conn.data_to_send()) == [(0x88, 5, b"\x03\xe9bye")]
    assert conn.close_code == 1001 and conn.close_received == (1001, "bye")


def test_empty_close_is_echoed_empty_and_reads_as_1005():
    conn, _ = opened()
    assert feed(conn, close(None)) == [Closed(1005, "")]
    assert parse_frames(conn.data_to_send()) == [(0x88, 0, b"")]


def test_server_close_then_peer_reply():
    conn, _ = opened()
    out = conn.close(1000, "done")
    assert parse_frames(out) == [(0x88, 6, b"\x03\xe8done")]
    assert conn.state is State.CLOSING
    assert conn.close() == b""  # idempotent
    # Messages still in flight are reported; the reply ends the connection.
    assert feed(conn, text("late") + close(1000)) == [Message("late"), Closed(1000, "")]
    assert conn.data_to_send() == b""


def test_eof_while_closing_reports_the_code_sent():
    conn, _ = opened()
    conn.close(1001)
    assert conn.receive_eof() == [Closed(1001, "")]


def test_eof_while_open_is_1006():
    conn, _ = opened()
    assert conn.receive_eof() == [Closed(1006, "")]


def test_close_checks_code_and_reason():
    conn, _ = opened()
    with pytest.raises(ValueError):
        conn.close(1005)
    with pytest.raises(ValueError):
        conn.close(1000, "x" * 124)
    assert conn.state is State.OPEN


def test_sending_after_close_raises_connection_closed():
    conn, _ = opened()
    conn.close(1000)
    with pytest.raises(ConnectionClosed) as info:
        conn.send_text("x")
    assert info.value.code == 1000
    feed(conn, close(1000))
    with pytest.raises(ConnectionClosed):
        conn.send_bytes(b"x")
    with pytest.raises(ConnectionClosed):
        conn.send_ping()


# Sending


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_send_frames(size):
    conn, _ = opened()
    assert parse_frames(conn.send_text("é" * (size // 2))) == [
        (0x81, (size // 2) * 2, ("é" * (size // 2)).encode())
    ]
    payload = os.urandom(size)
    assert parse_frames(conn.send(payload)) == [(0x82, size, payload)]
    assert parse_frames(conn.send(bytearray(payload))) == [(0x82, size, payload)]
    assert parse_frames(conn.send_ping(b"p")) == [(0x89, 1, b"p")]
    assert parse_frames(conn.send_pong(b"q")) == [(0x8A, 1, b"q")]


@pytest.mark.parametrize("offer_deflate", [False, True])
def test_send_parts_join_into_the_frame_send_gives(offer_deflate):
    # Two connections in the same state (compression context included): one sends
    # each message whole, the other in parts.
    extra = [("Sec-WebSocket-Extensions", "permessage-deflate")] if offer_deflate else []
    (whole, _), (parted, _) = opened(extra), opened(extra)
    sizes = [0, 125, 126, 65535, 65536, 70_000]
    messages = [os.urandom(n) for n in sizes] + ["é" * (n // 2) for n in sizes] + ["ab" * 40_000]
    messages += [bytearray(os.urandom(70_000)), memoryview(os.urandom(70_000))]
    assert (parted.extensions is not None) is offer_deflate
    apart = 0
    for message in messages:
        head, tail = parted.send_parts(message)
        assert head + tail == whole.send(message)
        ((_, n, payload),) = parse_frames(head + tail)
        if type(message) in (bytes, str) and n >= SEPARATE_PAYLOAD_FROM:
            assert tail == payload  # the header alone is the head
            apart += 1
        else:
            assert tail == b""  # one whole frame
    assert apart == (3 if offer_deflate else 7)  # repeated text compresses to little
    assert parted.messages_out == whole.messages_out == len(messages)
    parted.close()
    with pytest.raises(ConnectionClosed):
        parted.send_parts(b"x" * 70_000)


def test_send_rejects_other_types_and_big_pings():
    conn, _ = opened()
    with pytest.raises(TypeError):
        conn.send(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        conn.send_parts(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        conn.send_ping(b"x" * 126)


# Against an independent implementation: the websockets sans-IO client


def ws_client(offer_deflate: bool = True, **kw) -> tuple[ClientProtocol, ServerConnection]:
    client = ClientProtocol(
        parse_uri("ws://127.0.0.1/echo"),
        extensions=[ClientPerMessageDeflateFactory()] if offer_deflate else None,
        **kw,
    )
    client.send_request(client.connect())
    conn = ServerConnection()
    (event,) = conn.receive_data(b"".join(client.data_to_send()))
    conn.carry_out(router.decide(event.request))
    client.receive_data(conn.data_to_send())
    (response,) = client.events_received()
    assert isinstance(response, WsResponse) and response.status_code == 101
    return client, conn


@pytest.mark.parametrize("offer_deflate", [True, False])
def test_round_trip_with_websockets_client(offer_deflate):
    client, conn = ws_client(offer_deflate)
    messages = ["hi", "x" * 5000, os.urandom(70_000), b"", "€" * 40_000]
    for message in messages:
        if isinstance(message, str):
            client.send_text(message.encode())
        else:
            client.send_binary(message)
        (event,) = conn.receive_data(b"".join(client.data_to_send()))
        assert event == Message(message)
        client.receive_data(conn.send(event.data))
        (echoed,) = client.events_received()
        expected = WsOpcode.TEXT if isinstance(message, str) else WsOpcode.BINARY
        assert echoed.opcode is expected
        assert echoed.data == (message.encode() if isinstance(message, str) else message)
    client.send_close(1000, "bye")
    assert conn.receive_data(b"".join(client.data_to_send())) == [Closed(1000, "bye")]
    client.receive_data(conn.data_to_send())
    assert client.close_rcvd.code == 1000


def test_compressed_fragmented_message_with_control_frame_inside():
    client, conn = ws_client()
    client.send_text(b"part one, ", fin=False)
    client.send_ping(b"hello")
    client.send_continuation(b"part two", fin=True)
    events = conn.receive_data(b"".join(client.data_to_send()))
    assert events == [Ping(b"hello"), Message("part one, part two")]


def test_deflate_no_context_takeover_both_ways():
    payloads = [b"same text again " * 20] * 3
    c = zlib.compressobj(9, zlib.DEFLATED, -15)  # context kept by the client
    conn, response = opened(
        extra=[
            (
                "Sec-WebSocket-Extensions",
                "permessage-deflate; server_no_context_takeover; client_max_window_bits",
            )
        ]
    )
    assert b"server_no_context_takeover" in response
    for payload in payloads:
        assert feed(conn, frame(0x2, deflate(payload, c), rsv=0b100)) == [Message(payload)]
        out = conn.send(payload)
        assert out[0] == 0xC2
        # Each message inflates on its own: the server kept no context.
        (_, _, body) = parse_frames(out)[0]
        assert zlib.decompressobj(-12).decompress(body + b"\x00\x00\xff\xff") == payload


# Fast path and wsproto path agree, however the bytes are chunked


class GeneralOnly(FrameReader):
    """Every frame through wsproto's decoders: the reference for the fast path."""

    __slots__ = ()

    def receive(self, data, events):
        return self.receive_general(data, events)


class SlowOnly(ServerConnection):
    """Every frame through wsproto: the reference for the fast path."""

    __slots__ = ()
    _frame_reader = GeneralOnly


def _open(cls, max_size):
    conn = cls(max_size=max_size, defer_failure=True)
    (event,) = conn.receive_data(handshake())
    conn.carry_out(router.decide(event.request))
    conn.data_to_send()
    return conn


frames_strategy = st.lists(
    st.one_of(
        st.text(max_size=200).map(lambda s: text(s)),
        st.binary(max_size=3000).map(lambda b: binary(b)),
        st.binary(max_size=125).map(lambda b: frame(0x9, b)),
        st.binary(max_size=20).map(lambda b: frame(0x1, b)),  # maybe invalid UTF-8
        st.binary(max_size=50).map(lambda b: frame(0x2, b, fin=False) + frame(0x0, b)),
        st.binary(max_size=40),  # garbage
        st.integers(min_value=0, max_value=5100).map(lambda code: close(code, "r")),
        st.binary(max_size=4).map(lambda b: frame(0x8, b)),  # short or odd close payloads
        st.binary(min_size=120, max_size=130).map(lambda b: frame(0x9, b)),
        st.sampled_from(
            [
                frame(0x1, "é".encode()[:1], fin=False) + frame(0x0, "é".encode()[1:]),
                frame(0x3, b"x"),
                frame(0x1, b"x", masked=False),
                frame(0x2, b"x" * 5000),  # over max_size below
                close(1000),
            ]
        ),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frames_strategy, cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_fast_path_matches_wsproto_under_any_chunking(frames, cuts):
    data = b"".join(frames)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]

    fast, slow = _open(ServerConnection, 4096), _open(SlowOnly, 4096)
    fast_events, slow_events = [], []
    for chunk in chunks:
        fast_events += fast.receive_data(chunk)
    slow_events = slow.receive_data(data)
    # Where the input was cut decides whether a failure waits for the messages before
    # it to be answered; once carried out, both end the same way.
    fast_events += fast.fail_pending()
    slow_events += slow.fail_pending()
    assert fast_events == slow_events
    assert fast.data_to_send() == slow.data_to_send()
    assert fast.state is slow.state
