"""An indexed matcher: static paths by dict lookup, dynamic ones by a segment trie.

Its answer is always the one a linear, first-registered-wins scan would give: each
trie node knows the smallest registration index below it, so the search prunes every
branch that cannot beat the best match found so far. A path walks down the trie by one
dict lookup per segment while each node has one way on, and searches only below a
node with more (a param beside static text, regexes, tails). A node reached through
static text alone, with a single route below it, ends the walk: one regex, compiled
for that route's rest when first needed, checks the rest of the target and reads its
params. Targets matched to a route with params are remembered, a few at a time, so
that a repeated one costs a dict lookup.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .paths import BAD_ESCAPE, TARGET_CHARS, BadTarget, RoutedPath, split_path, split_target
from .templates import Segment, Template

__all__ = ["Matcher"]

T = TypeVar("T")
_NEVER = 1 << 62
# How many targets (and paths) of routes with params a Matcher remembers, at most; it
# remembers one new target in ADMIT_EVERY, and none longer than RECENT_LENGTH (which
# keeps what a peer's long targets can hold here under a megabyte or so).
RECENT_TARGETS = 1024
ADMIT_EVERY = 4
RECENT_LENGTH = 256

# What a node leads to, for the walk and _search's fast steps (which test the numbers
# directly): one static way on, one param, several ways, or a single route (_ALONE).
_STATIC_ONLY, _PARAM_ONLY, _MIXED, _ALONE = 0, 1, 2, 3

# The characters of a path segment in a valid target (RFC 3986 pchar), "%" aside: a path
# with escapes is decoded segment by segment and never reaches a route's own regex.
_PCHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@]"
_CLEAN = re.compile(_PCHAR + "*")  # static text a route's regex can match as it stands
# A query string after a route's path, if any, with the characters TARGET_CHARS allows
# in it (an alternation, which the regex engine tries faster than an optional group).
_QUERY = r"(?:|\?[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*)"
# A tail: the rest of the path, slashes included.
_TAIL = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*"
_TAIL_NONEMPTY = _TAIL[:-1] + "+"


class _Node:
    __slots__ = (
        "static",
        "param",
        "patterns",
        "end",
        "tails",
        "lowest",
        "kind",
        "fast",
        "depth",
        "routes",
        "offset",
        "rest",
    )

    def __init__(self, depth: int, offset: int) -> None:
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
        self.routes = 0  # how many routes go through here, end here or below
        # The length of the path up to here when only static text a route's regex can
        # match leads here (the root: 0), else -1: where the regex of a route alone
        # below this node starts reading the target.
        self.offset = offset
        # For a node with one route below (_ALONE): what reads that route's rest and
        # params (see _compile_rest()), made when the walk first stops here; None until
        # then; _REFUSED when the route has static text such a regex cannot take.
        self.rest: tuple[Any, ...] | None = None


_NO_CHILDREN: dict[str, _Node] = {}
_NO_PATTERNS: list[tuple[str, Callable[[str], Any], _Node]] = []
_NO_TAILS: list[tuple[int, str, bool]] = []
_EMPTY_MISSES: dict[str, _Node | None] = {"": None}
_REFUSED: tuple[Any, ...] = ()  # _Node.rest of a route no regex of _rest_regex() can take

# Matcher._plans: (value, first slot index, its name, other slots, extras, attributes of
# its RoutedPath); see there.
_Plan = tuple[T, int, str, "tuple[tuple[int, str], ...] | None", Any, "dict[str, Any]"]


def _search(node: _Node, segments: list[str], depth: int, best: int) -> int:
    """The smallest route index below ``node`` matching ``segments[depth:]``, or ``best``.

    It runs for every dynamic lookup that the walk cannot finish, so it loops down the
    trie and recurses only where a segment could go more than one way (static text, a
    param, regexes), keeping the most promising way for the loop. Branches whose
    ``lowest`` cannot beat ``best`` are never entered.
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
    """Set ``kind`` and ``fast`` after a route, child or tail was added at ``node``."""
    if node.tails or node.patterns or (node.static and node.param is not None):
        node.kind = _MIXED
    elif node.param is not None:
        node.kind = _PARAM_ONLY
        node.fast = _EMPTY_MISSES
    else:
        node.kind = _STATIC_ONLY
        node.fast = node.static  # type: ignore[assignment]
    if node.routes == 1 and node.offset >= 0 and node.rest is not _REFUSED:
        node.kind = _ALONE


def _rest_regex(segments: tuple[Segment, ...], depth: int) -> tuple[str, Any] | None:
    """The regex source that matches a valid target from ``segments`` (the rest of a
    template, from split-path index ``depth``) on, exactly when its undecoded segments
    match them, except for regex segments; and ``(index, fullmatch, groups)`` of those,
    for the caller to check and read (None if none). A tail's value is the regex's group
    1. None when static text has characters such a regex cannot take as they stand
    ("%", "?", what no valid target has).

    A segment's own regex is not put inside this one, where it could match across a
    "/": this one takes its segment whole, and the segment's regex checks it.
    """
    parts = []
    checks = []
    for index, seg in enumerate(segments, depth):
        kind = seg.kind
        if kind == "static":
            if not _CLEAN.fullmatch(seg.text):
                return None
            parts.append("/" + re.escape(seg.text))
        elif kind == "param":
            parts.append(f"/{_PCHAR}+")
        elif kind == "pattern":
            assert seg.regex is not None
            parts.append(f"/{_PCHAR}*")
            # A whole-segment param is read from the split path with the plain ones.
            groups = () if seg.whole else seg.groups()
            checks.append((index, seg.regex.fullmatch, groups))
        else:  # a tail: the rest of the path, slashes included
            if not _CLEAN.fullmatch(seg.text):
                return None
            tail = _TAIL_NONEMPTY if seg.nonempty else _TAIL
            parts.append("/" + re.escape(seg.text) + "(" + tail + ")")
    return "".join(parts) + _QUERY, tuple(checks) or None


class Matcher(Generic[T]):
    """Maps request paths to the first registered (template, value) that matches."""

    def __init__(self) -> None:
        self._entries: list[tuple[Template, T]] = []
        # What a match needs of each route, by index: its value; the index in the split
        # path and the name of its first param that is a whole segment (0 and "" if it
        # has none); (index, name) of its other such params, and the regex and tail
        # segments to read the remaining params from (None if there are none); the
        # attributes of its RoutedPath besides params. Indexes count the empty segment
        # before the path's leading "/": the search splits the path as it stands,
        # without slicing it first.
        self._plans: list[_Plan[T]] = []
        # Static paths: their index, and whether no dynamic route before them matches
        # them too (then a hit needs no search of the trie).
        self._static_by_path: dict[str, tuple[int, bool]] = {}
        self._static_by_segments: dict[tuple[str, ...], int] = {}
        # Unbeaten static paths that are also valid request targets as they stand (no
        # escapes, no query), with their plan: a request for exactly one of them needs
        # no other check.
        self._exact: dict[str, _Plan[T]] = {}
        self._inexact: dict[str, tuple[int, bool]] = {}  # the other static paths
        # The last few request targets (and paths, for match()) that matched a route
        # with params, with its plan and a copy of the params (copied again for each
        # hit): the clients of one room or resource ask for the same target, and a hit
        # costs a dict lookup and a copy. Emptied when full, and on add().
        self._recent_targets: dict[str, tuple[_Plan[T], dict[str, str]]] = {}
        self._recent_paths: dict[str, tuple[_Plan[T], dict[str, str]]] = {}
        self._wait = 0  # how many new targets to match before remembering one
        # The regexes of routes alone below a node, by source: routes with the same rest
        # (``/rooms/{id}`` under many prefixes) share one.
        self._rests: dict[str, Callable[[str, int], Any]] = {}
        self._root = _Node(1, 0)
        # Above the root, for the empty text before a path's leading "/": the walk of
        # _find() starts here, on the path split as it stands.
        self._top = _Node(0, -1)
        self._top.static = self._top.fast = {"": self._root}  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[Template, T]]:
        return iter(self._entries)

    def add(self, template: Template, value: T, attributes: dict[str, Any] | None = None) -> None:
        """Add a route; ``attributes``: what routed() puts in each RoutedPath of it
        besides ``params`` (by default ``route`` is ``value``, ``name`` None)."""
        self._recent_targets.clear()
        self._recent_paths.clear()
        index = len(self._entries)
        self._entries.append((template, value))
        if attributes is None:
            attributes = {"route": value, "name": None, "template": template.source}
        slots = [(i + 1, name) for i, name in template.slots]
        first, name = slots.pop(0) if slots else (0, "")
        extras = tuple((i + 1, fullmatch, names) for i, fullmatch, names in template.extras)
        plan = (value, first, name, tuple(slots) or None, extras or None, attributes)
        self._plans.append(plan)
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
                    self._exact[path] = plan
                else:
                    self._inexact[path] = self._static_by_path[path]
            return
        # Indexes only grow, so a node's lowest and end are set once, by the first route.
        node = self._root
        _enter(node, index)
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
                    offset = node.offset
                    if offset >= 0 and _CLEAN.fullmatch(seg.text):
                        offset += 1 + len(seg.text)
                    else:
                        offset = -1
                    child = node.static[seg.text] = _Node(node.depth + 1, offset)
                    _retune(node)
            elif kind == "param":
                child = node.param
                if child is None:
                    child = node.param = _Node(node.depth + 1, -1)
                    _retune(node)
            else:
                assert seg.regex is not None
                source = seg.regex.pattern
                for known, _, existing in node.patterns:
                    if known == source:
                        child = existing
                        break
                else:
                    child = _Node(node.depth + 1, -1)
                    if node.patterns is _NO_PATTERNS:
                        node.patterns = []
                    node.patterns.append((source, seg.regex.fullmatch, child))
                    _retune(node)
            node = child
            _enter(node, index)
        if node.end == _NEVER:
            node.end = index

    def routed(self, target: str) -> RoutedPath | None:
        """The RoutedPath of the first route matching a request target (its query plays
        no part), with the attributes given to add(); None as for match_target()."""
        plan = self._exact.get(target)
        if plan is not None:  # a static path, and a valid target by construction
            params: dict[str, str] = {}
        else:
            recent = self._recent_targets.get(target)
            if recent is not None:  # a valid target, matched a moment ago
                plan = recent[0]
                params = recent[1].copy()
            else:
                found = self._find(target, True)
                if found is None:
                    return None
                plan, params = found
        routed = _new_str(RoutedPath, target)
        attributes = plan[5].copy()
        attributes["params"] = params
        routed.__dict__ = attributes
        return routed

    def match_target(self, target: str) -> tuple[T, dict[str, str]] | None:
        """``match()`` for a whole request target: its query string plays no part.

        None if nothing matches or the target cannot be routed (not origin-form, bad
        bytes or escapes).
        """
        plan = self._exact.get(target)
        if plan is not None:  # a static path, and a valid target by construction
            return plan[0], {}
        recent = self._recent_targets.get(target)
        if recent is not None:  # a valid target, matched a moment ago
            return recent[0][0], recent[1].copy()
        found = self._find(target, True)
        return None if found is None else (found[0][0], found[1])

    def match(self, path: str) -> tuple[T, dict[str, str]] | None:
        """The value and decoded params of the first route matching ``path``.

        ``path`` is the path part of a target (no query), taken as it stands: its
        characters are not checked. None if nothing matches or an escape in it does not
        decode.
        """
        recent = self._recent_paths.get(path)
        if recent is not None:
            return recent[0][0], recent[1].copy()
        found = self._find(path, False)
        return None if found is None else (found[0][0], found[1])

    def _find(self, text: str, is_target: bool) -> tuple[_Plan[T], dict[str, str]] | None:
        """The plan and params of the first route matching a request target
        (``is_target``: its characters are checked, its query ignored) or a path (taken
        as it stands); the first route with params is remembered now and then."""
        if is_target:
            if type(text) is not str:
                return self._find_unusual(text)
            path = text.partition("?")[0] if "?" in text else text
            if "%" in path:
                if TARGET_CHARS.fullmatch(text) is None or BAD_ESCAPE.search(path) is not None:
                    return None
                return self._find_decoded(path, self._recent_targets, text)
            if path is text:  # the callers looked it up in _exact already
                static = self._inexact.get(path) if self._inexact else None
            else:
                static = self._static_by_path.get(path)
            recent = self._recent_targets
        else:
            path = text
            if "%" in path or "?" in path:
                return self._find_decoded(path, self._recent_paths, path)
            static = self._static_by_path.get(path)
            recent = self._recent_paths
        segments = path.split("/")  # segments[0] is the "" before the leading "/"
        if static is None:
            # Walk down while each node has one way on. A node with a single route below
            # hands the rest of the target to that route's regex; a node with more ways
            # on (a param beside static text, regexes, tails) leaves it to _search().
            node = self._top
            for segment in segments:
                node = node.fast.get(segment, node.param)  # type: ignore[assignment]
                if node is None:
                    return None
                if node.kind > 1:  # _MIXED or _ALONE
                    if node.kind == 3:  # _ALONE
                        rest: Any = node.rest or self._compile_rest(node)
                        # The regex also checks the target's characters, query included;
                        # a path with characters it refuses takes the search.
                        found = rest[0](text, rest[1]) if rest else None
                        if found is not None:
                            # The params, as _params() reads them, with what the regex
                            # matched: the regex segments' groups and the tail.
                            _, _, plan, first, name, slots, checks, tail = rest
                            params = {name: segments[first]} if first else {}
                            if slots is not None:
                                for i, name in slots:
                                    params[name] = segments[i]
                            if checks is not None:
                                for i, fullmatch, groups in checks:
                                    found_segment = fullmatch(segments[i])
                                    if found_segment is None:
                                        return None
                                    for group, name in groups:
                                        params[name] = found_segment.group(group)
                            if tail is not None:
                                params[tail] = found.group(1)
                            break
                    best = _search(node, segments, node.depth, _NEVER)
                    if best == _NEVER:
                        return None
                    plan = None
                    break
            else:
                best = node.end
                if best == _NEVER:
                    return None
                plan = None
        else:
            best = static[0]
            if not static[1] and self._root.lowest < best:
                best = _search(self._root, segments, 1, best)
            plan = None
        if plan is None:
            if is_target and TARGET_CHARS.fullmatch(text) is None:
                return None
            plan = self._plans[best]
            _, first, name, slots, extras, _ = plan  # _params(), inlined: as _remember()
            params = {name: segments[first]} if first else {}
            if slots is not None:
                for i, name in slots:
                    params[name] = segments[i]
            if extras is not None:
                _extract(extras, params, segments)
        if not params:  # a static route
            return plan, params
        wait = self._wait  # _remember(), inlined: this runs for every new target
        if wait:
            self._wait = wait - 1
        elif len(text) <= RECENT_LENGTH:
            self._wait = ADMIT_EVERY - 1
            if len(recent) >= RECENT_TARGETS:
                recent.clear()
            recent[text] = plan, params.copy()
        return plan, params

    def _find_decoded(
        self, path: str, recent: dict[str, Any], key: str
    ) -> tuple[_Plan[T], dict[str, str]] | None:
        """_find() for a path with escapes (or a "?"): its segments are decoded first."""
        decoded = split_path(path)
        if decoded is None:
            return None
        best = self._static_by_segments.get(tuple(decoded), _NEVER)
        segments = ["", *decoded]
        if self._root.lowest < best:
            best = _search(self._root, segments, 1, best)
        if best == _NEVER:
            return None
        plan = self._plans[best]
        params = _params(plan, segments)
        if params:
            self._remember(recent, key, plan, params)
        return plan, params

    def _find_unusual(self, target: Any) -> tuple[_Plan[T], dict[str, str]] | None:
        """_find() for a target that is bytes or a str subclass."""
        try:
            path, _ = split_target(target)
        except BadTarget:
            return None
        return self._find(path, False)

    def _remember(
        self, recent: dict[str, Any], key: str, plan: _Plan[T], params: dict[str, str]
    ) -> None:
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
        recent[key] = plan, params.copy()

    def _compile_rest(self, node: _Node) -> tuple[Any, ...] | None:
        """``node.rest`` of a node with one route below it: (bound fullmatch of the
        regex of the route's rest, where it starts reading the target, the route's plan,
        its first slot, name and other slots, its regex segments (index, fullmatch,
        groups) or None, the name of its tail or None). None (and the node no longer
        _ALONE) when that route's rest cannot be one regex."""
        index = node.lowest
        template = self._entries[index][0]
        built = _rest_regex(template.segments[node.depth - 1 :], node.depth)
        if built is None:
            node.rest = _REFUSED
            _retune(node)
            return None
        source, checks = built
        fullmatch = self._rests.get(source)
        if fullmatch is None:
            fullmatch = self._rests[source] = re.compile(source).fullmatch
        plan = self._plans[index]
        last = template.segments[-1]
        tail = last.names[0] if last.kind == "tail" else None
        rest = node.rest = (fullmatch, node.offset, plan, plan[1], plan[2], plan[3], checks, tail)
        return rest


def _enter(node: _Node, index: int) -> None:
    """Count route ``index`` at ``node``, on its way down from the root."""
    if node.lowest == _NEVER:
        node.lowest = index
    node.routes += 1
    if node.routes <= 2:  # now alone, or alone no more
        if node.rest:
            node.rest = None
        _retune(node)


def _params(plan: _Plan[T], segments: list[str]) -> dict[str, str]:
    """The params of the route of ``plan``, for a path that matches it."""
    _, first, name, slots, extras, _ = plan
    params = {name: segments[first]} if first else {}
    if slots is not None:
        for i, name in slots:
            params[name] = segments[i]
    if extras is not None:
        _extract(extras, params, segments)
    return params


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


_new_str = str.__new__
