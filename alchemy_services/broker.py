"""The services' broker connection: one robust AMQP connection that outlives broker restarts.

aio-pika's robust connection reconnects by itself and then redeclares what was declared on it (the
exchange, the queues, their bindings and consumers), so a service needs no restart of its own when its
broker comes back. Only the first connection is ours to retry: a node may start its services before its
broker accepts logins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractRobustConnection

log = logging.getLogger(__name__)

RECONNECT_INTERVAL_SECONDS = 1.0
"""Between connection attempts: short, as every request fails while the broker is away."""
CONNECT_TIMEOUT_SECONDS = 10.0


async def connect(*, uri: str, name: str, stop: asyncio.Event) -> AbstractRobustConnection | None:
    """Connect, retrying until the broker accepts us; None when told to stop first."""
    while not stop.is_set():
        try:
            return await aio_pika.connect_robust(
                uri,
                reconnect_interval=RECONNECT_INTERVAL_SECONDS,
                timeout=CONNECT_TIMEOUT_SECONDS,
                client_properties={"connection_name": name},
            )
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as error:
            log.warning("broker not reachable (%s); retrying in %.0f s", error, RECONNECT_INTERVAL_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=RECONNECT_INTERVAL_SECONDS)
    return None


def is_up(connection: AbstractRobustConnection | None) -> bool:
    """Whether the connection is established right now (False while it reconnects)."""
    return connection is not None and not connection.is_closed and connection.connected.is_set()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM (docker stop) or SIGINT: the signal to finish in-flight work and exit."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def run(main: Callable[[], Awaitable[int]]) -> int:
    """Run a service's main coroutine with the services' logging; returns its exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # aiormq logs every failed reconnection attempt with a traceback; ours say it once per attempt.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)

    async def wrapped() -> int:
        return await main()

    return asyncio.run(wrapped())
