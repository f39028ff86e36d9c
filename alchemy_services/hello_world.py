"""hello_world: the platform's example service, ``GET /v1/hello`` -> 200 ``{"hello": "world!"}``.

Every instance consumes the one shared queue ``hello_world``, bound to ``resources.exchange`` with
``v1.hello.#``, so the broker spreads requests over however many run. A request is acknowledged only after
its reply is published: if an instance dies while it holds requests, the broker gives them to another.
Requests are answered in the dialect they came in (alchemy-ether's MessagePack or alchemy-flux's JSON),
so the original router, this project's router and services built on either library can all call it.

The queue lives on one broker node. When that node leaves the cluster the queue goes with it and the broker
cancels every consumer of it (basic.cancel); a redeclaration is refused (404) until the departed node is
forgotten. Each instance therefore watches its consumer (``QueueKeeper``): on a cancel, or when a periodic
check finds the queue gone or without consumers, it declares and binds the queue again and consumes again,
retrying with a bounded backoff for as long as the process runs.

Run as ``python -m alchemy_services.hello_world``; its only setting is ``AMQP_URI``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

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
RECOVERY_FIRST_DELAY_SECONDS = 0.5
"""Wait before the first look after a loss: the requests sent meanwhile get 404 from the router."""
RECOVERY_MAX_DELAY_SECONDS = 5.0
"""The backoff's ceiling while the broker refuses the queue (a departed node not yet forgotten)."""
RECOVERABLE = (aio_pika.exceptions.AMQPError, RuntimeError, TimeoutError, OSError)
"""What a lost queue or a refused declaration raises (a closed channel raises RuntimeError or AMQPError)."""
CHECK_INTERVAL_SECONDS = 5.0
"""Between checks that the queue exists and is consumed, for a loss that no basic.cancel announced."""


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

    async def open(self, connection: AbstractRobustConnection) -> tuple[AbstractChannel, AbstractQueue]:
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=PREFETCH)
        exchange = await channel.declare_exchange(RESOURCES_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        # Durable, as alchemy-flux declares service queues: RabbitMQ 4 deprecates transient shared queues.
        queue = await channel.declare_queue(SERVICE_QUEUE, durable=True)
        for path in RESOURCE_PATHS:
            await queue.bind(exchange, routing_key=binding_key(path))
        self._channel = channel
        return channel, queue

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


class QueueKeeper:
    """Keeps one consumer of ``hello_world`` per instance, whatever becomes of the queue on the broker.

    aio-pika reconnects after a broker restart and restores what was declared; a queue deleted under a live
    connection is a different loss: the broker cancels the consumer and the connection stays up. The keeper
    notices the cancel (or, failing that, a check finds the queue missing or unconsumed) and brings the
    queue, its bindings and the consumer back, declaring on a channel of its own so that a refusal closes
    only that channel.
    """

    def __init__(
        self,
        *,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        queue: AbstractQueue,
        consumer_tag: str,
        on_message: Callable[[AbstractIncomingMessage], Awaitable[None]],
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._queue = queue
        self.consumer_tag = consumer_tag
        self._on_message = on_message
        self._lost = asyncio.Event()
        self._watched: aiormq.abc.AbstractChannel | None = None

    async def _on_cancel(self, frame: aiormq.spec.Basic.Cancel) -> None:
        if frame.consumer_tag == self.consumer_tag:
            self._lost.set()

    async def _underlay(self) -> aiormq.abc.AbstractChannel:
        """The live AMQP channel, watched for the broker's cancel (a new one after every reconnection)."""
        underlay = await self._channel.get_underlay_channel()
        if underlay is not self._watched:
            underlay.on_consumer_cancel_callbacks.add(self._on_cancel)
            self._watched = underlay
        return underlay

    async def _declare(self, underlay: aiormq.abc.AbstractChannel) -> int:
        """Declare and bind the queue on a throwaway channel; returns its consumer count."""
        limit = RECOVERY_MAX_DELAY_SECONDS
        probe = await underlay.connection.channel(publisher_confirms=False, timeout=limit)
        try:
            await probe.exchange_declare(RESOURCES_EXCHANGE, exchange_type="topic", durable=True, timeout=limit)
            declared = await probe.queue_declare(SERVICE_QUEUE, durable=True, timeout=limit)
            for path in RESOURCE_PATHS:
                await probe.queue_bind(SERVICE_QUEUE, RESOURCES_EXCHANGE, routing_key=binding_key(path), timeout=limit)
            return int(declared.consumer_count or 0)
        finally:
            if not probe.is_closed:
                await probe.close()

    async def _healthy(self) -> bool:
        """Whether the queue exists, is bound and is consumed by this instance (declaring it if gone)."""
        underlay = await self._underlay()
        consumers = await self._declare(underlay)
        return self.consumer_tag in cast(aiormq.Channel, underlay).consumers and consumers > 0

    async def _consume_again(self) -> None:
        # Cancelling first drops the tag from aio-pika's own restoration, so one consumer remains.
        with contextlib.suppress(*RECOVERABLE):
            await self._queue.cancel(self.consumer_tag, timeout=RECOVERY_MAX_DELAY_SECONDS)
        self.consumer_tag = await self._queue.consume(self._on_message, timeout=RECOVERY_MAX_DELAY_SECONDS)

    async def keep(self, *, stop: asyncio.Event) -> None:
        """Check every CHECK_INTERVAL_SECONDS, at once after a cancel; recover until healthy or stopped."""
        lost_at: float | None = None
        delay = RECOVERY_FIRST_DELAY_SECONDS
        with contextlib.suppress(*RECOVERABLE):
            await self._underlay()  # listen for the broker's cancel from the start
        while not stop.is_set():
            if lost_at is None:
                await _first_of(stop, self._lost, timeout=CHECK_INTERVAL_SECONDS)
                if self._lost.is_set():
                    lost_at = time.monotonic()
                    log.warning("the broker cancelled the consumer of queue %s; recovering", SERVICE_QUEUE)
                    await _first_of(stop, timeout=delay)
            else:
                await _first_of(stop, timeout=delay)
            if stop.is_set():
                return
            if not broker.is_up(self._connection):
                continue  # a reconnection is aio-pika's: it restores the queue and the consumer itself
            self._lost.clear()
            try:
                if not await self._healthy():
                    if lost_at is None:
                        lost_at = time.monotonic()
                        log.warning("queue %s has lost this instance's consumer; recovering", SERVICE_QUEUE)
                    await self._consume_again()
            except RECOVERABLE as error:
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning("queue %s is unavailable (%r); recovering", SERVICE_QUEUE, error)
                delay = min(delay * 2, RECOVERY_MAX_DELAY_SECONDS)
                continue
            if lost_at is not None:
                log.info("recovered queue %s in %.1f s", SERVICE_QUEUE, time.monotonic() - lost_at)
            lost_at, delay = None, RECOVERY_FIRST_DELAY_SECONDS


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout`` seconds."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def serve(*, amqp_uri: str) -> int:
    """Consume until SIGTERM, then stop taking requests, answer those in hand and close."""
    stop = broker.stop_on_signals()
    connection = await broker.connect(uri=amqp_uri, name="hello_world", stop=stop)
    if connection is None:
        return 0
    service = HelloWorld()
    try:
        channel, queue = await service.open(connection)
        consumer_tag = await queue.consume(service.on_message)
    except aio_pika.exceptions.AMQPError as error:
        log.error("cannot set up on the broker: %r", error)
        await connection.close()
        return 1
    log.info("consuming queue %s", SERVICE_QUEUE)
    keeper = QueueKeeper(
        connection=connection,
        channel=channel,
        queue=queue,
        consumer_tag=consumer_tag,
        on_message=service.on_message,
    )
    keeping = asyncio.create_task(keeper.keep(stop=stop))
    await stop.wait()
    await keeping
    log.info("stopping: no new requests; answering those in hand")
    if broker.is_up(connection):
        with contextlib.suppress(*RECOVERABLE):
            await queue.cancel(keeper.consumer_tag)
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
