"""An indexed matcher: static paths by dict lookup, dynamic ones by a segment trie.

Its answer is always the one a linear, first-registered-wins scan would give: each
trie node knows the smallest registration index below it, so the search prunes every
branch that cannot beat the best match found so far.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from .paths import decode_rest, split_path
from .templates import Segment, Template, match_segments

__all__ = ["Matcher"]

T = TypeVar("T")
_NEVER = 1 << 62


class _Node:
    __slots__ = ("static", "param", "patterns", "end", "tails", "lowest")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.patterns: dict[str, tuple[Segment, _Node]] = {}
        self.end = _NEVER  # index of the first route that ends here
        self.tails: list[tuple[int, Segment]] = []  # tails starting here, by index
        self.lowest = _NEVER  # smallest index anywhere below


class Matcher(Generic[T]):
    """Maps request paths to the first registered (template, value) that matches."""

    def __init__(self) -> None:
        self._entries: list[tuple[Template, T]] = []
        self._static_by_path: dict[str, int] = {}
        self._static_by_segments: dict[tuple[str, ...], int] = {}
        self._root = _Node()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[Template, T]]:
        return iter(self._entries)

    def add(self, template: Template, value: T) -> None:
        index = len(self._entries)
        self._entries.append((template, value))
        if template.is_static:
            texts = tuple(s.text for s in template.segments)
            self._static_by_segments.setdefault(texts, index)
            self._static_by_path.setdefault("/" + "/".join(texts), index)
            return
        node = self._root
        node.lowest = min(node.lowest, index)
        for seg in template.segments:
            if seg.kind == "tail":
                node.tails.append((index, seg))
                return
            if seg.kind == "static":
                node = node.static.setdefault(seg.text, _Node())
            elif seg.kind == "param":
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                assert seg.regex is not None
                node = node.patterns.setdefault(seg.regex.pattern, (seg, _Node()))[1]
            node.lowest = min(node.lowest, index)
        node.end = min(node.end, index)

    def match(self, path: str) -> tuple[T, dict[str, str]] | None:
        """The value and decoded params of the first route matching ``path``.

        ``path`` is the path part of a valid target (no query); None if nothing matches
        or an escape in it does not decode.
        """
        if "%" not in path:
            best = self._static_by_path.get(path, _NEVER)
            segments = path[1:].split("/")
        else:
            decoded = split_path(path)
            if decoded is None:
                return None
            segments = decoded
            best = self._static_by_segments.get(tuple(segments), _NEVER)
        if self._root.lowest < best:
            best = self._search(self._root, segments, 0, path, best)
        if best == _NEVER:
            return None
        template, value = self._entries[best]
        if template.is_static:
            return value, {}
        params = match_segments(template.segments, segments, path)
        assert params is not None
        return value, params

    def _search(self, node: _Node, segments: list[str], depth: int, path: str, best: int) -> int:
        for index, seg in node.tails:
            if index >= best:
                break
            rest = decode_rest(path, depth)
            if rest is not None and seg.match_tail(rest) is not None:
                best = index
                break
        if depth == len(segments):
            return min(node.end, best)
        segment = segments[depth]
        child = node.static.get(segment)
        if child is not None and child.lowest < best:
            best = self._search(child, segments, depth + 1, path, best)
        child = node.param
        if child is not None and child.lowest < best and segment:
            best = self._search(child, segments, depth + 1, path, best)
        for seg, child in node.patterns.values():
            if child.lowest < best and seg.match(segment) is not None:
                best = self._search(child, segments, depth + 1, path, best)
        return best
