"""core.deflate: permessage-deflate negotiation (RFC 7692), the server's answer to an offer.
Compressed messages on a connection are in test_connection.py."""

from __future__ import annotations

import pytest

from websockets_routes.core.deflate import negotiate_deflate


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12",
        ),
        (
            'permessage-deflate; server_max_window_bits="10"; client_max_window_bits=9',
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
        ),
        # first acceptable offer wins; a bad one is skipped
        (
            "permessage-deflate; foo=1, permessage-deflate; server_max_window_bits=11",
            "permessage-deflate; server_max_window_bits=11",
        ),
        ("permessage-deflate; server_max_window_bits=8", None),  # zlib cannot
        ("permessage-deflate; server_max_window_bits", None),  # needs a value
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits=010", None),
        ("permessage-deflate; client_no_context_takeover=1", None),
        ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
        ("x-webkit-deflate-frame", None),
    ],
)
def test_deflate_negotiation(offer, response):
    result = negotiate_deflate([offer], 2**20)
    assert (result and result[0]) == response
