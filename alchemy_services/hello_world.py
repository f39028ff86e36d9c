"""hello_world: the platform's example service, ``GET /v1/hello`` -> 200 ``{"hello": "world!"}``.

Every instance consumes the one shared queue ``hello_world``, bound to ``resources.exchange`` with
``v1.hello.#``, so the broker spreads requests over however many run. A request is acknowledged only after
its reply is published: if an instance dies while it holds requests, the broker gives them to another.
Requests are answered in the dialect they came in (alchemy-ether's MessagePack or alchemy-flux's JSON),
so the original router, this project's router and services built on either library can all call it.

Run as ``python -m alchemy_services.hello_world``; its only setting is ``AMQP_URI``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from alchemy_services import broker
from alchemy_services.protocol import (
    CONTENT_ENCODING,
    REQUEST_TYPES,
    RESOURCES_EXCHANGE,
    RESPONSE_TYPE,
    Dialect,
    ProtocolError,
    binding_key,
    decode,
    dialect_of,
    encode,
    error_body,
    new_id,
)
from alchemy_services.settings import SettingsError, service_settings

log = logging.getLogger("alchemy_services.hello_world")

SERVICE_QUEUE = "hello_world"
RESOURCE_PATHS = ("/v1/hello",)
PREFETCH = 20
"""Requests an instance holds unacknowledged at once (the libraries' default)."""
HELLO = {"hello": "world!"}
JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def answer(request: Mapping[str, Any], dialect: Dialect) -> dict[str, Any]:
    """The reply payload for one request: the greeting, or a 404/405 error document.

    The body takes each library's own shape: a map for alchemy-ether callers, a JSON string for
    alchemy-flux callers (a Rack body is a string).
    """
    path = str(request.get("path") or "/").rstrip("/")
    verb = str(request.get("verb") or "GET").upper()
    headers = dict(JSON_HEADERS)
    interaction = (request.get("headers") or {}).get("x-interaction-id")
    if interaction:
        headers["x-interaction-id"] = str(interaction)
    if path != "/v1/hello":
        status, body = 404, error_body(code="platform.not_found", message="Not found", reference=path or "/")
    elif verb not in ("GET", "HEAD"):
        status, body = 405, error_body(code="platform.method_not_allowed", message=f"{verb} is not allowed")
        headers["Allow"] = "GET, HEAD"
    else:
        status, body = 200, dict(HELLO)
    if dialect is Dialect.JSON:
        return {"status_code": status, "headers": headers, "body": encode(body, Dialect.JSON).decode()}
    return {"status_code": status, "headers": headers, "body": body}


class HelloWorld:
    """The consumer of the ``hello_world`` queue; counts requests in hand so a stop can wait for them."""

    def __init__(self) -> None:
        self._channel: AbstractChannel | None = None
        self._in_hand = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def open(self, connection: AbstractRobustConnection) -> aio_pika.abc.AbstractQueue:
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=PREFETCH)
        exchange = await channel.declare_exchange(RESOURCES_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        # Durable, as alchemy-flux declares service queues: RabbitMQ 4 deprecates transient shared queues.
        queue = await channel.declare_queue(SERVICE_QUEUE, durable=True)
        for path in RESOURCE_PATHS:
            await queue.bind(exchange, routing_key=binding_key(path))
        self._channel = channel
        return queue

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self._in_hand += 1
        self._idle.clear()
        try:
            await self._handle(message)
        finally:
            self._in_hand -= 1
            if self._in_hand == 0:
                self._idle.set()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        if message.type not in REQUEST_TYPES:
            # The libraries' one-way events (logging, metering) need no answer.
            log.info("ignored a message of type %r", message.type)
            await message.ack()
            return
        dialect = dialect_of(content_type=message.content_type, body=message.body)
        try:
            request = decode(message.body, dialect) if message.body else {}
        except ProtocolError as error:
            # Requeueing it would only hand the same bytes to the next instance.
            log.warning("dropped request %s: %s", message.message_id, error)
            await message.reject(requeue=False)
            return
        if message.reply_to and self._channel is not None:
            reply = aio_pika.Message(
                encode(answer(request, dialect), dialect),
                type=RESPONSE_TYPE,
                correlation_id=message.message_id,
                message_id=new_id(),
                content_type=dialect.content_type,
                content_encoding=CONTENT_ENCODING,
            )
            await self._channel.default_exchange.publish(reply, routing_key=message.reply_to)
        await message.ack()


async def serve(*, amqp_uri: str) -> int:
    """Consume until SIGTERM, then stop taking requests, answer those in hand and close."""
    stop = broker.stop_on_signals()
    connection = await broker.connect(uri=amqp_uri, name="hello_world", stop=stop)
    if connection is None:
        return 0
    service = HelloWorld()
    try:
        queue = await service.open(connection)
        consumer_tag = await queue.consume(service.on_message)
    except aio_pika.exceptions.AMQPError as error:
        log.error("cannot set up on the broker: %r", error)
        await connection.close()
        return 1
    log.info("consuming queue %s", SERVICE_QUEUE)
    await stop.wait()
    log.info("stopping: no new requests; answering those in hand")
    if broker.is_up(connection):
        await queue.cancel(consumer_tag)
    await service.wait_idle()
    await connection.close()
    log.info("stopped")
    return 0


async def main() -> int:
    try:
        settings = service_settings(os.environ)
    except SettingsError as error:
        print(f"hello_world: {error}", file=sys.stderr)
        return 2
    return await serve(amqp_uri=settings.amqp_uri)


if __name__ == "__main__":
    sys.exit(broker.run(main))
