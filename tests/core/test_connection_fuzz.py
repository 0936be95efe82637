"""Property tests (hypothesis) over the sans-IO connection driver alone, the code every
transport runs: the same bytes give the same events and the same output however
they are chunked; garbage never raises out of receive_data() (or receive_eof(),
carry_out()); decide() never raises on any request the driver parses; what comes out
is well-formed (whole server frames, at most one close frame and it is last, at most
one Closed event, no message over max_size).

Inputs mix well-formed frames, frames broken in one field (reserved opcode, RSV bit,
unmasked, control frame too long or fragmented, invalid UTF-8, bad close code,
non-minimal length), compressed frames and raw garbage.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.transports.helpers import parse_frames
from websockets_routes import Router
from websockets_routes.core import Accept, Close, Respond
from websockets_routes.core.connection import ServerConnection, State
from websockets_routes.core.events import Closed, Message, Ping, Pong, RequestReceived

# FUZZ_EXAMPLES scales every property (make stress runs 5000; the default keeps
# make test fast). Derandomized: a run is the same everywhere and leaves no files.
SCALE = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=SCALE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MAX_SIZE = 1000
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def make_router() -> Router:
    router = Router(origins=[None, "https://ok.example"])

    @router.route("/echo", subprotocols=["a", "b"])
    async def echo(ws: Any, path: Any) -> None:
        pass

    @router.http("/health")
    async def health(request: Any) -> bytes:
        return b"ok"

    return router


ROUTER = make_router()


def handshake(deflate: bool) -> bytes:
    lines = [
        "GET /echo HTTP/1.1",
        "Host: x",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if deflate:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def encode_frame(
    b0: int, payload: bytes, *, masked: bool, key: bytes, length_form: int | None
) -> bytes:
    n = len(payload)
    m = 0x80 if masked else 0
    if length_form == 8 or (length_form is None and n > 0xFFFF):
        head = bytes((b0, m | 127)) + struct.pack("!Q", n)
    elif length_form == 2 or (length_form is None and n > 125):
        head = bytes((b0, m | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, m | n))
    if not masked:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


text_payloads = st.one_of(
    st.text(max_size=40).map(lambda s: s.encode("utf-8")),
    st.sampled_from([b"\xff", b"caf\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82"]),
)
payloads = st.one_of(st.binary(max_size=60), text_payloads, st.just(b"z" * 1200))
close_payloads = st.one_of(
    st.just(b""),
    st.binary(max_size=1),
    st.tuples(
        st.sampled_from([1000, 1001, 1002, 1005, 1006, 1011, 1015, 999, 3000, 4999, 5000]),
        st.one_of(st.text(max_size=20).map(str.encode), st.just(b"\xff\xfe")),
    ).map(lambda t: struct.pack("!H", t[0]) + t[1]),
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["data", "data", "control", "close", "compressed", "raw"]))
    if kind == "raw":
        return draw(st.binary(min_size=1, max_size=30))
    if kind == "control":
        opcode = draw(st.sampled_from([0x9, 0xA, 0xB, 0xF]))
        payload = draw(st.one_of(st.binary(max_size=20), st.just(b"p" * 126)))
    elif kind == "close":
        opcode, payload = 0x8, draw(close_payloads)
    elif kind == "compressed":
        opcode = draw(st.sampled_from([0x1, 0x2]))
        payload = deflated(
            draw(st.one_of(st.text(max_size=60).map(str.encode), st.just(bytes(3000))))
        )
    else:
        opcode = draw(st.sampled_from([0x0, 0x1, 0x2, 0x1, 0x2, 0x3, 0x7]))
        payload = draw(payloads)
    fin = (
        draw(st.booleans())
        if kind in ("data", "compressed")
        else draw(st.sampled_from([True, True, True, False]))
    )
    rsv = (
        0b100 if kind == "compressed" else draw(st.sampled_from([0, 0, 0, 0, 0b100, 0b010, 0b001]))
    )
    masked = draw(st.sampled_from([True, True, True, True, False]))
    key = draw(st.binary(min_size=4, max_size=4))
    length_form = draw(st.sampled_from([None, None, None, 2, 8]))
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    return encode_frame(b0, payload, masked=masked, key=key, length_form=length_form)


streams = st.lists(frames(), max_size=12).map(b"".join)


def normalize(event: Any) -> tuple[Any, ...]:
    if type(event) is RequestReceived:
        request = event.request
        return ("request", request.method, request.target, tuple(request.headers.items()))
    return (type(event).__name__, *event)


def run(
    chunks: list[bytes],
    *,
    defer_failure: bool = False,
    eof: bool = True,
    max_size: int = MAX_SIZE,
) -> dict[str, Any]:
    """Feed ``chunks`` as a transport does (the decision carried out as soon as the
    request is complete, a deferred failure carried out right after the input that
    raised it); return every event, all output and the final state."""
    conn = ServerConnection(max_size=max_size, max_header_bytes=4096, defer_failure=defer_failure)
    events: list[Any] = []
    out = bytearray()

    def take(new: list[Any]) -> None:
        for event in new:
            events.append(event)
            if type(event) is RequestReceived:
                decision = ROUTER.decide(event.request)
                if not isinstance(decision, (Accept, Respond, Close)):  # ServeHTTP
                    decision = Respond(200, [], b"ok")
                out.extend(conn.data_to_send())
                take(conn.carry_out(decision))
        out.extend(conn.data_to_send())

    for chunk in chunks:
        take(conn.receive_data(chunk))
        if conn.failure_pending is not None:
            take(conn.fail_pending())
    if eof:
        take(conn.receive_eof())
    return {
        "events": [normalize(e) for e in events],
        "raw_events": events,
        "out": bytes(out),
        "state": conn.state,
        "close_sent": conn.close_sent,
        "close_received": conn.close_received,
        "close_code": conn.close_code,
    }


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given points (modulo its length); no empty piece (an empty
    read never comes from a transport; see test_empty_input_is_no_input)."""
    points = sorted({c % (len(data) + 1) for c in cuts} - {0, len(data)})
    return (
        [data[i:j] for i, j in zip([0, *points], [*points, len(data)], strict=False)]
        if data
        else []
    )


def check_well_formed(result: dict[str, Any], max_size: int = MAX_SIZE) -> None:
    events = result["raw_events"]
    assert sum(type(e) is Closed for e in events) == 1
    assert type(events[-1]) is Closed
    for event in events:
        if type(event) is Message:
            data = event.data
            size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
            assert size <= max_size
        elif type(event) in (Ping, Pong):
            assert len(event.payload) <= 125
    out = result["out"]
    if out.startswith(b"HTTP/1.1 101 "):
        head, _, frames_out = out.partition(b"\r\n\r\n")
        parsed = parse_frames(frames_out)  # whole, unmasked frames only
        closes = [i for i, (b0, _, _) in enumerate(parsed) if b0 == 0x88]
        assert closes in ([], [len(parsed) - 1])
        for b0, n, _ in parsed:
            assert b0 in (0x88, 0x8A)  # the driver alone sends only pongs and a close
            assert n <= 125
    else:
        assert out == b"" or out.startswith(b"HTTP/1.1 ")


@settings(FUZZ, max_examples=max(1, SCALE * 4 // 5))
@given(
    st.booleans(),
    streams,
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
    st.booleans(),
)
def test_same_bytes_same_result_however_chunked(
    deflate: bool, body: bytes, cuts: list[int], defer: bool
) -> None:
    data = handshake(deflate) + body
    whole = run([data], defer_failure=defer)
    pieces = run(split(data, cuts), defer_failure=defer)
    runs = [pieces]
    if len(data) < 1500:
        runs.append(run([data[i : i + 1] for i in range(len(data))], defer_failure=defer))
    for other in runs:
        assert other["events"] == whole["events"]
        assert other["out"] == whole["out"]
        for key in ("state", "close_sent", "close_received", "close_code"):
            assert other[key] == whole[key], key
    check_well_formed(whole)


@FUZZ
@given(st.booleans(), st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=5))
def test_garbage_after_the_handshake_never_raises(
    deflate: bool, junk: bytes, cuts: list[int]
) -> None:
    result = run(split(handshake(deflate) + junk, cuts))
    check_well_formed(result)
    assert result["state"] is State.CLOSED


garbage_heads = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.one_of(
            st.binary(max_size=40), st.sampled_from([b"\r\n", b":", b" ", b"GET ", b"HTTP/1.1"])
        ),
        max_size=20,
    ).map(b"".join),
    st.tuples(st.integers(0, 200), st.binary(max_size=20)).map(
        lambda t: handshake(False)[: t[0]] + t[1] + handshake(False)[t[0] :]
    ),
)


@FUZZ
@given(garbage_heads, st.lists(st.integers(0, 400), max_size=5))
def test_garbage_instead_of_the_handshake_never_raises(junk: bytes, cuts: list[int]) -> None:
    """Random request heads: receive_data() never raises, every request the driver
    parses gets a decision from decide() (which never raises either), the same
    whatever the chunking."""
    whole = run(split(junk, []))
    pieces = run(split(junk, cuts))
    assert pieces["events"] == whole["events"]
    assert pieces["out"] == whole["out"]
    check_well_formed(whole)


@FUZZ
@given(st.lists(st.binary(max_size=50), max_size=6), st.sampled_from(list(State)))
def test_receive_in_any_state_never_raises(chunks: list[bytes], stop: State) -> None:
    """Input arriving in each state (REQUEST, DECIDING, OPEN, CLOSING, CLOSED)."""
    conn = ServerConnection(max_size=MAX_SIZE)
    events = conn.receive_data(handshake(True))
    if stop is not State.REQUEST and events:
        if stop is not State.DECIDING:
            conn.carry_out(ROUTER.decide(events[0].request))
            if stop is State.CLOSING:
                conn.close(1000)
            elif stop is State.CLOSED:
                conn.receive_eof()
    for chunk in chunks:
        conn.receive_data(chunk)
        conn.data_to_send()
    conn.receive_eof()
    conn.data_to_send()
    assert conn.state in (State.CLOSED, State.DECIDING)


@pytest.mark.parametrize(
    "before", [b"", b"GET /echo HTTP/1.1\r\n"], ids=["nothing", "partial-head"]
)
def test_empty_input_is_no_input(before: bytes) -> None:
    """receive_data(b"") changes nothing, in any state (EOF is receive_eof())."""
    conn = ServerConnection()
    conn.receive_data(before)
    assert conn.receive_data(b"") == []
    assert conn.data_to_send() == b""
    assert conn.state is State.REQUEST
    rest = handshake(False)[len(before) :]
    assert [type(e) for e in conn.receive_data(rest)] == [RequestReceived]
