"""The Alchemy wire protocol, as alchemy-ether (Node) and alchemy-flux (Ruby) speak it.

Two dialects exist, and they differ in how a message body is encoded and in the request's ``type``:

- ``msgpack``: alchemy-ether. Bodies are MessagePack, requests are ``type: http_request`` with
  ``content_type: application/octet-stream``.
- ``json``: alchemy-flux from 1.0 on. Bodies are JSON, requests are ``type: http`` with
  ``content_type: application/json``.

Replies are ``type: http_response`` in both, and neither library sets a content type on them, so a
reply's dialect is read from its first byte when the content type is missing: every payload is a map,
which JSON opens with ``{`` and MessagePack with a map marker (0x80-0x8f, 0xde, 0xdf), never ``{``.
See docs/protocol.md for the whole protocol.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack

RESOURCES_EXCHANGE = "resources.exchange"
"""The topic exchange that services bind their queue to, one binding key per resource path."""

RESPONSE_TYPE = "http_response"
CONTENT_ENCODING = "8bit"
MAX_ROUTING_KEY_BYTES = 255
"""AMQP short strings: a longer routing key cannot be published at all."""


class ProtocolError(ValueError):
    """A message that is not an Alchemy message: undecodable, or not a map."""


class Dialect(enum.Enum):
    """How a message body is encoded; the value is the name users give it in settings."""

    MSGPACK = "msgpack"
    JSON = "json"

    @property
    def content_type(self) -> str:
        return "application/octet-stream" if self is Dialect.MSGPACK else "application/json"

    @property
    def request_type(self) -> str:
        return "http_request" if self is Dialect.MSGPACK else "http"


REQUEST_TYPES = frozenset(dialect.request_type for dialect in Dialect)

_CONTENT_TYPES = {
    "application/json": Dialect.JSON,
    "application/octet-stream": Dialect.MSGPACK,
    "application/msgpack": Dialect.MSGPACK,
    "application/x-msgpack": Dialect.MSGPACK,
}


def dialect_of(*, content_type: str | None, body: bytes) -> Dialect:
    """The dialect of a received message: its content type when it names one, else its first byte."""
    if content_type:
        known = _CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())
        if known is not None:
            return known
    return Dialect.JSON if body.lstrip(b" \t\r\n").startswith(b"{") else Dialect.MSGPACK


def encode(payload: Mapping[str, Any], dialect: Dialect) -> bytes:
    """A payload as the dialect puts it on the wire."""
    if dialect is Dialect.JSON:
        return json.dumps(payload, separators=(",", ":")).encode()
    packed: bytes = msgpack.packb(payload, use_bin_type=True)
    return packed


def decode(body: bytes, dialect: Dialect) -> dict[str, Any]:
    """A received body as a map; anything else is a ProtocolError."""
    try:
        if dialect is Dialect.JSON:
            payload = json.loads(body)
        else:
            payload = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as error:
        raise ProtocolError(f"undecodable {dialect.value} body: {error}") from error
    if not isinstance(payload, dict):
        raise ProtocolError(f"{dialect.value} body is a {type(payload).__name__}, not a map")
    return payload


def new_id() -> str:
    """An identifier as the libraries make them: a random UUID without dashes (32 hex digits)."""
    return uuid.uuid4().hex


def path_to_routing_key(path: str) -> str:
    """The routing key of a request path: ``/v1/hello/1`` -> ``v1.hello.1``.

    Every ``/`` becomes ``.`` except a leading and a trailing one, which are dropped (alchemy-flux's
    rule, character by character, so that ``/v1/hello/`` and ``/v1/hello`` reach the same service).
    """
    last = len(path) - 1
    return "".join("." if char == "/" else char for index, char in enumerate(path) if char != "/" or 0 < index < last)


def binding_key(path: str) -> str:
    """The key a service binds its queue with to serve a path and everything below it."""
    return f"{path_to_routing_key(path)}.#"


def error_body(*, code: str, message: str, reference: str | None = None) -> dict[str, Any]:
    """The platform's JSON error document, shaped as the original router's."""
    error: dict[str, str] = {"code": code, "message": message}
    if reference is not None:
        error["reference"] = reference
    created_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"kind": "Errors", "id": new_id(), "created_at": created_at, "errors": [error]}


_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})


@dataclass(frozen=True)
class HttpResponse:
    """What the router answers over HTTP, from a service's reply."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def http_response(reply: Mapping[str, Any]) -> HttpResponse:
    """An HTTP response from a reply payload (``status_code``, ``headers``, ``body``).

    A body that is a string goes out as its UTF-8 bytes, one that is a map or a list as JSON (what
    alchemy-ether services return, and what the original router's express sent as JSON). Headers that
    describe the service's own connection or framing are dropped: the router frames its own response.
    """
    try:
        status = int(reply.get("status_code") or 200)
    except (TypeError, ValueError) as error:
        raise ProtocolError(f"status_code {reply.get('status_code')!r} is not a number") from error
    if not 100 <= status <= 599:
        raise ProtocolError(f"status_code {status} is not an HTTP status")
    headers: dict[str, str] = {}
    raw_headers = reply.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise ProtocolError(f"headers is a {type(raw_headers).__name__}, not a map")
    for name, value in raw_headers.items():
        if str(name).lower() in _HOP_BY_HOP or value is None:
            continue
        headers[str(name)] = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    content_type_given = any(name.lower() == "content-type" for name in headers)
    body = reply.get("body")
    if body is None:
        data = b""
    elif isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
        if not content_type_given and data:
            headers["Content-Type"] = "text/html; charset=utf-8"
    else:
        data = json.dumps(body, separators=(",", ":")).encode()
        if not content_type_given:
            headers["Content-Type"] = "application/json; charset=utf-8"
    return HttpResponse(status=status, headers=headers, body=data)
