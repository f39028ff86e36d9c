"""The router and hello_world against a real RabbitMQ: HTTP in, AMQP through, HTTP out.

Each process runs as in its image (``python -m alchemy_services.<name>``, settings by environment) and logs
in as its own least-privilege user, so every test also proves the permission regexes of docs/protocol.md.
Tests that stop or kill a process put the stack back as they found it.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import msgpack
import pytest

from alchemy_tools.local_broker import ROUTER_READY, LocalBroker, free_port, router_process
from tests.services.conftest import (
    STACK_TIMEOUT_SECONDS,
    VERSION_PROPERTY,
    LoopThread,
    Reply,
    Stack,
    http,
    wait_for_status,
)
from tests.services.libraries import LibraryService, ether_request, flux_request

pytestmark = [pytest.mark.broker, pytest.mark.xdist_group("rabbitmq")]

ERROR_ID = re.compile(r"^[0-9a-f]{32}$")
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def error_of(reply: Reply) -> dict[str, Any]:
    document = reply.json()
    assert (document["kind"], bool(ERROR_ID.match(document["id"])), bool(CREATED_AT.match(document["created_at"]))) == (
        "Errors",
        True,
        True,
    ), document
    (error,) = document["errors"]
    return dict(error)


def test_the_broker_is_debians_rabbitmq_3(broker: LocalBroker, record_property: Any) -> None:
    record_property(VERSION_PROPERTY, broker.version)
    assert re.fullmatch(r"3\.\d+\.\d+", broker.version), broker.version


async def declare_queue_as(uri: str, queue: str) -> None:
    connection = await aio_pika.connect(uri)
    try:
        channel = await connection.channel()
        await channel.declare_queue(queue, auto_delete=True)
    finally:
        await connection.close()


def test_a_service_user_cannot_declare_a_queue_in_another_services_name(
    broker: LocalBroker, loop_thread: LoopThread
) -> None:
    refused = r"access to queue 'router\.stolen' in vhost '/' refused for user 'hello_world'"
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match=refused):
        loop_thread.run(declare_queue_as(broker.uri("hello_world"), "router.stolen"))


# --- through the router to hello_world ---------------------------------------------------------------


def test_get_v1_hello_answers_hello_world(stack: Stack) -> None:
    reply = http(stack.port, "/v1/hello")
    assert (reply.status, reply.json(), reply.headers["Content-Type"]) == (
        200,
        {"hello": "world!"},
        "application/json; charset=utf-8",
    )


def test_an_unknown_path_is_404_platform_not_found(stack: Stack) -> None:
    reply = http(stack.port, "/v9/nothing/here")
    assert (reply.status, error_of(reply)) == (
        404,
        {"code": "platform.not_found", "message": "Router: Not found", "reference": "/v9/nothing/here"},
    )


def test_health_is_200_while_the_broker_connection_is_up(stack: Stack) -> None:
    reply = http(stack.port, "/_alchemy/health")
    assert (reply.status, reply.json()) == (200, {"status": "ok", "broker": "connected"})


def test_health_is_503_while_the_router_has_no_broker(tmp_path: Path, broker: LocalBroker) -> None:
    nowhere = free_port()  # nothing listens there: the router keeps trying to connect
    router = router_process(broker, port=free_port(), log_path=tmp_path / "router.log", timeout_seconds=1)
    router.environment["AMQP_URI"] = f"amqp://router:x@127.0.0.1:{nowhere}/%2F"
    router.start()
    try:
        reply = wait_for_status(int(router.environment["ROUTER_PORT"]), "/_alchemy/health", 503, timeout=15)
        assert reply.json() == {"status": "unavailable", "broker": "disconnected"}
    finally:
        router.stop()


def test_with_every_hello_world_stopped_the_router_answers_408_after_its_timeout(stack: Stack) -> None:
    running = stack.running_hello_worlds()
    try:
        # SIGTERM: each finishes what it holds, leaves the queue (which stays bound) and exits 0.
        assert [process.stop() for process in running] == [0] * len(running)
        reply = http(stack.port, "/v1/hello")
        timeout_ms = round(STACK_TIMEOUT_SECONDS * 1000)
        assert (reply.status, error_of(reply)) == (
            408,
            {"code": "platform.timeout", "message": f"Router: Timeout after {timeout_ms}ms"},
        )
    finally:
        stack.start_hello_worlds(2)


def test_a_hello_world_killed_mid_burst_leaves_every_request_answered_or_timed_out(stack: Stack) -> None:
    victim = stack.running_hello_worlds()[0]
    answered = threading.Semaphore(0)

    def one(_: int) -> int:
        status = http(stack.port, "/v1/hello", timeout=STACK_TIMEOUT_SECONDS + 10).status
        answered.release()
        return status

    try:
        with ThreadPoolExecutor(max_workers=32) as pool:
            statuses = pool.map(one, range(200))
            for _ in range(30):  # requests are flowing: kill one instance while it holds some
                assert answered.acquire(timeout=15)
            victim.signal(signal.SIGKILL)
            results = list(statuses)
        assert (set(results) <= {200, 408}, results.count(200) > 0) == (True, True), results
    finally:
        victim.stop()
        stack.start_hello_worlds(1)


def test_after_a_broker_restart_router_and_hello_world_serve_again_without_restarting(
    stack: Stack, broker: LocalBroker
) -> None:
    processes = [stack.router, *stack.running_hello_worlds()]
    broker.restart()
    wait_for_status(stack.port, "/_alchemy/health", 200, timeout=30)
    reply = wait_for_status(stack.port, "/v1/hello", 200, timeout=30)
    assert (reply.json(), [p.process.poll() for p in processes if p and p.process]) == (
        {"hello": "world!"},
        [None] * len(processes),
    )


# --- wire compatibility: requests as the libraries build them, served by hello_world --------------------


async def library_round_trip(uri: str, message: aio_pika.Message, *, exchange: str, routing_key: str) -> Any:
    """Publish one request and return the reply message (consumed from a queue of the caller's)."""
    connection = await aio_pika.connect(uri)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        message.reply_to = queue.name
        target = channel.default_exchange if exchange == "" else await channel.get_exchange(exchange, ensure=False)
        await target.publish(message, routing_key=routing_key, mandatory=True)
        async with queue.iterator(timeout=10) as replies:
            async for reply in replies:
                await reply.ack()
                return reply
    finally:
        await connection.close()


def test_hello_world_answers_an_alchemy_ether_request_in_msgpack(
    stack: Stack, broker: LocalBroker, loop_thread: LoopThread
) -> None:
    request = ether_request("/v1/hello", reply_to="")
    reply = loop_thread.run(
        library_round_trip(broker.admin_uri, request, exchange="resources.exchange", routing_key="v1.hello")
    )
    payload = msgpack.unpackb(reply.body)
    assert (reply.type, reply.correlation_id, payload["status_code"], payload["body"]) == (
        "http_response",
        request.message_id,
        200,
        {"hello": "world!"},
    )


def test_hello_world_answers_an_alchemy_flux_request_in_json(
    stack: Stack, broker: LocalBroker, loop_thread: LoopThread
) -> None:
    request = flux_request("/v1/hello", reply_to="")
    reply = loop_thread.run(library_round_trip(broker.admin_uri, request, exchange="", routing_key="hello_world"))
    payload = json.loads(reply.body)
    assert (reply.type, reply.correlation_id, payload["status_code"], json.loads(payload["body"])) == (
        "http_response",
        request.message_id,
        200,
        {"hello": "world!"},
    )


# --- wire compatibility: services written with the libraries, reached through the router ----------------


@pytest.fixture
def library_service(broker: LocalBroker, loop_thread: LoopThread) -> Iterator[list[LibraryService]]:
    started: list[LibraryService] = []
    yield started
    for service in started:
        loop_thread.run(service.stop())


def start_library_service(
    loop_thread: LoopThread, broker: LocalBroker, registry: list[LibraryService], service: LibraryService
) -> LibraryService:
    async def create() -> LibraryService:
        # Made on the loop: its asyncio events belong to it.
        made = LibraryService(
            library=service.library,
            queue_name=service.queue_name,
            binding_key=service.binding_key,
            respond=service.respond,
        )
        await made.start(broker.admin_uri)
        return made

    made = loop_thread.run(create())
    registry.append(made)
    return made


def ether_answer(_: dict[str, Any]) -> dict[str, Any]:
    return {"status_code": 201, "headers": {"x-made-by": "ether"}, "body": {"made_by": "ether"}}


def flux_answer(_: dict[str, Any]) -> dict[str, Any]:
    return {"status_code": 202, "headers": {"Content-Type": "application/json"}, "body": '{"made_by":"flux"}'}


def test_the_router_reaches_an_alchemy_ether_service_and_decodes_its_msgpack_reply(
    stack: Stack, broker: LocalBroker, loop_thread: LoopThread, library_service: list[LibraryService]
) -> None:
    template = LibraryService(
        library="ether", queue_name="ether.things", binding_key="v1.things.#", respond=ether_answer
    )
    start_library_service(loop_thread, broker, library_service, template)
    reply = http(stack.port, "/v1/things/7")
    assert (reply.status, reply.json(), reply.headers["x-made-by"]) == (201, {"made_by": "ether"}, "ether")


def test_the_router_passes_method_path_query_headers_body_and_one_interaction_id(
    stack: Stack, broker: LocalBroker, loop_thread: LoopThread, library_service: list[LibraryService]
) -> None:
    template = LibraryService(library="ether", queue_name="ether.echo", binding_key="v1.echo.#", respond=ether_answer)
    service = start_library_service(loop_thread, broker, library_service, template)
    http(
        stack.port,
        "/v1/echo/1?page=2&tag=a&tag=b",
        method="POST",
        body=b'{"name":"alice"}',
        headers={"Content-Type": "application/json", "X_Interaction_ID": "caller-chosen", "X-Custom": "kept"},
    )
    (received,) = service.received
    payload = received.payload
    assert (
        received.properties["type"],
        received.properties["content_type"],
        payload["verb"],
        payload["path"],
        payload["query"],
        payload["body"],
        payload["headers"]["x-custom"],
        payload["headers"]["x-interaction-id"],
        [name for name in payload["headers"] if "interaction" in name],
    ) == (
        "http_request",
        "application/octet-stream",
        "POST",
        "/v1/echo/1",
        {"page": "2", "tag": ["a", "b"]},
        '{"name":"alice"}',
        "kept",
        "caller-chosen",
        ["x-interaction-id"],
    )


def test_the_router_reaches_an_alchemy_flux_service_in_the_json_dialect(
    broker: LocalBroker, loop_thread: LoopThread, library_service: list[LibraryService], tmp_path: Path
) -> None:
    template = LibraryService(library="flux", queue_name="flux.things", binding_key="v1.flux.#", respond=flux_answer)
    service = start_library_service(loop_thread, broker, library_service, template)
    port = free_port()
    router = router_process(broker, port=port, log_path=tmp_path / "router.log", timeout_seconds=2, dialect="json")
    router.start()
    try:
        router.wait_for_log(ROUTER_READY, timeout=30)
        reply = http(port, "/v1/flux/9")
    finally:
        router.stop()
    (received,) = service.received
    assert (reply.status, reply.json(), received.properties["type"], received.properties["content_type"]) == (
        202,
        {"made_by": "flux"},
        "http",
        "application/json",
    )


def test_sigterm_lets_the_router_answer_the_request_in_flight_then_exit_0(
    broker: LocalBroker, loop_thread: LoopThread, library_service: list[LibraryService], tmp_path: Path
) -> None:
    template = LibraryService(library="ether", queue_name="ether.slow", binding_key="v1.slow.#", respond=ether_answer)
    service = start_library_service(loop_thread, broker, library_service, template)
    service.release = loop_thread.run(make_event())
    port = free_port()
    router = router_process(broker, port=port, log_path=tmp_path / "router.log", timeout_seconds=10)
    router.start()
    try:
        router.wait_for_log(ROUTER_READY, timeout=30)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(http, port, "/v1/slow")
            loop_thread.run(service.arrived.wait(), timeout=15)
            router.signal(signal.SIGTERM)
            router.wait_for_log("stopping: 1 request(s) in flight", timeout=15)
            loop_thread.loop.call_soon_threadsafe(service.release.set)
            reply = pending.result(timeout=15)
        assert ((reply.status, reply.json()), router.wait(timeout=15)) == ((201, {"made_by": "ether"}), 0)
    finally:
        router.stop()


async def make_event() -> asyncio.Event:
    return asyncio.Event()
