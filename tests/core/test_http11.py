"""core.http11: the fast request-head parser takes only what h11 takes, and reads it the
same way; h11 parses the rest. Requests arriving in pieces are in test_connection.py."""

from __future__ import annotations

import h11
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.transports.helpers import handshake
from websockets_routes.core.http11 import parse_plain_head

_BASE_HEAD = handshake(extra=[("Origin", "http://a.example"), ("X-Value", " a  b ")])


_edits = st.tuples(
    st.integers(min_value=0),
    st.sampled_from([b" ", b"\t", b"\r", b"\n", b":", b"\x00", b"\x7f", b"\x80", b"\xff", b"a"]),
    st.sampled_from(["insert", "replace", "delete"]),
)


@settings(max_examples=500, deadline=None)
@given(edits=st.lists(_edits, max_size=3))
def test_fast_request_parser_agrees_with_h11(edits):
    data = bytearray(_BASE_HEAD)
    for pos, byte, op in edits:
        pos %= len(data)
        if op == "insert":
            data[pos:pos] = byte
        elif op == "replace":
            data[pos : pos + 1] = byte
        else:
            del data[pos]
    data = bytes(data)
    fast = parse_plain_head(data)
    event("fast" if fast is not None else "h11")
    if fast is None:
        return  # h11 decides, as before
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    parsed = conn.next_event()  # must not raise: the fast parser only takes what h11 takes
    assert type(parsed) is h11.Request
    assert fast[:3] == (
        parsed.method.decode(),
        parsed.target.decode("latin-1"),
        [(n.decode("latin-1"), v.decode("latin-1")) for n, v in parsed.headers.raw_items()],
    )
    assert fast[3] == len(data) - len(conn.trailing_data[0])
