"""core.masking: the C and pure-Python unmasking agree, and Masker keeps the key across
the pieces of one frame."""

from __future__ import annotations

import os

import pytest

from websockets_routes.core.masking import Masker, apply_mask, py_apply_mask


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 4096, 65537])
def test_maskers_agree(size):
    data, key = os.urandom(size), os.urandom(4)
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert apply_mask(data, key) == expected
    assert py_apply_mask(data, key) == expected
    # Pieces of one frame continue the key where the previous piece stopped.
    masker = Masker(bytearray(key))
    pieces = [data[i : i + 7] for i in range(0, size, 7)]
    assert b"".join(masker.process(p) for p in pieces) == expected
