"""Messages and services built the way alchemy-ether and alchemy-flux build them.

Derived from reading the libraries' sources (LoyaltyNZ/alchemy-ether src/service.coffee and
src/service_connection_manager.coffee; LoyaltyNZ/alchemy-flux lib/alchemy-flux.rb):

alchemy-ether (Node): request bodies are MessagePack; request properties ``messageId``, ``type:
http_request``, ``replyTo``, ``contentEncoding: 8bit``, ``contentType: application/octet-stream``,
``expiration`` (the timeout in ms), published ``mandatory``. Its service queue is declared
``durable: false``; a request of another type gets no reply. Its reply carries ``type: http_response``,
``correlationId``, ``messageId`` and no content type, with a MessagePack map ``{status_code, headers, body}``
whose body is whatever the service function returned (usually a map).

alchemy-flux (Ruby, 1.0 on): request bodies are JSON; ``type: http``, ``content_type: application/json``,
the rest as ether. Its service queue is durable; it binds the queue to ``resources.exchange`` (a durable
topic exchange) with ``<routing key>.#`` per resource path. It parses every request as JSON. Its reply has
``type: http_response``, ``correlation_id``, ``message_id``, no content type, and a JSON map whose body is
a string (a Rack body).

These fixtures are written here from that reading: none of the libraries' code is used.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import msgpack
from aio_pika.abc import AbstractIncomingMessage


def library_id() -> str:
    return uuid.uuid4().hex


def ether_request(path: str, *, reply_to: str, timeout_ms: int = 5000) -> aio_pika.Message:
    """A request as alchemy-ether's ``send_request_to_resource`` sends it."""
    payload = {
        "session_id": None,
        "scheme": "http",
        "host": "localhost",
        "port": 8080,
        "path": path,
        "query": {},
        "verb": "GET",
        "headers": {"x-interaction-id": library_id()},
        "body": "",
    }
    return aio_pika.Message(
        msgpack.packb(payload),
        message_id=library_id(),
        type="http_request",
        reply_to=reply_to,
        content_encoding="8bit",
        content_type="application/octet-stream",
        expiration=timeout_ms / 1000,
    )


def flux_request(path: str, *, reply_to: str, timeout_ms: int = 5000) -> aio_pika.Message:
    """A request as alchemy-flux's ``send_request_to_service`` / ``send_request_to_resource`` sends it."""
    payload = {
        "body": "",
        "verb": "GET",
        "headers": {},
        "path": path,
        "query": {},
        "scheme": "http",
        "host": "localhost",
        "port": 8080,
        "session": None,
        "session_id": None,
    }
    return aio_pika.Message(
        json.dumps(payload).encode(),
        message_id=library_id(),
        type="http",
        reply_to=reply_to,
        content_encoding="8bit",
        content_type="application/json",
        expiration=timeout_ms / 1000,
    )


@dataclass
class Received:
    """A request as a library service saw it."""

    properties: dict[str, Any]
    payload: dict[str, Any]


Responder = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class LibraryService:
    """A service that declares, binds, decodes and replies as one of the libraries does."""

    library: str
    queue_name: str
    binding_key: str
    respond: Responder
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event | None = None
    """When set, each reply waits for this event (a request held in flight)."""
    _connection: aio_pika.abc.AbstractConnection | None = None

    async def start(self, uri: str) -> None:
        self._connection = await aio_pika.connect(uri)
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=20)
        exchange = await channel.declare_exchange("resources.exchange", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(self.queue_name, durable=self.library == "flux")
        await queue.bind(exchange, routing_key=self.binding_key)

        async def on_message(message: AbstractIncomingMessage) -> None:
            if self.library == "ether" and message.type != "http_request":
                await message.ack()
                return
            payload = msgpack.unpackb(message.body) if self.library == "ether" else json.loads(message.body)
            self.received.append(Received(properties=dict(message.info()), payload=payload))
            self.arrived.set()
            if self.release is not None:
                await self.release.wait()
            reply = self.respond(payload)
            body = msgpack.packb(reply) if self.library == "ether" else json.dumps(reply).encode()
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body, type="http_response", correlation_id=message.message_id, message_id=library_id()
                ),
                routing_key=message.reply_to or "",
            )
            await message.ack()

        await queue.consume(on_message)

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()
