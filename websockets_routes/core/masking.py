"""Unmasking of client frames (RFC 6455 section 5.3), fast.

wsproto unmasks in pure Python (``frame_protocol.XorMaskerSimple``: four
``bytes.translate`` passes over strided slices), which dominates the cost of large
messages. This module provides:

- ``apply_mask(data, mask) -> bytes``: XOR ``data`` with the 4-byte ``mask`` repeated.
  The C implementation from the ``websockets`` package (``websockets.speedups``) when
  it is importable, else a pure-Python fallback: one big-integer XOR for payloads up
  to 4 KiB (several times faster than wsproto's masker there), wsproto's four strided
  ``translate`` passes above (as fast as anything pure Python gets). Numbers:
  ``tests/transports/bench_driver.py``.
- ``Masker``: a drop-in replacement for wsproto's ``XorMaskerSimple`` (``process()``
  keeps the key rotation across partial payloads), plugged into wsproto's frame
  decoder by ``core.connection``.

``SPEEDUPS`` says which implementation is in use. The import of ``websockets`` is
guarded: the core never requires it.
"""

from __future__ import annotations

from typing import Any

from wsproto.frame_protocol import _XOR_TABLE  # 256 tables of 256 bytes, shared

__all__ = ["apply_mask", "py_apply_mask", "Masker", "SPEEDUPS"]


_INT_XOR_MAX = 4096


def py_apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with ``mask`` (4 bytes) repeated; pure Python."""
    n = len(data)
    if not n:
        return b""
    if n <= _INT_XOR_MAX:
        # One integer XOR over the whole payload: from_bytes, ^ and to_bytes each run
        # as one loop in C (little-endian is their faster direction). Cheapest for
        # small payloads, where wsproto's four slicing passes cost more.
        key = int.from_bytes((bytes(mask) * ((n >> 2) + 1))[:n], "little")
        return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")
    # Large payloads: integer conversion stops paying off (cache misses on huge ints);
    # XOR every fourth byte through a translation table, as wsproto does.
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR_TABLE[mask[i]])
    return bytes(out)


_c_apply_mask: Any
try:  # the C speedup shipped with the optional ``websockets`` dependency
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # pragma: no cover - depends on the environment
    _c_apply_mask = None

if _c_apply_mask is not None:
    apply_mask = _c_apply_mask
    SPEEDUPS = True
else:  # pragma: no cover - depends on the environment
    apply_mask = py_apply_mask
    SPEEDUPS = False


class Masker:
    """Unmasks the successive pieces of one frame's payload (wsproto's masker API)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes | bytearray) -> None:
        self._key = bytes(key)

    def process(self, data: bytes | bytearray) -> bytes:
        if not data:
            return b""
        out = apply_mask(data, self._key)
        shift = len(data) & 3
        if shift:
            # The next piece of the same frame continues where this one stopped.
            self._key = self._key[shift:] + self._key[:shift]
        return out
