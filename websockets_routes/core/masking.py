"""Unmasking of client frames (RFC 6455 section 5.3), fast.

wsproto unmasks in pure Python (``frame_protocol.XorMaskerSimple``: four
``bytes.translate`` passes over strided slices), which dominates the cost of large
messages. This module provides:

- ``apply_mask(data, mask) -> bytes``: XOR ``data`` with the 4-byte ``mask`` repeated.
  The C implementation from the ``websockets`` package (``websockets.speedups``) when
  it is importable, else a pure-Python fallback that XORs the whole payload as one big
  integer (a single C-level loop inside ``int``), several times faster than wsproto's.
- ``Masker``: a drop-in replacement for wsproto's ``XorMaskerSimple`` (``process()``
  keeps the key rotation across partial payloads), plugged into wsproto's frame
  decoder by ``core.connection``.

``SPEEDUPS`` says which implementation is in use. The import of ``websockets`` is
guarded: the core never requires it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply_mask", "py_apply_mask", "Masker", "SPEEDUPS"]


def py_apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with ``mask`` (4 bytes) repeated; pure Python."""
    n = len(data)
    if not n:
        return b""
    # One integer XOR over the whole payload: int.from_bytes/to_bytes and ^ are each a
    # single pass in C, far cheaper than per-byte work in Python.
    key = int.from_bytes((bytes(mask) * ((n >> 2) + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


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
