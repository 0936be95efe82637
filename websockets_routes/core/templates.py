"""Routes-syntax URL templates compiled to per-segment matchers, and URL building.

A template such as ``/room/{room}/file-{id:\\d{2}}.json/*rest`` is split on ``/``
into segments. Each segment is one of:

- static text, compared with the percent-decoded request segment;
- a single ``{name}`` parameter, which takes any non-empty segment;
- a pattern: ``{name:regex}`` and/or text mixed with parameters, one compiled regex
  matched against the whole decoded segment;
- a tail (``*name`` or ``{name:.*}``, which may be empty, or ``{name:.+}``), optionally
  after static text, which must come last and takes the rest of the path, slashes included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from routes.route import Route as _RoutesRoute  # type: ignore[import-untyped]

from .paths import decode_rest, split_path

__all__ = ["Segment", "Template", "compile_template", "encode_param"]

SegmentKind = Literal["static", "param", "pattern", "tail"]

_TAIL_PATTERNS = {".*": False, ".+": True}  # regex -> must the tail be non-empty
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_COLON_NAME_END = "/,;.#-"  # Routes' done_chars, plus the "-" it also ends at
_SPECIAL = re.compile(r"[{}:*\\]")  # what makes a template more than plain text
# Segments that are all plain text or exactly one {name}: see _compile_simple().
_SIMPLE = re.compile(r"(?:/(?:[^/{}:*\\]*|\{[A-Za-z_][A-Za-z0-9_]*\}))+")
_ORDINARY = re.compile(r"[^{}:\\]+")  # text _extract_braces copies as it is
_ROUTES_SYNTAX = re.compile(r"[:*\\]")  # what is left for Routes once braces are cut out
_PLACEHOLDER = re.compile(r"\{(_b\d+)\}")
# Starlette's and FastAPI's converters: in Routes syntax {id:int} is the regex "int",
# which would match only the text "int". What to write instead, and how to convert.
_CONVERTERS = {
    "int": ("{%s:\\d+}", 'int(path.params["%s"])'),
    "float": ("{%s:-?\\d+(?:\\.\\d+)?}", 'float(path.params["%s"])'),
    "str": ("{%s}", None),
    "uuid": ("{%s:[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}}", 'uuid.UUID(path.params["%s"])'),
    "path": ("{%s:.*}", None),
}


@dataclass(frozen=True, slots=True)
class Segment:
    """One ``/``-separated piece of a compiled template."""

    kind: SegmentKind
    text: str = ""  # static text, or the static prefix of a tail
    names: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None  # pattern segments: fullmatch on the decoded segment
    nonempty: bool = True  # tail segments: whether the tail needs at least one character
    # Pattern segments: the one param is the whole segment (``{id:\d+}``), so a matching
    # segment is the param's value as it stands.
    whole: bool = False

    def match(self, segment: str) -> dict[str, str] | None:
        """Params captured from one decoded request segment, or None."""
        if self.kind == "static":
            return {} if segment == self.text else None
        if self.kind == "param":
            return {self.names[0]: segment} if segment else None
        assert self.regex is not None
        found = self.regex.fullmatch(segment)
        if found is None:
            return None
        return {name: found.group(f"_p{i}") for i, name in enumerate(self.names)}

    def groups(self) -> tuple[tuple[int, str], ...]:
        """(group number in ``regex``, name) of each param of a pattern segment."""
        assert self.regex is not None
        index = self.regex.groupindex
        return tuple((index[f"_p{k}"], name) for k, name in enumerate(self.names))

    def match_tail(self, rest: str) -> dict[str, str] | None:
        """Params captured from the decoded rest of a path, for a tail segment."""
        if not rest.startswith(self.text):
            return None
        value = rest[len(self.text) :]
        if self.nonempty and not value:
            return None
        return {self.names[0]: value}


@dataclass(frozen=True, slots=True)
class _Piece:
    """A template piece between slashes, before it is compiled into a Segment."""

    text: str = ""
    name: str | None = None
    regex: str | None = None  # None: default one-segment parameter
    tail: bool = False


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template: its source text, its segments and its parameter names.

    ``is_static``, ``has_tail``, ``slots`` and ``extras`` are worked out once here,
    because the matcher reads them on every request to take the params of a path it
    already knows matches: ``slots`` lists ``(segment index, name)`` of each plain
    ``{name}``, read straight from the split path; ``extras`` lists the regex and tail
    segments, with their index, that ``extract_extras`` reads.
    """

    source: str
    segments: tuple[Segment, ...]
    names: tuple[str, ...]
    # What build() puts together; None when every segment is static text or a plain
    # {name}, as build() can then read the segments themselves.
    _pieces: tuple[tuple[_Piece, ...], ...] | None
    is_static: bool = field(init=False, compare=False)
    has_tail: bool = field(init=False, compare=False)
    slots: tuple[tuple[int, str], ...] = field(init=False, compare=False)
    # (segment index, regex fullmatch, ((group number, name), ...)) for a regex segment;
    # (segment index, None, ((length of the static prefix, name),)) for a tail.
    extras: tuple[tuple[int, Any, tuple[tuple[int, str], ...]], ...] = field(
        init=False, compare=False
    )

    def __post_init__(self) -> None:
        slots: list[tuple[int, str]] = []
        extras: list[tuple[int, Any, tuple[tuple[int, str], ...]]] = []
        for i, seg in enumerate(self.segments):
            kind = seg.kind
            if kind == "static":
                continue
            if kind == "param" or seg.whole:
                slots.append((i, seg.names[0]))
            elif kind == "tail":
                extras.append((i, None, ((len(seg.text), seg.names[0]),)))
            else:
                assert seg.regex is not None
                extras.append((i, seg.regex.fullmatch, seg.groups()))
        set_ = object.__setattr__
        set_(self, "is_static", not slots and not extras)
        set_(self, "has_tail", bool(extras) and extras[-1][1] is None)
        set_(self, "slots", tuple(slots))
        set_(self, "extras", tuple(extras))

    def extract_extras(self, params: dict[str, str], segments: list[str]) -> None:
        """Add the params of the regex and tail segments of a path known to match.

        ``segments`` are the decoded segments of the path; a tail's value is the rest
        of them joined with "/" (the same text as decoding the rest of the raw path,
        since every escape decodes within its own segment).
        """
        for i, fullmatch, names in self.extras:
            if fullmatch is None:
                ((skip, name),) = names
                params[name] = "/".join(segments[i:])[skip:]
            else:
                found = fullmatch(segments[i])
                assert found is not None
                for group, name in names:
                    params[name] = found.group(group)

    def build(self, params: dict[str, str]) -> str:
        """The path for these params, each value percent-encoded (``/`` included)."""
        missing = [n for n in self.names if n not in params]
        if missing:
            raise KeyError(f"template {self.source!r} needs param(s) {', '.join(missing)}")

        def value(piece: _Piece) -> str:
            text = str(params[piece.name])  # type: ignore[index]
            if piece.tail:
                return "/".join(encode_param(v) for v in text.split("/"))
            return encode_param(text)

        path = self._render(value)
        found = _match_built(self, path)
        if found is None or found != {n: str(params[n]) for n in self.names}:
            raise ValueError(
                f"params {params!r} do not fit template {self.source!r}"
                " (a value does not match its pattern)"
            )
        return path

    def address(self) -> str:
        """The path with ``{name}`` in place of each param, whatever its pattern: the
        form of an AsyncAPI channel address (and of an OpenAPI path)."""
        return self._render(lambda piece: "{" + str(piece.name) + "}")

    def patterns(self) -> dict[str, str | None]:
        """Each param's regex (``.*`` for a tail); None for a plain one-segment param."""
        found: dict[str, str | None] = dict.fromkeys(self.names)
        for pieces in self._pieces or ():
            for piece in pieces:
                if piece.name is not None:
                    found[piece.name] = ".*" if piece.tail else piece.regex
        return found

    def _render(self, value: Callable[[_Piece], str]) -> str:
        out = []
        all_pieces = self._pieces
        if all_pieces is None:
            all_pieces = tuple(
                (_Piece(name=s.names[0]),) if s.kind == "param" else (_Piece(text=s.text),)
                for s in self.segments
            )
        for pieces in all_pieces:
            parts = []
            for piece in pieces:
                if piece.name is None:
                    parts.append(quote(piece.text, safe="/:@!$&'()*+,;=-._~"))
                else:
                    parts.append(value(piece))
            out.append("".join(parts))
        return "/" + "/".join(out)


def encode_param(value: str) -> str:
    """Percent-encode one parameter value so that it stays one decoded segment."""
    return quote(value, safe="")


def _match_built(template: Template, path: str) -> dict[str, str] | None:
    segments = split_path(path)
    if segments is None:
        return None
    return match_segments(template.segments, segments, path)


def match_segments(
    compiled: tuple[Segment, ...], segments: list[str], raw_path: str
) -> dict[str, str] | None:
    """Match decoded segments against compiled ones (the linear reference)."""
    params: dict[str, str] = {}
    for i, seg in enumerate(compiled):
        if seg.kind == "tail":
            rest = decode_rest(raw_path, i)
            if rest is None:
                return None
            found = seg.match_tail(rest)
        else:
            if i >= len(segments):
                return None
            found = seg.match(segments[i])
        if found is None:
            return None
        params.update(found)
    if not compiled or compiled[-1].kind != "tail":
        if len(segments) != len(compiled):
            return None
    return params


def compile_template(source: str, requirements: dict[str, str] | None = None) -> Template:
    """Compile a Routes-syntax template; a bad one raises ValueError naming it."""
    if not isinstance(source, str):
        raise TypeError(f"route template must be a str, not {type(source).__name__}: {source!r}")
    if not source.startswith("/"):
        raise ValueError(f"route template {source!r} must start with '/'")
    if not requirements and (not _SPECIAL.search(source) or _SIMPLE.fullmatch(source)):
        # Each segment plain text or exactly one {name}: nothing for Routes to parse,
        # and the commonest templates, so they are compiled here in one pass (this
        # keeps big tables quick to build). A repeated name takes the long way, which
        # explains the error.
        simple = _compile_simple(source)
        if simple is not None:
            return simple
    try:
        pieces = _parse(source, requirements or {})
        segments = tuple(_compile_segment(p, i == len(pieces) - 1) for i, p in enumerate(pieces))
    except ValueError as exc:
        raise ValueError(f"bad route template {source!r}: {exc}") from None
    names = tuple(p.name for ps in pieces for p in ps if p.name is not None)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"bad route template {source!r}: param {duplicates[0]!r} appears twice")
    unused = set(requirements or {}) - set(names)
    if unused:
        raise ValueError(
            f"bad route template {source!r}: requirements name unknown param(s) "
            f"{', '.join(sorted(unused))}"
        )
    return Template(source, segments, names, tuple(pieces))


def _compile_simple(source: str) -> Template | None:
    segments, names = [], []
    for part in source[1:].split("/"):
        # Segments are frozen values: equal ones are shared, as making one costs more
        # than looking it up (the cache grows with the distinct segments of the app).
        segment = _SIMPLE_SEGMENTS.get(part)
        if segment is None:
            if part.startswith("{"):
                segment = Segment("param", names=(part[1:-1],))
            else:
                segment = Segment("static", text=part)
            _SIMPLE_SEGMENTS[part] = segment
        if segment.kind == "param":
            if segment.names[0] in names:
                return None
            names.append(segment.names[0])
        segments.append(segment)
    return Template(source, tuple(segments), tuple(names), None)


_SIMPLE_SEGMENTS: dict[str, Segment] = {}


def _extract_braces(source: str) -> tuple[str, dict[str, tuple[str, str | None]]]:
    """Replace each balanced ``{name[:regex]}`` by a ``{_bN}`` placeholder.

    Routes' own parser (behind ``Route.routelist``) ends a ``{...}`` at the first ``}`` and
    splits it on every ``:``, so ``{id:\\d{2}}`` and ``{x:(?:a|b)}`` come out wrong.
    We cut those groups out by brace depth first and let Routes parse the rest.

    Routes also ends a ``:name`` at ``-`` but then drops that dash from the template
    (``/a/:x-:y`` would match ``/a/12``), so ``:name`` params are cut out here too,
    ending at the same characters Routes ends them at. Backslash escapes outside
    braces are left in pairs for Routes to read, so ``\\{`` stays literal.
    """
    out: list[str] = []
    groups: dict[str, tuple[str, str | None]] = {}
    i = 0
    while i < len(source):
        plain = _ORDINARY.match(source, i)
        if plain is not None:
            out.append(plain.group())
            i = plain.end()
            continue
        char = source[i]
        if char == "\\":
            out.append(source[i : i + 2])
            i += 2
            continue
        if char == ":" and source[i + 1 : i + 2] != "(":
            j = i + 1
            while j < len(source) and source[j] not in _COLON_NAME_END:
                j += 1
            placeholder = f"_b{len(groups)}"
            groups[placeholder] = (source[i + 1 : j], None)
            out.append("{" + placeholder + "}")
            i = j
            continue
        if char == "}":
            raise ValueError("unbalanced '}'")
        if char != "{":
            out.append(char)
            i += 1
            continue
        depth, j = 1, i + 1
        while j < len(source) and depth:
            if source[j] == "\\":
                j += 2
                continue
            depth += {"{": 1, "}": -1}.get(source[j], 0)
            j += 1
        if depth:
            raise ValueError("unbalanced '{'")
        body = source[i + 1 : j - 1]
        name, sep, regex = body.partition(":")
        placeholder = f"_b{len(groups)}"
        groups[placeholder] = (name, regex if sep else None)
        out.append("{" + placeholder + "}")
        i = j
    return "".join(out), groups


def _routes_segments(path: str) -> list[Any]:
    """Routes' own parse of a template: the ``routelist`` of a ``routes.route.Route``.

    Only templates with Routes syntax left once braces are cut out (``:name``,
    ``*name``, backslash escapes) come here; the others skip Routes altogether.
    """
    return _RoutesRoute(None, path).routelist


def _parse(source: str, requirements: dict[str, str]) -> list[tuple[_Piece, ...]]:
    stripped, groups = _extract_braces(source)
    if _ROUTES_SYNTAX.search(stripped):
        routelist = _routes_segments(stripped)
    else:
        # Only text and our {_bN} placeholders are left: Routes would hand them back
        # as they are, so skip its character-by-character walk (big tables build faster).
        parts = _PLACEHOLDER.split(stripped)
        routelist = [
            {"type": ":", "name": part} if k % 2 else part
            for k, part in enumerate(parts)
            if part or k % 2
        ]
    pieces: list[_Piece] = []
    for item in routelist:
        if isinstance(item, str):
            pieces.append(_Piece(text=item))
            continue
        if item["type"] == "*":
            name, regex, tail = item["name"], None, True
        elif item["name"] in groups:
            name, regex = groups[item["name"]]
            tail = False
            if regex in _CONVERTERS:
                raise ValueError(_converter_advice(name, regex))
        else:  # Routes' ':name' form
            name, regex, tail = item["name"], None, False
        if not _NAME.match(name):
            raise ValueError(f"bad param name {name!r}")
        regex = requirements.get(name, regex)
        if regex in _TAIL_PATTERNS:
            tail = True
        elif tail and regex is not None:
            raise ValueError(f"tail param {name!r} takes only '.*' or '.+' as its regex")
        elif regex is not None:
            try:
                re.compile(regex)
            except re.error as exc:
                raise ValueError(f"bad regex for {name!r}: {exc}") from None
            if "/" in regex:
                raise ValueError(f"regex for {name!r} may not match '/': use a tail param")
        pieces.append(_Piece(name=name, regex=regex, tail=tail))
    # Split the flat piece list into segments on the '/' inside text pieces.
    segments: list[list[_Piece]] = [[]]
    for piece in pieces:
        if piece.name is not None:
            segments[-1].append(piece)
            continue
        parts = piece.text.split("/")
        for k, part in enumerate(parts):
            if k:
                segments.append([])
            if part:
                segments[-1].append(_Piece(text=part))
    if segments[0]:
        raise ValueError("must start with '/'")
    return [tuple(s) for s in segments[1:]]


def _converter_advice(name: str, converter: str) -> str:
    template, conversion = _CONVERTERS[converter]
    fix = template % name
    if conversion is not None:
        fix += (
            f" with route(..., convert={{{name!r}: {conversion.split('(')[0]}}})"
            f" (path.params[{name!r}] is then converted), or {conversion % name} in the view"
        )
    elif converter == "str":
        fix += " (any non-empty segment; params are str)"
    else:
        fix += f" (the rest of the path, slashes included; {{{name}:.+}} if not empty)"
    return (
        f"{{{name}:{converter}}} is the regex {converter!r} in Routes syntax (it matches "
        f"only the text {converter!r}), not the {converter!r} converter of Starlette or "
        f"FastAPI. Write {fix}"
    )


def _compile_segment(pieces: tuple[_Piece, ...], last: bool) -> Segment:
    names = tuple(p.name for p in pieces if p.name is not None)
    tails = [p for p in pieces if p.tail]
    if tails:
        tail = tails[0]
        if not last or pieces[-1] is not tail:
            raise ValueError(f"tail param {tail.name!r} must end the template")
        if len(pieces) > 2 or (len(pieces) == 2 and pieces[0].name is not None):
            raise ValueError(f"tail param {tail.name!r} may follow only static text")
        prefix = pieces[0].text if len(pieces) == 2 else ""
        assert tail.name is not None
        nonempty = tail.regex is not None and _TAIL_PATTERNS[tail.regex]
        return Segment("tail", text=prefix, names=(tail.name,), nonempty=nonempty)
    if not names:
        return Segment("static", text="".join(p.text for p in pieces))
    if len(pieces) == 1 and pieces[0].regex is None:
        return Segment("param", names=names)
    whole = len(pieces) == 1
    parts = []
    for piece in pieces:
        if piece.name is None:
            parts.append(re.escape(piece.text))
        else:
            parts.append(f"(?P<_p{names.index(piece.name)}>{piece.regex or '.+?'})")
    return Segment("pattern", names=names, regex=re.compile("".join(parts), re.DOTALL), whole=whole)
