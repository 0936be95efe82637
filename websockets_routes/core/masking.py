"""Unmasking of client frames (RFC 6455 section 5.3), fast.

wsproto unmasks in pure Python (``frame_protocol.XorMaskerSimple``: four
``bytes.translate`` passes over strided slices), which dominates the cost of large
messages. This module provides:

- ``apply_mask(data, mask) -> bytes``: XOR ``data`` with the 4-byte ``mask`` repeated.
  The C implementation from the ``websockets`` package (``websockets.speedups``) when
  it is importable, else a pure-Python fallback: one big-integer XOR for payloads up
  to 4 KiB (several times faster than wsproto's masker there), wsproto's four strided
  ``translate`` passes above (as fast as anything pure Python gets). Numbers:
  ``benchmarks/driver.py``.
- ``Masker``: a drop-in replacement for wsproto's ``XorMaskerSimple`` (``process()``
  keeps the key rotation across partial payloads), plugged into wsproto's frame
  decoder by ``core.frames``.

``SPEEDUPS`` says which implementation is in use. The ``websockets`` package itself is
never imported (see ``_load_speedups``): the core never requires it, nor anything
that package brings in.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from typing import Any

__all__ = ["apply_mask", "py_apply_mask", "Masker", "SPEEDUPS"]


_INT_XOR_MAX = 4096


def _xor_tables() -> list[bytes]:
    """``tables[k][b] == b ^ k``: 256 ``bytes.translate`` tables, one per key byte."""
    identity = int.from_bytes(bytes(range(256)), "big")
    return [
        (identity ^ int.from_bytes(bytes((k,)) * 256, "big")).to_bytes(256, "big")
        for k in range(256)
    ]


_TRANSLATIONS = _xor_tables()  # 64 KiB, built in a fraction of a millisecond


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
        out[i::4] = out[i::4].translate(_TRANSLATIONS[mask[i]])
    return bytes(out)


def _load_speedups() -> Any:
    """``apply_mask`` from websockets' C extension, or None.

    The extension file is loaded on its own, without importing the ``websockets``
    package: its ``__init__`` brings in modules the sans-IO core must not (socket,
    selectors, via subprocess and importlib.metadata). Any failure means no speedup.
    """
    try:
        spec = importlib.util.find_spec("websockets")  # finds, does not import
        locations = (spec and spec.submodule_search_locations) or ()
        for location in locations:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(location, "speedups" + suffix)
                if not os.path.isfile(path):
                    continue
                # The init function is found from the last part of the name.
                name = "websockets_routes.core.speedups"
                loader = importlib.machinery.ExtensionFileLoader(name, path)
                module_spec = importlib.util.spec_from_file_location(name, path, loader=loader)
                if module_spec is None:
                    continue
                module = importlib.util.module_from_spec(module_spec)
                loader.exec_module(module)
                return module.apply_mask
    except Exception:  # pragma: no cover - depends on the environment
        return None
    return None  # pragma: no cover - depends on the environment


_c_apply_mask = _load_speedups()
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
