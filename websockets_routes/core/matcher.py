"""An indexed matcher: static paths by dict lookup, dynamic ones by a segment trie.

Its answer is always the one a linear, first-registered-wins scan would give: each
trie node knows the smallest registration index below it, so the search prunes every
branch that cannot beat the best match found so far.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .paths import decode_rest, split_path
from .templates import Template

__all__ = ["Matcher"]

T = TypeVar("T")
_NEVER = 1 << 62


_STATIC_ONLY, _PARAM_ONLY, _MIXED = 0, 1, 2  # what a node leads to, for _search's fast steps


class _Node:
    __slots__ = ("static", "param", "patterns", "end", "tails", "lowest", "kind")

    def __init__(self) -> None:
        self.kind = _STATIC_ONLY
        self.static: dict[str, _Node] = {}
        self.param: _Node | None = None
        # (pattern source, bound fullmatch of the segment regex, child), in first-added order
        self.patterns: list[tuple[str, Callable[[str], Any], _Node]] = []
        self.end = _NEVER  # index of the first route that ends here
        # (index, static prefix, must the tail be non-empty) of tails starting here, by index
        self.tails: list[tuple[int, str, bool]] = []
        self.lowest = _NEVER  # smallest index anywhere below


def _search(node: _Node, segments: list[str], depth: int, path: str, best: int) -> int:
    """The smallest route index below ``node`` matching ``segments[depth:]``, or ``best``.

    It runs for every dynamic lookup, so it loops down the trie and recurses only where
    a segment could go more than one way (static text, a param, regexes), keeping the
    most promising way for the loop. Branches whose ``lowest`` cannot beat ``best``
    are never entered.
    """
    n = len(segments)
    while True:
        kind = node.kind
        if kind == _STATIC_ONLY:
            if depth == n:
                end = node.end
                return end if end < best else best
            node = node.static.get(segments[depth])  # type: ignore[assignment]
            if node is None or node.lowest >= best:
                return best
            depth += 1
            continue
        if kind == _PARAM_ONLY:
            if depth == n:
                end = node.end
                return end if end < best else best
            if not segments[depth]:
                return best
            node = node.param  # type: ignore[assignment]
            if node.lowest >= best:
                return best
            depth += 1
            continue
        if node.tails:
            rest = None
            for index, prefix, nonempty in node.tails:
                if index >= best:
                    break
                if rest is None:
                    rest = decode_rest(path, depth)
                    if rest is None:
                        break
                if rest.startswith(prefix) and (len(rest) > len(prefix) or not nonempty):
                    best = index
                    break
        if depth == n:
            end = node.end
            return end if end < best else best
        segment = segments[depth]
        depth += 1
        following = node.static.get(segment)
        if following is not None and following.lowest >= best:
            following = None
        param = node.param
        if param is not None and param.lowest < best and segment:
            if following is not None:
                best = _search(following, segments, depth, path, best)
            following = param
        if node.patterns:
            for _, fullmatch, child in node.patterns:
                if child.lowest < best and fullmatch(segment) is not None:
                    if following is not None:
                        best = _search(following, segments, depth, path, best)
                    following = child
        if following is None or following.lowest >= best:
            return best
        node = following


def _kind(node: _Node) -> int:
    if node.tails or node.patterns or (node.static and node.param is not None):
        return _MIXED
    return _PARAM_ONLY if node.param is not None else _STATIC_ONLY


class Matcher(Generic[T]):
    """Maps request paths to the first registered (template, value) that matches."""

    def __init__(self) -> None:
        self._entries: list[tuple[Template, T]] = []
        # Static paths: their index, and whether no dynamic route before them matches
        # them too (then a hit needs no search of the trie).
        self._static_by_path: dict[str, tuple[int, bool]] = {}
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
            path = "/" + "/".join(texts)
            if path not in self._static_by_path:
                # Routes added later have higher indexes: only earlier ones can win.
                unbeaten = self._root.lowest > index or (
                    "%" not in path and _search(self._root, list(texts), 0, path, index) == index
                )
                self._static_by_path[path] = (index, unbeaten)
            return
        node = self._root
        node.lowest = min(node.lowest, index)
        touched = [node]
        for seg in template.segments:
            if seg.kind == "tail":
                node.tails.append((index, seg.text, seg.nonempty))
                break
            if seg.kind == "static":
                node = node.static.setdefault(seg.text, _Node())
            elif seg.kind == "param":
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                assert seg.regex is not None
                source = seg.regex.pattern
                for known, _, child in node.patterns:
                    if known == source:
                        node = child
                        break
                else:
                    child = _Node()
                    node.patterns.append((source, seg.regex.fullmatch, child))
                    node = child
            node.lowest = min(node.lowest, index)
            touched.append(node)
        else:
            node.end = min(node.end, index)
        for node in touched:
            node.kind = _kind(node)

    def match(self, path: str) -> tuple[T, dict[str, str]] | None:
        """The value and decoded params of the first route matching ``path``.

        ``path`` is the path part of a valid target (no query); None if nothing matches
        or an escape in it does not decode.
        """
        if "%" not in path:
            static = self._static_by_path.get(path)
            if static is None:
                best = _NEVER
            elif static[1]:
                return self._entries[static[0]][1], {}
            else:
                best = static[0]
            segments = path[1:].split("/")
        else:
            decoded = split_path(path)
            if decoded is None:
                return None
            segments = decoded
            best = self._static_by_segments.get(tuple(segments), _NEVER)
        if self._root.lowest < best:
            best = _search(self._root, segments, 0, path, best)
        if best == _NEVER:
            return None
        template, value = self._entries[best]
        params = {}
        for i, name in template.slots:
            params[name] = segments[i]
        if template.extras:
            template.extract_extras(params, segments, path)
        return value, params
