"""The core Router: registration, views, lookup, include and url_for (matching order is in
test_matcher.py, targets and RoutedPath in test_paths.py)."""

from __future__ import annotations

import functools
from typing import Any

import pytest

import websockets_routes
from websockets_routes import RoutedPath, Router
from websockets_routes.core import Router as CoreRouter


async def view(ws: Any, path: RoutedPath) -> None:
    pass


async def other_view(ws: Any, path: RoutedPath) -> None:
    pass


# Registration and views


def test_public_router_is_the_core_router() -> None:
    assert issubclass(Router, CoreRouter)
    assert websockets_routes.RoutedPath is RoutedPath


def test_route_decorator_returns_the_object_unchanged() -> None:
    router = Router()

    async def handler(ws: Any, path: RoutedPath) -> None:
        pass

    class Room:
        async def handle(self, ws: Any, path: RoutedPath) -> None:
            pass

    async def page(request: Any) -> str:
        return "ok"

    assert router.route("/a")(handler) is handler
    assert router.route("/b")(Room) is Room
    assert router.http("/c")(page) is page


def test_routes_lists_template_name_and_view_in_registration_order() -> None:
    router = Router()
    router.route("/b/{id}", name="b")(view)
    router.route("/a")(other_view)
    listing = [(r.template.source, r.name, r.endpoint, r.kind) for r in router.routes]
    assert listing == [("/b/{id}", "b", view, "websocket"), ("/a", None, other_view, "websocket")]


@pytest.mark.parametrize(
    "bad",
    [
        lambda ws, path: None,  # not async
        42,
        "handler",
    ],
)
def test_a_view_that_is_not_async_raises_type_error_naming_the_template(bad: Any) -> None:
    router = Router()
    with pytest.raises(TypeError, match=r"'/bad/\{id\}'"):
        router.route("/bad/{id}")(bad)
    assert router.routes == []


def test_class_views_need_an_async_handle() -> None:
    router = Router()

    class NoHandle:
        pass

    class SyncHandle:
        def handle(self, ws: Any, path: Any) -> None:
            pass

    class BadHook:
        process_request = 3

        async def handle(self, ws: Any, path: Any) -> None:
            pass

    for cls in (NoHandle, SyncHandle, BadHook):
        with pytest.raises(TypeError, match="'/room'"):
            router.route("/room")(cls)
    assert router.routes == []


def test_async_callables_and_partials_are_accepted() -> None:
    router = Router()

    class Callable_:
        async def __call__(self, ws: Any, path: Any) -> None:
            pass

    async def two(ws: Any, path: Any, extra: int) -> None:
        pass

    router.route("/obj")(Callable_())
    router.route("/partial")(functools.partial(two, extra=1))
    assert len(router.routes) == 2


def test_http_views_must_be_functions() -> None:
    router = Router()

    class Page:
        async def handle(self, request: Any) -> str:
            return ""

    with pytest.raises(TypeError, match="'/page'"):
        router.http("/page")(Page)
    with pytest.raises(TypeError, match="'/page'"):
        router.http("/page")(None)  # type: ignore[arg-type]


def test_bad_template_raises_at_decoration_time_naming_it() -> None:
    router = Router()
    with pytest.raises(ValueError, match=r"'/x/\{id'"):
        router.route("/x/{id")
    with pytest.raises(ValueError, match=r"'/x/\{id'"):
        router.http("/x/{id")


def test_duplicate_name_raises_value_error_naming_both_templates() -> None:
    router = Router()
    router.route("/a", name="same")(view)
    with pytest.raises(ValueError, match=r"'same'.*'/b'.*'/a'"):
        router.route("/b", name="same")(view)
    with pytest.raises(ValueError, match="'same'"):
        router.http("/c", name="same")
    assert [r.template.source for r in router.routes] == ["/a"]


def test_subprotocols_and_origins_must_be_lists_not_one_string() -> None:
    with pytest.raises(TypeError, match="'/a'"):
        Router().route("/a", subprotocols="chat")
    with pytest.raises(TypeError, match="'/a'"):
        Router().route("/a", origins="https://x")
    with pytest.raises(TypeError):
        Router(origins="https://x")


# A view per match


def test_each_match_gets_a_fresh_context_and_a_fresh_class_view() -> None:
    router = Router()

    @router.route("/room/{room}")
    class Room:
        async def handle(self, ws: Any, path: RoutedPath) -> None:
            pass

    first, second = router.match("/room/1"), router.match("/room/1")
    assert first is not None and second is not None
    assert isinstance(first.route, Room) and isinstance(second.route, Room)
    assert first.route is not second.route
    first.context["user"] = "alice"
    assert second.context == {}


def test_lookup_takes_a_path_without_query() -> None:
    router = Router()
    router.route("/t/{id}", name="t")(view)
    found = router.lookup("/t/x%20y")
    assert found is not None
    route, params = found
    assert route.name == "t" and params == {"id": "x y"}
    assert router.lookup("/nope") is None


# include


def test_include_mounts_routes_under_a_prefix_keeping_names() -> None:
    api = Router()
    api.route("/users/{id}", name="user")(view)
    root = Router()
    root.route("/", name="home")(view)
    root.include("/api/v1", api)
    found = root.match("/api/v1/users/7")
    assert found is not None
    assert found.params == {"id": "7"} and found.name == "user"
    assert found.template == "/api/v1/users/{id}"
    assert root.match("/users/7") is None
    assert root.url_for("user", id="a b") == "/api/v1/users/a%20b"
    assert api.url_for("user", id="7") == "/users/7"


def test_routes_added_to_an_included_router_later_appear() -> None:
    api = Router()
    root = Router()
    root.include("/api/", api)  # a trailing slash on the prefix is dropped
    api.route("/late/{x}", name="late")(view)
    found = root.match("/api/late/1")
    assert found is not None and found.name == "late" and found.params == {"x": "1"}
    assert root.url_for("late", x="1") == "/api/late/1"


def test_nested_includes_propagate() -> None:
    leaf, mid, root = Router(), Router(), Router()
    mid.include("/mid", leaf)
    root.include("/root", mid)
    leaf.route("/leaf/{x}", name="leaf")(view)
    assert root.match("/root/mid/leaf/1").name == "leaf"  # type: ignore[union-attr]
    assert root.url_for("leaf", x="1") == "/root/mid/leaf/1"


def test_include_with_a_param_in_the_prefix() -> None:
    api = Router()
    api.route("/items/{item}", name="item")(view)
    root = Router()
    root.include("/org/{org}", api)
    found = root.match("/org/acme/items/3")
    assert found is not None and found.params == {"org": "acme", "item": "3"}
    assert root.url_for("item", org="a/b", item="3") == "/org/a%2Fb/items/3"


def test_include_rejects_bad_arguments() -> None:
    root = Router()
    with pytest.raises(TypeError):
        root.include("/x", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        root.include("/x", root)
    with pytest.raises(ValueError, match="'x'"):
        root.include("x", Router())


def test_include_refuses_a_name_already_used() -> None:
    api = Router()
    api.route("/a", name="a")(view)
    root = Router()
    root.route("/a", name="a")(view)
    with pytest.raises(ValueError, match="'a'"):
        root.include("/api", api)
    assert len(root.routes) == 1


def test_include_refuses_a_cycle() -> None:
    a, b, c = Router(), Router(), Router()
    a.route("/x")(view)
    a.include("/b", b)
    b.include("/c", c)
    with pytest.raises(ValueError, match="cycle"):
        c.include("/a", a)
    with pytest.raises(ValueError, match="cycle"):
        b.include("/a", a)
    c.route("/late")(view)  # still propagates without recursing forever
    assert a.match("/b/c/late") is not None


def test_included_router_keeps_its_router_wide_origins_and_subprotocols() -> None:
    api = Router(origins=["https://app.example"], subprotocols=["chat"])
    api.route("/locked")(view)
    api.route("/open", origins=[None, "https://other.example"], subprotocols=[])(view)
    root = Router(origins=["https://root.example"])
    root.include("/api", api)
    api.route("/late")(view)
    by_template = {r.template.source: r for r in root.routes}
    for template in ("/api/locked", "/api/late"):
        assert by_template[template].origins == ("https://app.example",)
        assert by_template[template].subprotocols == ("chat",)
    assert by_template["/api/open"].origins == (None, "https://other.example")
    assert by_template["/api/open"].subprotocols == ()


# url_for


def test_url_for_percent_encodes_every_value() -> None:
    router = Router()
    router.route("/t/{id}", name="t")(view)
    router.route("/f/*rest", name="f")(view)
    router.route("/n/{n:\\d{2}}", name="n")(view)
    assert router.url_for("t", id="a/b c") == "/t/a%2Fb%20c"
    assert router.url_for("t", id="\u00e9?#%") == "/t/%C3%A9%3F%23%25"
    assert router.url_for("t", id=42) == "/t/42"
    assert router.url_for("f", rest="a/b c/") == "/f/a/b%20c/"
    assert router.url_for("n", n="12") == "/n/12"
    for name, params in [("t", {"id": "a/b c"}), ("f", {"rest": "x/%2F/y"})]:
        found = router.match(router.url_for(name, **params))
        assert found is not None and found.params == params


def test_url_for_errors_name_what_is_wrong() -> None:
    router = Router()
    router.route("/t/{id}", name="t")(view)
    router.route("/n/{n:\\d{2}}", name="n")(view)
    with pytest.raises(KeyError, match="'nope'"):
        router.url_for("nope")
    with pytest.raises(KeyError, match="id"):
        router.url_for("t")
    with pytest.raises(ValueError, match="zzz"):
        router.url_for("t", id="1", zzz="2")
    with pytest.raises(ValueError, match="'123'"):
        router.url_for("n", n="123")  # does not fit the regex
    with pytest.raises(ValueError, match="''"):
        router.url_for("t", id="")  # would not match back


def test_close_unmatched_and_router_options_are_kept() -> None:
    router = Router(close_unmatched=True, subprotocols=["a", "b"], origins=[None])
    assert router.close_unmatched is True
    assert router.subprotocols == ("a", "b")
    assert router.origins == (None,)
    assert "0 routes" in repr(router)


def test_a_function_view_object_is_shared_a_class_view_is_not() -> None:
    router = Router()
    router.route("/f")(view)

    @router.route("/c")
    class Room:
        async def handle(self, ws: Any, path: RoutedPath) -> None:
            pass

    first, second = router.match("/f"), router.match("/f?x")
    assert first is not None and second is not None
    assert first.route.handle is view and first.route is second.route  # holds nothing else
    assert first.params is not second.params  # but params and context are per match
    c1, c2 = router.match("/c"), router.match("/c")
    assert c1 is not None and c2 is not None and c1.route is not c2.route


# Route-definition traps, caught when the route is defined


@pytest.mark.parametrize("converter", ["int", "float", "str", "uuid", "path"])
def test_a_starlette_converter_fails_at_definition_naming_the_fix(converter: str) -> None:
    router = Router()
    with pytest.raises(ValueError, match=rf"'/t/\{{v:{converter}\}}'.*Write \{{v"):
        router.route(f"/t/{{v:{converter}}}")
    with pytest.raises(ValueError, match=rf"'/h/\{{v:{converter}\}}'.*Write \{{v"):
        router.http(f"/h/{{v:{converter}}}")
    assert router.routes == []


def test_the_same_template_twice_for_the_same_kind_names_the_first() -> None:
    router = Router()
    router.route("/room/{id}", name="room")(view)
    with pytest.raises(ValueError) as info:
        router.route("/room/{id}")(other_view)
    message = str(info.value)
    assert "'/room/{id}'" in message and "view" in message and "'room'" in message
    assert "other_view" not in message

    router.http("/health")(lambda request: "ok")
    with pytest.raises(ValueError, match=r"'/health'.*<lambda>"):
        router.http("/health")(lambda request: "again")
    assert [r.endpoint for r in router.routes][0] is view and len(router.routes) == 2


def test_a_websocket_and_an_http_route_may_share_a_template() -> None:
    # Different kinds: both are kept, and the first registered answers (as for any two
    # routes that match the same path).
    router = Router()
    router.route("/x")(view)
    router.http("/x")(lambda request: "page")
    assert [r.kind for r in router.routes] == ["websocket", "http"]
    assert router.match("/x").route.handle is view  # type: ignore[union-attr]


def test_an_included_route_on_a_template_already_registered_is_refused() -> None:
    api = Router()
    api.route("/users/{id}")(other_view)
    api.route("/other")(other_view)
    root = Router()
    root.route("/api/users/{id}", name="users")(view)
    with pytest.raises(ValueError, match=r"'/api/users/\{id\}'.*view.*'users'"):
        root.include("/api", api)
    assert [r.template.source for r in root.routes] == ["/api/users/{id}"]  # nothing added
    root.include("/v2", api)  # another prefix is another template
    assert len(root.routes) == 3


def test_a_route_added_later_to_an_included_router_is_checked_against_its_parents() -> None:
    leaf, root = Router(), Router()
    root.include("/leaf", leaf)
    root.route("/leaf/late")(view)
    with pytest.raises(ValueError, match="'/leaf/late'"):
        leaf.route("/late")(other_view)
    assert leaf.routes == [] and len(root.routes) == 1


async def one_arg(ws: Any) -> None:
    await ws.send(str(ws.path))


@pytest.mark.anyio
async def test_a_view_of_ws_alone_is_called_with_the_connection_only() -> None:
    router = Router()
    assert router.route("/new/{id}")(one_arg) is one_arg
    found = router.match("/new/7")
    assert found is not None

    class WS:
        path = found
        sent: list[str] = []

        async def send(self, message: str) -> None:
            self.sent.append(message)

    await found.route.handle(WS(), found)
    assert WS.sent == ["/new/7"]
    assert [r.endpoint for r in router.routes] == [one_arg]


async def takes_nothing() -> None:
    pass


async def takes_three(ws: Any, path: Any, extra: Any) -> None:
    pass


async def keyword_only(ws: Any, *, key: Any) -> None:
    pass


@pytest.mark.parametrize("bad", [takes_nothing, takes_three, keyword_only])
def test_a_view_taking_neither_ws_nor_ws_and_path_fails_at_decoration(bad: Any) -> None:
    router = Router()
    with pytest.raises(TypeError) as info:
        router.route("/bad")(bad)
    message = str(info.value)
    assert "'/bad'" in message and bad.__qualname__ in message
    assert "(ws)" in message and "(ws, path)" in message
    assert router.routes == []


def test_views_taking_ws_and_path_in_other_shapes_are_accepted() -> None:
    async def defaulted(ws: Any, path: Any = None) -> None:
        pass

    async def star(*args: Any) -> None:
        pass

    async def ws_star(ws: Any, *args: Any, **kwargs: Any) -> None:
        pass

    router = Router()
    for i, endpoint in enumerate([view, defaulted, star, ws_star]):
        router.route(f"/v{i}")(endpoint)
        found = router.match(f"/v{i}")
        assert found is not None and found.route.handle is endpoint  # called as (ws, path)


def test_a_class_view_handle_must_take_ws_and_path() -> None:
    class NoArgs:
        async def handle(self) -> None:
            pass

    class Three:
        async def handle(self, ws: Any, path: Any, extra: Any) -> None:
            pass

    router = Router()
    for cls in (NoArgs, Three):
        with pytest.raises(
            TypeError, match=rf"'/room'.*{cls.__qualname__}.*handle\(self, ws, path\)"
        ):
            router.route("/room")(cls)
    assert router.routes == []


def test_a_process_request_hook_of_the_wrong_shape_is_refused_at_decoration() -> None:
    router = Router()

    class OneArgument:
        async def process_request(self, path: Any) -> None:  # pragma: no cover
            pass

        async def handle(self, ws: Any, path: Any) -> None:  # pragma: no cover
            pass

    wrong = r"'/room'.*has process_request\(self, path\b.*called as process_request\(self, path, headers\)"
    with pytest.raises(TypeError, match=wrong):
        router.route("/room")(OneArgument)
    assert router.routes == []

    class Fine:  # a method, a staticmethod and a hook taking *args all take (path, headers)
        async def process_request(self, path: Any, headers: Any) -> None:  # pragma: no cover
            pass

        async def handle(self, ws: Any, path: Any) -> None:  # pragma: no cover
            pass

    class Static(Fine):
        @staticmethod
        async def process_request(path: Any, headers: Any) -> None:  # pragma: no cover
            pass

    class Loose(Fine):
        async def process_request(self, *args: Any) -> None:  # pragma: no cover
            pass

    for name, cls in (("/fine", Fine), ("/static", Static), ("/loose", Loose)):
        router.route(name)(cls)
    assert [route.template.source for route in router.routes] == ["/fine", "/static", "/loose"]


def test_match_builds_the_same_routed_path_with_and_without_converters() -> None:
    """Router.match() of a router whose routes convert nothing is its matcher's; it
    must give what the class's match() gives, for every kind of view and route."""

    class Room:
        async def handle(self, ws: Any, path: RoutedPath) -> None:
            pass

    router = Router()
    router.route("/fn/{id}", name="fn")(view)
    router.route("/cls/{id}")(Room)
    router.route("/limited/{id}", max_size=10)(view)
    router.route("/static", name="static")(view)
    router.route("/tail/{rest:.*}")(view)
    assert "match" in router.__dict__  # the matcher's, while nothing converts
    for target in ("/fn/1", "/cls/2?x=1", "/limited/3", "/static", "/static?q", "/tail/a/b"):
        for _ in range(8):  # new, then remembered
            fast, slow = router.match(target), Router.match(router, target)
            assert fast is not None and slow is not None
            assert (fast, type(fast), fast.params, fast.name) == (
                slow,
                RoutedPath,
                slow.params,
                slow.name,
            )
            assert (fast.template, fast.policy, fast.view_class) == (
                slow.template,
                slow.policy,
                slow.view_class,
            )
            assert fast.query == target.partition("?")[2] and fast.context == {}
            if slow.view_class is None:
                assert fast.route is slow.route
            else:
                assert type(fast.route) is Room and fast.route is not slow.route
            assert fast.params is not router.match(target).params  # type: ignore[union-attr]
    router.route("/converted/{n}", convert={"n": int})(view)
    assert "match" not in router.__dict__ and "lookup" not in router.__dict__
    assert router.match("/converted/7").params == {"n": 7}  # type: ignore[union-attr]
    assert router.match("/fn/1").params == {"id": "1"}  # type: ignore[union-attr]
