"""Templates in Routes syntax: segments, params, regexes with quantifiers, tails."""

from __future__ import annotations

import pytest

from websockets_routes.core.paths import split_path
from websockets_routes.core.templates import compile_template, match_segments


def params_of(template: str, path: str, requirements: dict[str, str] | None = None):
    compiled = compile_template(template, requirements)
    segments = split_path(path)
    assert segments is not None
    return match_segments(compiled.segments, segments, path)


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/thing/{id}", "/thing/42", {"id": "42"}),
        ("/thing/{id}", "/thing/", None),  # a param takes a non-empty segment
        ("/thing/{id}", "/thing/42/x", None),
        ("/room/{room}/user/{user}", "/room/r1/user/u2", {"room": "r1", "user": "u2"}),
        ("/x/:id", "/x/7", {"id": "7"}),  # Routes' colon form
        ("/n/{n:\\d{2}}", "/n/12", {"n": "12"}),  # quantifier: Routes itself mis-parses it
        ("/n/{n:\\d{2}}", "/n/123", None),
        ("/n/{n:\\d{2}}", "/n/1", None),
        ("/n/{n:\\d{2,3}}x", "/n/123x", {"n": "123"}),
        ("/n/{n:\\d{2,3}}x", "/n/1234x", None),
        ("/n/{n:a{1,2}b{3}}", "/n/aabbb", {"n": "aabbb"}),
        ("/n/{n:(?:ab|cd)}", "/n/cd", {"n": "cd"}),
        ("/n/{n:[a-z]+}", "/n/ABC", None),
        ("/files/*rest", "/files/a/b/c.txt", {"rest": "a/b/c.txt"}),
        ("/files/*rest", "/files/", {"rest": ""}),
        ("/files/*rest", "/files", None),
        ("/files/{rest:.*}", "/files/a/b", {"rest": "a/b"}),
        ("/files/{rest:.*}", "/files/", {"rest": ""}),
        ("/files/{rest:.+}", "/files/", None),
        ("/files/{rest:.+}", "/files/a/", {"rest": "a/"}),
        ("/files/x*rest", "/files/xyz/1", {"rest": "yz/1"}),
        ("/files/x*rest", "/files/ab", None),
        ("/{all:.*}", "/anything/at/all", {"all": "anything/at/all"}),
        ("/a.b-c/d", "/a.b-c/d", {}),
        ("/a.b-c/d", "/aXb-c/d", None),  # a literal dot is not a regex dot
        ("/v1.0/{id}.json", "/v1.0/42.json", {"id": "42"}),
        ("/v1.0/{id}.json", "/v1X0/42.json", None),
        ("/v/{id}.json", "/v/42Xjson", None),
        ("/m/{a}-{b}", "/m/x-y", {"a": "x", "b": "y"}),
        ("/m/file-{id:\\d+}.{ext:[a-z]+}", "/m/file-12.png", {"id": "12", "ext": "png"}),
        ("/m/file-{id:\\d+}.{ext:[a-z]+}", "/m/file-x.png", None),
        ("/a//b", "/a//b", {}),
        ("/a/", "/a/", {}),
        ("/a/", "/a", None),
        ("/", "/", {}),
    ],
)
def test_template_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert params_of(template, path) == expected


def test_colon_param_keeps_the_dash_after_it() -> None:
    # Routes' parser ends ':name' at '-' and drops the dash; we must keep it literal.
    assert params_of("/a/:x-:y", "/a/1-2") == {"x": "1", "y": "2"}
    assert params_of("/a/:x-y", "/a/1-y") == {"x": "1"}
    assert params_of("/a/:x-y", "/a/1y") is None


def test_backslash_escapes_outside_braces_are_literal() -> None:
    assert params_of("/time/12\\:30", "/time/12:30") == {}
    assert params_of("/set/\\{x\\}", "/set/{x}") == {}
    assert compile_template("/set/\\{x\\}").names == ()


def test_requirements_apply_to_named_params() -> None:
    assert params_of("/u/{id}", "/u/12", {"id": "\\d+"}) == {"id": "12"}
    assert params_of("/u/{id}", "/u/ab", {"id": "\\d+"}) is None
    assert params_of("/u/{rest}", "/u/a/b", {"rest": ".*"}) == {"rest": "a/b"}


def test_template_names_in_order() -> None:
    assert compile_template("/r/{room}/u/{user}/*rest").names == ("room", "user", "rest")
    assert compile_template("/static/page").is_static
    assert compile_template("/t/*rest").has_tail
    assert not compile_template("/t/{x}").has_tail


def test_percent_encoded_slash_stays_in_one_segment() -> None:
    assert params_of("/thing/{id}", "/thing/a%2Fb") == {"id": "a/b"}
    assert params_of("/thing/{id}/x", "/thing/a%2Fb/x") == {"id": "a/b"}
    # Patterns see the decoded segment: %62 is "b", and %2F is a "/" the regex must allow.
    assert params_of("/n/{n:[a-z]+}", "/n/a%62c") == {"n": "abc"}
    assert params_of("/n/{n:[a-z]+}", "/n/a%2Fb") is None


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("no-slash", "must start with '/'"),
        ("", "must start with '/'"),
        ("/a/{x", "unbalanced '{'"),
        ("/a/x}", "unbalanced '}'"),
        ("/a/{}", "bad param name"),
        ("/a/{1x}", "bad param name"),
        ("/a/{ x }", "bad param name"),
        ("/a/*", "bad param name"),
        ("/a/{x:(}", "bad regex"),
        ("/a/{x:a/b}", "may not match '/'"),
        ("/a/*r/b", "must end the template"),
        ("/a/{r:.*}/b", "must end the template"),
        ("/a/{x}*rest", "may follow only static text"),
        ("/a/{x}/{x}", "appears twice"),
    ],
)
def test_bad_template_raises_value_error_naming_it(template: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        compile_template(template)
    assert repr(template) in str(info.value)
    assert fragment in str(info.value)


def test_bad_requirements_raise_value_error_naming_the_template() -> None:
    with pytest.raises(ValueError, match=r"'/u/\{id\}'.*unknown param\(s\) nope"):
        compile_template("/u/{id}", {"nope": "x"})
    with pytest.raises(ValueError, match=r"'/u/\{id\}'.*bad regex"):
        compile_template("/u/{id}", {"id": "("})
    with pytest.raises(ValueError, match=r"'/f/\*rest'"):
        compile_template("/f/*rest", {"rest": "\\d+"})


def test_non_string_template_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="42"):
        compile_template(42)  # type: ignore[arg-type]


def test_build_percent_encodes_every_value() -> None:
    t = compile_template("/t/{id}/f/*rest")
    assert t.build({"id": "a/b c", "rest": "x y/z"}) == "/t/a%2Fb%20c/f/x%20y/z"
    assert compile_template("/café/{x}").build({"x": "é"}) == "/caf%C3%A9/%C3%A9"


@pytest.mark.parametrize(
    ("template", "fix"),
    [
        ("/t/{id:int}", "{id:\\d+} with route(..., convert={'id': int})"),
        ("/t/{x:float}", "convert={'x': float}"),
        ("/t/{name:str}", "{name}"),
        ("/t/{key:uuid}", "convert={'key': uuid.UUID}"),
        ("/t/{rest:path}", "{rest:.*}"),
        ("/t/file-{id:int}.json", "{id:\\d+} with route(..., convert={'id': int})"),
    ],
)
def test_a_converter_name_as_the_regex_raises_naming_the_fix(template: str, fix: str) -> None:
    # Starlette's and FastAPI's {id:int} is the regex "int" in Routes syntax: /t/42
    # would not match and /t/int would.
    with pytest.raises(ValueError) as info:
        compile_template(template)
    message = str(info.value)
    assert repr(template) in message and "converter" in message
    assert fix in message


@pytest.mark.parametrize("regex", ["integer", "ints", "(int)", "int|float", "Int", "paths"])
def test_other_regexes_stay_regexes(regex: str) -> None:
    compiled = compile_template(f"/t/{{v:{regex}}}")
    assert compiled.names == ("v",)
