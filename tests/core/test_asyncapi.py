"""``Router.asyncapi()``: AsyncAPI 3.0.0 documents, validated by the official schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from websockets_routes import Router

SCHEMA = json.loads(
    (Path(__file__).parent.parent / "data" / "asyncapi" / "3.0.0-without-id.json").read_text()
)


def validate(document: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(json.loads(json.dumps(document)))


def every_kind_router() -> Router:
    router = Router(subprotocols=["v1"])

    @router.route("/", name="home")
    async def home(ws: Any, path: Any) -> None:
        """The landing channel.

        Sends a greeting."""

    @router.route("/things/{id:\\d+}/{rest:.*}")
    async def thing(ws: Any, path: Any) -> None: ...

    @router.route("/files/*path", subprotocols=["files.v2", "files.v1"])
    class Files:
        """Files, one per connection."""

        async def handle(self, ws: Any, path: Any) -> None: ...

    @router.route("/a/{x}.{ext}")
    async def dotted(ws: Any) -> None: ...

    @router.route("/uuid/{u:[0-9a-f]{8}}")
    async def braces(ws: Any) -> None: ...

    @router.http("/health")
    async def health(request: Any) -> str:
        return "ok"

    inner = Router()

    @inner.route("/room/{room}", name="room")
    async def room(ws: Any, path: Any) -> None:
        """A room."""

    router.include("/chat", inner)
    return router


def test_the_chat_example_validates() -> None:
    from examples.chat.app import router

    document = router.asyncapi(title="Chat", version="2.1.0", servers=["ws://127.0.0.1:8765"])
    validate(document)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"] == {"title": "Chat", "version": "2.1.0"}
    assert document["servers"] == {
        "127_0_0_1_8765": {"host": "127.0.0.1:8765", "protocol": "ws"}
    }
    assert list(document["channels"]) == ["room"]  # GET / and /healthz are HTTP routes
    assert document["channels"]["room"]["address"] == "/rooms/{room}"


def test_every_template_kind_validates_and_reads_right() -> None:
    document = every_kind_router().asyncapi()
    validate(document)
    channels = document["channels"]
    assert list(channels) == [
        "home",
        "things_id_rest",
        "files_path",
        "a_x_ext",
        "uuid_u",
        "room",
    ]
    assert channels["home"]["address"] == "/"
    assert channels["home"]["description"].startswith("The landing channel.\n\nSends a greeting.")
    assert "v1" in channels["home"]["description"]  # the router's subprotocols
    thing = channels["things_id_rest"]
    assert thing["address"] == "/things/{id}/{rest}"
    assert thing["parameters"]["id"]["description"].endswith("regular expression \\d+")
    assert thing["parameters"]["rest"]["description"] == "The rest of the path, '/' included."
    files = channels["files_path"]
    assert files["address"] == "/files/{path}"
    assert "Files, one per connection." in files["description"]
    assert "files.v2, files.v1" in files["description"]
    assert channels["a_x_ext"]["address"] == "/a/{x}.{ext}"
    assert set(channels["a_x_ext"]["parameters"]) == {"x", "ext"}
    assert channels["uuid_u"]["address"] == "/uuid/{u}"
    assert channels["room"]["address"] == "/chat/room/{room}"  # under its prefix
    assert "parameters" not in channels["home"]
    for channel_id in channels:
        receive = document["operations"][f"{channel_id}.receive"]
        send = document["operations"][f"{channel_id}.send"]
        assert receive["action"] == "receive" and send["action"] == "send"
        assert receive["channel"] == {"$ref": f"#/channels/{channel_id}"}


def test_same_derived_ids_stay_distinct() -> None:
    router = Router()

    @router.route("/a-b")
    async def one(ws: Any) -> None: ...

    @router.route("/a_b")
    async def two(ws: Any) -> None: ...

    document = router.asyncapi()
    validate(document)
    assert list(document["channels"]) == ["a-b", "a_b"]
    router2 = Router()

    @router2.route("/x.y")
    async def three(ws: Any) -> None: ...

    @router2.route("/x_y")
    async def four(ws: Any) -> None: ...

    assert list(router2.asyncapi()["channels"]) == ["x_y", "x_y_2"]


def test_servers_as_objects_or_urls() -> None:
    router = every_kind_router()
    given = {"production": {"host": "chat.example.com", "protocol": "wss"}}
    document = router.asyncapi(servers=given)
    validate(document)
    assert document["servers"] == given
    document = router.asyncapi(servers=["wss://chat.example.com/ws", "ws://127.0.0.1:8765"])
    validate(document)
    assert document["servers"] == {
        "chat_example_com": {"host": "chat.example.com", "protocol": "wss", "pathname": "/ws"},
        "127_0_0_1_8765": {"host": "127.0.0.1:8765", "protocol": "ws"},
    }
    with pytest.raises(ValueError, match="a server URL is ws://"):
        router.asyncapi(servers=["http://example.com"])


def test_the_schema_catches_a_broken_document() -> None:
    """The validation is real: a document missing what the spec requires fails."""
    document = every_kind_router().asyncapi()
    del document["channels"]["home"]["messages"]["text"]["payload"]
    document["operations"]["home.send"]["action"] = "publish"  # AsyncAPI 2's word
    with pytest.raises(jsonschema.ValidationError):
        validate(document)
