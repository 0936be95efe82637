"""An indexed matcher: static paths by dict lookup, dynamic ones by a segment trie.

Its answer is always the one a linear, first-registered-wins scan would give: each
trie node knows the smallest registration index below it, so the search prunes every
branch that cannot beat the best match found so far. A path walks down the trie by one
dict lookup per segment while each node has one way on, and searches only below a
node with more (a param beside static text, regexes, tails). Targets matched to a
route with params are remembered, a few at a time, so that a repeated one costs a dict
lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .paths import BAD_ESCAPE, TARGET_CHARS, BadTarget, split_path, split_target
from .templates import Template

__all__ = ["Matcher"]

T = TypeVar("T")
_NEVER = 1 << 62
# How many targets (and paths) of routes with params a Matcher remembers, at most; it
# remembers one new target in ADMIT_EVERY, and none longer than RECENT_LENGTH (which
# keeps what a peer's long targets can hold here under a megabyte or so).
RECENT_TARGETS = 1024
ADMIT_EVERY = 4
RECENT_LENGTH = 256


# What a node leads to, for _search's fast steps (which test the numbers directly).
_STATIC_ONLY, _PARAM_ONLY, _MIXED = 0, 1, 2


class _Node:
    __slots__ = ("static", "param", "patterns", "end", "tails", "lowest", "kind", "fast", "depth")

    def __init__(self, depth: int) -> None:
        self.depth = depth  # the index, in the split path, of the segment read here
        # Most nodes are leaves: they share empty containers (never written to; add()
        # gives a node its own on its first child or tail), which keeps a big table's
        # allocations, and the garbage collector's work while building it, down.
        self.kind = _STATIC_ONLY
        self.static: dict[str, _Node] = _NO_CHILDREN
        # For the walk of Matcher._find(): the next node is fast.get(segment, param). It
        # is static for a static-only node, and _EMPTY_MISSES ({"": None}) for a
        # param-only one, whose param takes any non-empty segment; a mixed node is never
        # read this way.
        self.fast: dict[str, _Node | None] = _NO_CHILDREN  # type: ignore[assignment]
        self.param: _Node | None = None
        # (pattern source, bound fullmatch of the segment regex, child), in first-added order
        self.patterns: list[tuple[str, Callable[[str], Any], _Node]] = _NO_PATTERNS
        self.end = _NEVER  # index of the first route that ends here
        # (index, static prefix, must the tail be non-empty) of tails starting here, by index
        self.tails: list[tuple[int, str, bool]] = _NO_TAILS
        self.lowest = _NEVER  # smallest index anywhere below


_NO_CHILDREN: dict[str, _Node] = {}
_NO_PATTERNS: list[tuple[str, Callable[[str], Any], _Node]] = []
_NO_TAILS: list[tuple[int, str, bool]] = []
_EMPTY_MISSES: dict[str, _Node | None] = {"": None}

# Matcher._plans: (value, first slot index, its name, other slots, extras); see there.
_Plan = tuple[T, int, str, "tuple[tuple[int, str], ...] | None", Any]


def _search(node: _Node, segments: list[str], depth: int, best: int) -> int:
    """The smallest route index below ``node`` matching ``segments[depth:]``, or ``best``.

    It runs for every dynamic lookup, so it loops down the trie and recurses only where
    a segment could go more than one way (static text, a param, regexes), keeping the
    most promising way for the loop. Branches whose ``lowest`` cannot beat ``best``
    are never entered.
    """
    n = len(segments)
    while True:
        kind = node.kind
        if kind < 2:  # _STATIC_ONLY or _PARAM_ONLY: at most one way forward
            if depth == n:
                end = node.end
                return end if end < best else best
            if kind:  # _PARAM_ONLY
                if not segments[depth]:
                    return best
                node = node.param  # type: ignore[assignment]
            else:
                node = node.static.get(segments[depth])  # type: ignore[assignment]
                if node is None:
                    return best
            if node.lowest >= best:
                return best
            depth += 1
            continue
        if node.tails and depth < n:
            # A tail takes the rest of the path, "/".join(segments[depth:]): it has one
            # when depth < n, and its static prefix (never a "/") must start segment depth.
            first = segments[depth]
            for index, prefix, nonempty in node.tails:
                if index >= best:
                    break
                if first.startswith(prefix) and (
                    not nonempty or depth < n - 1 or len(first) > len(prefix)
                ):
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
                best = _search(following, segments, depth, best)
            following = param
        if node.patterns:
            for _, fullmatch, child in node.patterns:
                if child.lowest < best and fullmatch(segment) is not None:
                    if following is not None:
                        best = _search(following, segments, depth, best)
                    following = child
        if following is None or following.lowest >= best:
            return best
        node = following


def _retune(node: _Node) -> None:
    """Set ``kind`` and ``fast`` after a child or tail was added to ``node``."""
    if node.tails or node.patterns or (node.static and node.param is not None):
        node.kind = _MIXED
    elif node.param is not None:
        node.kind = _PARAM_ONLY
        node.fast = _EMPTY_MISSES
    else:
        node.kind = _STATIC_ONLY
        node.fast = node.static  # type: ignore[assignment]


class Matcher(Generic[T]):
    """Maps request paths to the first registered (template, value) that matches."""

    def __init__(self) -> None:
        self._entries: list[tuple[Template, T]] = []
        # What a match needs of each route, by index: its value; the index in the split
        # path and the name of its first param that is a whole segment (0 and "" if it
        # has none); (index, name) of its other such params, and the regex and tail
        # segments to read the remaining params from (None if there are none). Indexes
        # count the empty segment before the path's leading "/": the search splits the
        # path as it stands, without slicing it first.
        self._plans: list[_Plan[T]] = []
        # Static paths: their index, and whether no dynamic route before them matches
        # them too (then a hit needs no search of the trie).
        self._static_by_path: dict[str, tuple[int, bool]] = {}
        self._static_by_segments: dict[tuple[str, ...], int] = {}
        # Unbeaten static paths that are also valid request targets as they stand (no
        # escapes, no query): a request for exactly one of them needs no other check.
        self.exact: dict[str, T] = {}
        # The last few request targets (and paths, for match()) that matched a route
        # with params, and what they matched (a copy of the params, copied again for
        # each hit): the clients of one room or resource ask for the same target, and
        # a hit costs a dict lookup and a copy. Emptied when full, and on add().
        self._recent_targets: dict[str, tuple[T, dict[str, str]]] = {}
        self._recent_paths: dict[str, tuple[T, dict[str, str]]] = {}
        self._wait = 0  # how many new targets to match before remembering one
        self._root = _Node(1)
        # Above the root, for the empty text before a path's leading "/": the walk of
        # _find() starts here, on the path split as it stands.
        self._top = _Node(0)
        self._top.static = self._top.fast = {"": self._root}  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[Template, T]]:
        return iter(self._entries)

    def add(self, template: Template, value: T) -> None:
        self._recent_targets.clear()
        self._recent_paths.clear()
        index = len(self._entries)
        self._entries.append((template, value))
        slots = [(i + 1, name) for i, name in template.slots]
        first, name = slots.pop(0) if slots else (0, "")
        extras = tuple((i + 1, fullmatch, names) for i, fullmatch, names in template.extras)
        self._plans.append((value, first, name, tuple(slots) or None, extras or None))
        if template.is_static:
            texts = tuple(s.text for s in template.segments)
            self._static_by_segments.setdefault(texts, index)
            path = "/" + "/".join(texts)
            if path not in self._static_by_path:
                # Routes added later have higher indexes: only earlier ones can win.
                unbeaten = (
                    self._root.lowest > index
                    or _search(self._root, ["", *texts], 1, index) == index
                )
                self._static_by_path[path] = (index, unbeaten)
                if (
                    unbeaten
                    and TARGET_CHARS.fullmatch(path)
                    and "%" not in path
                    and "?" not in path
                ):
                    self.exact[path] = value
            return
        # Indexes only grow, so a node's lowest and end are set once, by the first route.
        node = self._root
        if node.lowest == _NEVER:
            node.lowest = index
        for seg in template.segments:
            kind = seg.kind
            if kind == "tail":
                if node.tails is _NO_TAILS:
                    node.tails = []
                node.tails.append((index, seg.text, seg.nonempty))
                _retune(node)
                return
            if kind == "static":
                child = node.static.get(seg.text)
                if child is None:
                    if node.static is _NO_CHILDREN:
                        node.static = {}
                    child = node.static[seg.text] = _Node(node.depth + 1)
                    _retune(node)
            elif kind == "param":
                child = node.param
                if child is None:
                    child = node.param = _Node(node.depth + 1)
                    _retune(node)
            else:
                assert seg.regex is not None
                source = seg.regex.pattern
                for known, _, existing in node.patterns:
                    if known == source:
                        child = existing
                        break
                else:
                    child = _Node(node.depth + 1)
                    if node.patterns is _NO_PATTERNS:
                        node.patterns = []
                    node.patterns.append((source, seg.regex.fullmatch, child))
                    _retune(node)
            node = child
            if node.lowest == _NEVER:
                node.lowest = index
        if node.end == _NEVER:
            node.end = index

    def match(self, path: str) -> tuple[T, dict[str, str]] | None:
        """The value and decoded params of the first route matching ``path``.

        ``path`` is the path part of a valid target (no query); None if nothing matches
        or an escape in it does not decode.
        """
        recent = self._recent_paths.get(path)
        if recent is not None:
            return recent[0], recent[1].copy()
        found: tuple[T, dict[str, str]] | None
        if "%" in path:
            decoded = split_path(path)
            if decoded is None:
                return None
            best = self._static_by_segments.get(tuple(decoded), _NEVER)
            segments = ["", *decoded]
            if self._root.lowest < best:
                best = _search(self._root, segments, 1, best)
            if best == _NEVER:
                return None
            found = _found(self._plans[best], segments)
        else:
            found = self._find(path)
            if found is None:
                return None
        if found[1]:
            self._remember(self._recent_paths, path, found)
        return found

    def match_target(self, target: str) -> tuple[T, dict[str, str]] | None:
        """``match()`` for a whole request target: its query string plays no part.

        None if nothing matches or the target cannot be routed (not origin-form, bad
        bytes or escapes).
        """
        value = self.exact.get(target)
        if value is not None:  # a static path, and a valid target by construction
            return value, {}
        recent = self._recent_targets.get(target)
        if recent is not None:  # a valid target, matched a moment ago
            return recent[0], recent[1].copy()
        if type(target) is not str or TARGET_CHARS.fullmatch(target) is None:
            try:
                path, _ = split_target(target)
            except BadTarget:
                return None
            return self.match(path)
        # split_target(), inlined for the usual target.
        path = target.partition("?")[0] if "?" in target else target
        if "%" in path:
            if BAD_ESCAPE.search(path) is not None:
                return None
            return self.match(path)
        # _find(), inlined: this runs for every new target of a route with params.
        static = self._static_by_path.get(path)
        segments = path.split("/")  # segments[0] is the "" before the leading "/"
        if static is None:
            # Walk down while each node has one way on; a node with more (a param
            # beside static text, regexes, tails) leaves the rest to _search().
            node = self._top
            for segment in segments:
                node = node.fast.get(segment, node.param)  # type: ignore[assignment]
                if node is None:
                    return None
                if node.kind == 2:  # _MIXED
                    best = _search(node, segments, node.depth, _NEVER)
                    if best == _NEVER:
                        return None
                    break
            else:
                best = node.end
                if best == _NEVER:
                    return None
        elif static[1]:
            return self._plans[static[0]][0], {}
        else:
            best = static[0]
            if self._root.lowest < best:
                best = _search(self._root, segments, 1, best)
        value, first, name, slots, extras = self._plans[best]
        params = {name: segments[first]} if first else {}
        if slots is not None:
            for i, name in slots:
                params[name] = segments[i]
        if extras is not None:
            _extract(extras, params, segments)
        if params:  # _remember(), inlined
            wait = self._wait
            if wait:
                self._wait = wait - 1
            elif len(target) <= RECENT_LENGTH:
                self._wait = ADMIT_EVERY - 1
                recent_targets = self._recent_targets
                if len(recent_targets) >= RECENT_TARGETS:
                    recent_targets.clear()
                recent_targets[target] = value, params.copy()
        return value, params

    def _remember(self, recent: dict[str, Any], key: str, found: tuple[T, dict[str, str]]) -> None:
        """Keep what ``key`` matched in ``recent`` (emptied when full), one time in
        ADMIT_EVERY: a target asked for again and again gets in soon, while targets
        asked for once cost little."""
        wait = self._wait
        if wait:
            self._wait = wait - 1
            return
        if len(key) > RECENT_LENGTH:
            return
        self._wait = ADMIT_EVERY - 1
        if len(recent) >= RECENT_TARGETS:
            recent.clear()
        recent[key] = found[0], found[1].copy()

    def _find(self, path: str) -> tuple[T, dict[str, str]] | None:
        """match() for a path without escapes, remembering nothing."""
        static = self._static_by_path.get(path)
        segments = path.split("/")  # segments[0] is the "" before the leading "/"
        if static is None:
            # Walk down while each node has one way on; a node with more (a param
            # beside static text, regexes, tails) leaves the rest to _search().
            node = self._top
            for segment in segments:
                node = node.fast.get(segment, node.param)  # type: ignore[assignment]
                if node is None:
                    return None
                if node.kind == 2:  # _MIXED
                    best = _search(node, segments, node.depth, _NEVER)
                    if best == _NEVER:
                        return None
                    break
            else:
                best = node.end
                if best == _NEVER:
                    return None
        elif static[1]:
            return self._plans[static[0]][0], {}
        else:
            best = static[0]
            if self._root.lowest < best:
                best = _search(self._root, segments, 1, best)
        return _found(self._plans[best], segments)


def _found(plan: _Plan[T], segments: list[str]) -> tuple[T, dict[str, str]]:
    """The value and params of the route of ``plan``, for a path that matches it."""
    value, first, name, slots, extras = plan
    params = {name: segments[first]} if first else {}
    if slots is not None:
        for i, name in slots:
            params[name] = segments[i]
    if extras is not None:
        _extract(extras, params, segments)
    return value, params


def _extract(extras: Any, params: dict[str, str], segments: list[str]) -> None:
    """Template.extract_extras(), for segments split with the leading "" kept."""
    for i, fullmatch, names in extras:
        if fullmatch is None:
            ((skip, name),) = names
            params[name] = "/".join(segments[i:])[skip:]
        else:
            found = fullmatch(segments[i])
            for group, name in names:
                params[name] = found.group(group)
