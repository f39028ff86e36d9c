"""The wire protocol's pure parts: dialects, routing keys, error documents, replies to HTTP."""

from __future__ import annotations

import json
import re

import msgpack
import pytest

from alchemy_services.hello_world import answer
from alchemy_services.protocol import (
    Dialect,
    HttpResponse,
    ProtocolError,
    binding_key,
    decode,
    dialect_of,
    encode,
    error_body,
    http_response,
    path_to_routing_key,
)


@pytest.mark.parametrize(
    ("path", "key"),
    [("/v1/hello", "v1.hello"), ("/v1/hello/", "v1.hello"), ("/v1/users/1337", "v1.users.1337"), ("/", "")],
)
def test_a_path_becomes_its_routing_key(path: str, key: str) -> None:
    assert path_to_routing_key(path) == key


def test_a_service_binds_its_path_and_everything_below_it() -> None:
    assert binding_key("/v1/hello") == "v1.hello.#"


@pytest.mark.parametrize(
    ("content_type", "body", "dialect"),
    [
        ("application/json", b"{}", Dialect.JSON),
        ("application/json; charset=utf-8", b"{}", Dialect.JSON),
        ("application/octet-stream", msgpack.packb({}), Dialect.MSGPACK),
        (None, b'{"status_code":200}', Dialect.JSON),
        (None, msgpack.packb({"status_code": 200}), Dialect.MSGPACK),
        ("text/plain", b' {"a":1}', Dialect.JSON),
    ],
)
def test_the_dialect_comes_from_the_content_type_else_the_first_byte(
    content_type: str | None, body: bytes, dialect: Dialect
) -> None:
    assert dialect_of(content_type=content_type, body=body) is dialect


@pytest.mark.parametrize("dialect", list(Dialect))
def test_encode_and_decode_round_trip(dialect: Dialect) -> None:
    payload = {"path": "/v1/hello", "query": {"tag": ["a", "b"]}, "port": 8080, "session": None}
    assert decode(encode(payload, dialect), dialect) == payload


def test_the_dialects_name_their_content_and_request_types() -> None:
    assert [(d.content_type, d.request_type) for d in Dialect] == [
        ("application/octet-stream", "http_request"),
        ("application/json", "http"),
    ]


def test_a_body_that_is_not_a_map_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^json body is a list, not a map$"):
        decode(b"[1]", Dialect.JSON)


def test_an_undecodable_body_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^undecodable json body: "):
        decode(b"{nope", Dialect.JSON)


def test_an_error_document_has_the_original_routers_shape() -> None:
    document = error_body(code="platform.not_found", message="Router: Not found", reference="/x")
    assert (
        sorted(document),
        bool(re.fullmatch(r"[0-9a-f]{32}", document["id"])),
        bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document["created_at"])),
        document["errors"],
    ) == (
        ["created_at", "errors", "id", "kind"],
        True,
        True,
        [{"code": "platform.not_found", "message": "Router: Not found", "reference": "/x"}],
    )


def test_a_map_body_goes_out_as_json() -> None:
    assert http_response({"status_code": 201, "body": {"a": 1}}) == HttpResponse(
        201, {"Content-Type": "application/json; charset=utf-8"}, b'{"a":1}'
    )


def test_a_string_body_goes_out_as_is_with_the_services_headers() -> None:
    reply = {"status_code": "202", "headers": {"Content-Type": "text/plain", "X-A": ["1", "2"]}, "body": "hi"}
    assert http_response(reply) == HttpResponse(202, {"Content-Type": "text/plain", "X-A": "1, 2"}, b"hi")


def test_a_reply_without_status_is_200_and_framing_headers_are_dropped() -> None:
    reply = {"headers": {"Content-Length": "99", "Transfer-Encoding": "chunked", "Connection": "close"}}
    assert http_response(reply) == HttpResponse(200, {}, b"")


def test_a_reply_with_an_impossible_status_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^status_code 42 is not an HTTP status$"):
        http_response({"status_code": 42})


def test_hello_world_answers_ether_callers_with_a_map_body() -> None:
    reply = answer({"path": "/v1/hello", "verb": "GET", "headers": {"x-interaction-id": "abc"}}, Dialect.MSGPACK)
    assert reply == {
        "status_code": 200,
        "headers": {"Content-Type": "application/json; charset=utf-8", "x-interaction-id": "abc"},
        "body": {"hello": "world!"},
    }


def test_hello_world_answers_flux_callers_with_a_json_string_body() -> None:
    reply = answer({"path": "/v1/hello/", "verb": "GET"}, Dialect.JSON)
    assert (reply["status_code"], json.loads(reply["body"])) == (200, {"hello": "world!"})


def test_hello_world_refuses_other_methods_with_405() -> None:
    reply = answer({"path": "/v1/hello", "verb": "POST"}, Dialect.MSGPACK)
    assert (reply["status_code"], reply["headers"]["Allow"], reply["body"]["errors"][0]["code"]) == (
        405,
        "GET, HEAD",
        "platform.method_not_allowed",
    )


def test_hello_world_answers_404_below_its_path() -> None:
    reply = answer({"path": "/v1/hello/there", "verb": "GET"}, Dialect.MSGPACK)
    assert (reply["status_code"], reply["body"]["errors"][0]["reference"]) == (404, "/v1/hello/there")
