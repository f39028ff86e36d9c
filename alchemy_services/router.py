"""The Alchemy router: every HTTP request becomes a request to a resource over RabbitMQ.

A request for ``/v1/hello/1`` is published to ``resources.exchange`` with the routing key
``v1.hello.1``, mandatory, with this router's response queue as ``reply_to``; the service whose queue is
bound to ``v1.hello.#`` answers on that queue and the reply becomes the HTTP response. Nothing bound:
the broker returns the message and the router answers 404 ``platform.not_found`` (at once, unless the
resource answered in the last minutes: its queue may be being declared again, see ``REDECLARE_GRACE_SECONDS``);
no reply in time: 408
``platform.timeout``; anything unexpected: 500 ``platform.fault``. ``GET /_alchemy/health`` says whether
the broker connection is up (for the load balancer and the node's readiness).

Run as ``python -m alchemy_services.router``; settings in alchemy_services/settings.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web

from alchemy_services import broker
from alchemy_services.protocol import (
    CONTENT_ENCODING,
    MAX_ROUTING_KEY_BYTES,
    RESOURCES_EXCHANGE,
    RESPONSE_TYPE,
    Dialect,
    HttpResponse,
    ProtocolError,
    decode,
    dialect_of,
    encode,
    error_body,
    http_response,
    new_id,
    path_to_routing_key,
)
from alchemy_services.settings import RouterSettings, SettingsError, router_settings

log = logging.getLogger("alchemy_services.router")

HEALTH_PATH = "/_alchemy/health"
INTERACTION_ID = "x-interaction-id"
_INTERACTION_ID_NAMES = re.compile(r"^x[-_]interaction[-_]id$", re.IGNORECASE)
SHUTDOWN_GRACE_SECONDS = 5.0
"""Beyond the request timeout, how long a stopping router waits for in-flight requests."""
REDECLARE_GRACE_SECONDS = 3.0
"""How long a request to a resource that answered lately is published again while the broker returns it.

A service's queue lives on one broker; when that node leaves the cluster the queue goes with it and the
service's instances on the other nodes declare it again (hello_world's QueueKeeper: 0.1 to 1 s measured).
Requests in that gap are returned unroutable, or nacked while the broker still routes to the queue whose
process has stopped. A resource that answered within ``SERVED_MEMORY_SECONDS`` is published again for this long
before the 404 (or the 500 of a nack); a path that never answered gets its 404 at once."""
REDECLARE_RETRY_SECONDS = 0.2
SERVED_MEMORY_SECONDS = 600.0


class NotDeliveredError(Exception):
    """The broker returned the request: no queue is bound to its routing key."""


class BadReplyError(Exception):
    """A reply arrived for the request but is not an Alchemy HTTP response."""


class Requester:
    """Publishes requests and matches replies to them, on one channel with one exclusive response queue."""

    def __init__(self, *, dialect: Dialect, timeout_seconds: float) -> None:
        self.dialect = dialect
        self.timeout_seconds = timeout_seconds
        self.response_queue = f"router.response.{new_id()}"
        self._pending: dict[str, asyncio.Future[HttpResponse]] = {}
        self._exchange: AbstractExchange | None = None
        self._served: dict[str, float] = {}
        """Resource (the routing key's first two words, ``v1.hello``) -> when it last answered (loop time)."""

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def open(self, connection: AbstractRobustConnection) -> None:
        """Declare what the router uses; the robust connection declares it again after a reconnection."""
        # With publisher confirms the client library matches a returned (unroutable) request to its
        # publish, which then raises PublishError; the broker's ack overlaps the service's work.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await channel.declare_exchange(RESOURCES_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        # Exclusive and auto-delete: the queue lives exactly as long as this router's connection.
        queue = await channel.declare_queue(self.response_queue, exclusive=True, auto_delete=True)
        await queue.consume(self._on_reply, no_ack=True)

    async def request(self, *, routing_key: str, payload: dict[str, Any]) -> HttpResponse:
        """Send one request and wait for its reply; NotDeliveredError, TimeoutError or BadReplyError."""
        if self._exchange is None:
            raise ConnectionError("the router has not connected to its broker yet")
        message_id = new_id()
        reply: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = reply
        message = aio_pika.Message(
            encode(payload, self.dialect),
            content_type=self.dialect.content_type,
            content_encoding=CONTENT_ENCODING,
            type=self.dialect.request_type,
            message_id=message_id,
            reply_to=self.response_queue,
            # The request dies in its queue when the router stops waiting: no service works on it late.
            expiration=self.timeout_seconds,
        )
        loop = asyncio.get_running_loop()
        resource = ".".join(routing_key.split(".")[:2])
        now = loop.time()
        served = self._served.get(resource)
        served_lately = served is not None and now - served <= SERVED_MEMORY_SECONDS
        grace_until = now + (REDECLARE_GRACE_SECONDS if served_lately else 0.0)
        try:
            async with asyncio.timeout(self.timeout_seconds):
                while True:
                    try:
                        await self._exchange.publish(message, routing_key=routing_key, mandatory=True)
                        break
                    except aio_pika.exceptions.PublishError as returned:
                        if loop.time() >= grace_until:
                            raise NotDeliveredError(routing_key) from returned
                    except aio_pika.exceptions.DeliveryError:
                        # Nacked: routed to a queue whose process is gone (its node is leaving) and that is
                        # not declared again yet. After the grace it is the unexpected error it always was.
                        if loop.time() >= grace_until:
                            raise
                    await asyncio.sleep(REDECLARE_RETRY_SECONDS)
                response = await reply
                self._served[resource] = loop.time()
                return response
        finally:
            del self._pending[message_id]

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        pending = self._pending.get(message.correlation_id or "")
        if pending is None or pending.done():
            log.warning("reply to no waiting request (correlation_id %s): dropped", message.correlation_id)
            return
        if message.type != RESPONSE_TYPE:
            pending.set_exception(BadReplyError(f"reply of type {message.type!r}, not {RESPONSE_TYPE!r}"))
            return
        try:
            dialect = dialect_of(content_type=message.content_type, body=message.body)
            pending.set_result(http_response(decode(message.body, dialect)))
        except ProtocolError as error:
            pending.set_exception(BadReplyError(str(error)))


def request_payload(request: web.Request, body: bytes) -> dict[str, Any]:
    """The Alchemy request for an HTTP request; its ``x-interaction-id`` is the caller's or a new one.

    Headers go through with lower-case names (as Node gives them); any spelling of the interaction id
    header (``X-Interaction-Id``, ``x_interaction_id``...) is folded into one ``x-interaction-id``.
    """
    headers: dict[str, str] = {}
    interaction = ""
    for name, value in request.headers.items():
        lower = name.lower()
        if _INTERACTION_ID_NAMES.match(lower):
            interaction = interaction or value
            continue
        headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
    headers[INTERACTION_ID] = interaction or new_id()
    query: dict[str, str | list[str]] = {}
    for key in request.query:
        values = request.query.getall(key)
        query[key] = values[0] if len(values) == 1 else list(values)
    return {
        "scheme": request.scheme,
        "host": request.url.host or "",
        "port": request.url.port or 80,
        "path": request.path,
        "query": query,
        "verb": request.method,
        "headers": headers,
        "body": body.decode(errors="replace"),
        "session": None,
        "session_id": None,
    }


def json_response(status: int, document: dict[str, Any]) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(document, separators=(",", ":")).encode(),
        content_type="application/json",
        charset="utf-8",
    )


class Router:
    """The HTTP side: the health endpoint, and every other path routed to a resource."""

    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.requester = Requester(dialect=settings.request_dialect, timeout_seconds=settings.timeout_seconds)
        self.connection: AbstractRobustConnection | None = None
        self.ready = False
        self.app = web.Application(client_max_size=16 * 1024 * 1024)
        self.app.router.add_get(HEALTH_PATH, self.health, allow_head=True)
        self.app.router.add_route("*", "/{path:.*}", self.route)

    async def health(self, _request: web.Request) -> web.Response:
        if self.ready and broker.is_up(self.connection):
            return json_response(200, {"status": "ok", "broker": "connected"})
        return json_response(503, {"status": "unavailable", "broker": "disconnected"})

    async def route(self, request: web.Request) -> web.Response:
        try:
            return await self._route(request)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            return json_response(500, error_body(code="platform.fault", message="Router: Unknown Error"))

    async def _route(self, request: web.Request) -> web.Response:
        payload = request_payload(request, await request.read())
        routing_key = path_to_routing_key(request.path)
        not_found = json_response(
            404, error_body(code="platform.not_found", message="Router: Not found", reference=request.path)
        )
        if len(routing_key.encode()) > MAX_ROUTING_KEY_BYTES:
            return not_found
        try:
            response = await self.requester.request(routing_key=routing_key, payload=payload)
        except NotDeliveredError:
            return not_found
        except TimeoutError:
            timeout_ms = round(self.settings.timeout_seconds * 1000)
            return json_response(
                408, error_body(code="platform.timeout", message=f"Router: Timeout after {timeout_ms}ms")
            )
        return web.Response(status=response.status, headers=response.headers, body=response.body)


async def serve(settings: RouterSettings) -> int:
    """Listen, connect, serve until SIGTERM, then finish in-flight requests and close."""
    stop = broker.stop_on_signals()
    router = Router(settings)
    runner = web.AppRunner(
        router.app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.timeout_seconds + SHUTDOWN_GRACE_SECONDS,
    )
    await runner.setup()
    # Listening before the broker is up: the health endpoint then answers 503 rather than nothing.
    await web.TCPSite(runner, settings.host, settings.port).start()
    log.info("listening on %s:%d", settings.host, settings.port)
    status = 0
    router.connection = await broker.connect(uri=settings.amqp_uri, name="router", stop=stop)
    if router.connection is not None:
        try:
            await router.requester.open(router.connection)
            router.ready = True
            log.info("connected to the broker; replies on %s", router.requester.response_queue)
            await stop.wait()
        except aio_pika.exceptions.AMQPError as error:
            log.error("cannot set up on the broker: %r", error)
            status = 1
    log.info("stopping: %d request(s) in flight", router.requester.in_flight)
    # Stops listening, then waits for the requests in flight to be answered (or to time out).
    await runner.cleanup()
    if router.connection is not None:
        await router.connection.close()
    log.info("stopped")
    return status


async def main() -> int:
    try:
        settings = router_settings(os.environ)
    except SettingsError as error:
        print(f"router: {error}", file=sys.stderr)
        return 2
    return await serve(settings)


if __name__ == "__main__":
    sys.exit(broker.run(main))
