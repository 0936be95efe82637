"""HTTP request values: ``Headers`` (case-insensitive multi-mapping) and ``Request``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .paths import RoutedPath

__all__ = ["Headers", "HeaderPairs", "Request", "TOKEN", "text"]

HeaderPairs = Iterable[tuple[str | bytes, str | bytes]]

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 9110 5.6.2, use with match()
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")


def text(value: str | bytes) -> str:
    """A header name or value as ``str``: ``bytes`` are read as latin-1."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, str):
        return value
    raise TypeError(f"header names and values must be str or bytes, not {type(value).__name__}")


class Headers:
    """Case-insensitive multi-mapping of HTTP header fields, in arrival order.

    ``h[name]`` and ``h.get(name)`` join repeated fields with ``", "`` (RFC 9110 section
    5.3); ``h.get_all(name)`` lists each value. ``bytes`` are read as latin-1.
    """

    # _names and _values repeat _items column by column: decide() checks every name and
    # every value of each request, and joining a list is cheaper than unzipping pairs.
    __slots__ = ("_items", "_index", "_names", "_values")

    def __init__(self, pairs: HeaderPairs | Headers | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        self._names: list[str] = []
        self._values: list[str] = []
        if pairs is None:
            return
        items = pairs.items() if isinstance(pairs, Headers) else pairs
        for name, value in items:
            self.add(name, value)

    @classmethod
    def of_text(cls, items: list[tuple[str, str]]) -> Headers:
        """Headers over ``items``, ``(str, str)`` pairs the caller has checked (a request
        parser): no per-field type checks, ``items`` kept as is."""
        self = object.__new__(cls)
        self._items = items
        names: list[str] = []
        values: list[str] = []
        index: dict[str, list[str]] = {}
        for name, value in items:
            names.append(name)
            values.append(value)
            key = name.lower()
            found = index.get(key)
            if found is None:
                index[key] = [value]
            else:
                found.append(value)
        self._names, self._values, self._index = names, values, index
        return self

    def add(self, name: str | bytes, value: str | bytes) -> None:
        name, value = text(name), text(value)
        self._items.append((name, value))
        self._names.append(name)
        self._values.append(value)
        self._index.setdefault(name.lower(), []).append(value)

    def __getitem__(self, name: str) -> str:
        values = self._index.get(name.lower())
        if values is None:
            raise KeyError(name)
        return values[0] if len(values) == 1 else ", ".join(values)

    def get(self, name: str, default: Any = None) -> Any:
        values = self._index.get(name.lower())
        if values is None:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def get_all(self, name: str) -> list[str]:
        return list(self._index.get(name.lower(), ()))

    @property
    def by_name(self) -> dict[str, list[str]]:
        """Each field's values by lower-case name: ``get_all()`` for many names at the cost
        of dict lookups (the handshake checks). The Headers' own dict: do not change it."""
        return self._index

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def raw_items(self) -> list[tuple[str, str]]:
        """The same as ``items()``: the name ``websockets.datastructures.Headers`` uses,
        so 0.2-era hooks that called it keep working."""
        return list(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self) -> list[str]:
        return [name for name, _ in self._items]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def problem(self) -> str | None:
        """Why these fields are not valid HTTP (a name that is not a token, a forbidden
        character in a value), or None when they are."""
        names = self._names
        if not names:
            return None
        # The usual headers pass two string scans done in C: names of letters, digits and
        # dashes, values of printable ASCII (a space joins them; it is allowed in a value).
        # Anything else (other token characters, tabs, obs-text) gets the exact checks.
        dashed = "-".join(names)
        joined = " ".join(self._values)
        if (
            dashed.isascii()
            and dashed.replace("-", "").isalnum()
            and "" not in names
            and joined.isascii()
            and joined.isprintable()
        ):
            return None
        for name, value in self._items:
            if not TOKEN.match(name):
                return f"header name {name!r} is not a token"
            if not _FIELD_VALUE.match(value):
                return f"header {name!r} has a forbidden character"
        return None


class Request:
    """An opening-handshake request: method, target and headers (str or bytes)."""

    __slots__ = ("method", "target", "headers", "path", "remote_address")

    def __init__(
        self,
        method: str | bytes,
        target: str | bytes,
        headers: HeaderPairs | Headers = (),
        *,
        remote_address: Any = None,
    ) -> None:
        self.method = text(method)
        self.target = text(target)
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.path: RoutedPath | None = None  # set by resolve() once routed
        self.remote_address = remote_address

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r})"
