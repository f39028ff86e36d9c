"""Benchmarks GET /v1/hello through router -> RabbitMQ -> hello_world, beside the bare broker round trip.

It starts what the tests start (alchemy_tools/local_broker.py): Debian's rabbitmq-server on 127.0.0.1 with
free ports, the router and two hello_world processes as their image runs them. Then, for each number of
concurrent clients, it sends requests for a fixed time and reports requests per second, the median and
99th percentile latency, and errors:

- ``router``: HTTP GET /v1/hello to the router, which publishes to the broker and waits for hello_world.
- ``broker``: the floor. The same publish and reply over AMQP, made by the router's own requester code in
  this process (mandatory publish on resources.exchange, reply on an exclusive queue), without HTTP.

Target: the router's p50 at most twice the broker round trip's, and no errors at 64 clients. Everything
runs on this machine: the load generator shares its cores with the broker and the services.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from alchemy_services.protocol import Dialect  # noqa: E402
from alchemy_services.router import Requester  # noqa: E402
from alchemy_tools.local_broker import (  # noqa: E402
    HELLO_WORLD_READY,
    ROUTER_READY,
    LocalBroker,
    free_port,
    hello_world_process,
    router_process,
)

P50_RATIO_TARGET = 2.0
TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Result:
    mode: str
    clients: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


async def load(*, mode: str, clients: int, seconds: float, one: Callable[[], Awaitable[bool]]) -> Result:
    """``clients`` loops calling ``one`` back to back until ``seconds`` have passed."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                ok = await one()
            except (aiohttp.ClientError, TimeoutError, aio_pika.exceptions.AMQPError):
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += 0 if ok else 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.monotonic() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return Result(mode, clients, len(latencies), elapsed, quantiles[49] * 1000, quantiles[98] * 1000, errors)


async def bench(*, broker: LocalBroker, router_port: int, clients: list[int], seconds: float) -> list[Result]:
    results: list[Result] = []
    url = f"http://127.0.0.1:{router_port}/v1/hello"
    connection = await aio_pika.connect_robust(broker.uri("router"))
    requester = Requester(dialect=Dialect.MSGPACK, timeout_seconds=TIMEOUT_SECONDS)
    await requester.open(connection)
    # The fields the router sends for GET /v1/hello (router.request_payload), made once: no HTTP at all.
    payload = {
        "scheme": "http",
        "host": "127.0.0.1",
        "port": router_port,
        "path": "/v1/hello",
        "query": {},
        "verb": "GET",
        "headers": {"host": f"127.0.0.1:{router_port}", "x-interaction-id": "0" * 32},
        "body": "",
        "session": None,
        "session_id": None,
    }

    async def amqp_once() -> bool:
        response = await requester.request(routing_key="v1.hello", payload=payload)
        return response.status == 200

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as http:

        async def http_once() -> bool:
            async with http.get(url) as response:
                await response.read()
                return response.status == 200

        for count in clients:
            # A short warm-up, so connection setup is not measured.
            await load(mode="warm-up", clients=count, seconds=0.5, one=amqp_once)
            results.append(await load(mode="broker", clients=count, seconds=seconds, one=amqp_once))
            await load(mode="warm-up", clients=count, seconds=0.5, one=http_once)
            results.append(await load(mode="router", clients=count, seconds=seconds, one=http_once))
    await connection.close()
    return results


def table(results: list[Result]) -> str:
    lines = [
        "| path | clients | requests | req/s | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.mode} | {r.clients} | {r.requests} | {r.per_second:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.errors} |"
        )
    return "\n".join(lines)


def verdicts(results: list[Result]) -> list[str]:
    floor = {r.clients: r for r in results if r.mode == "broker"}
    lines = []
    for r in results:
        if r.mode != "router":
            continue
        ratio = r.p50_ms / floor[r.clients].p50_ms
        ok = ratio <= P50_RATIO_TARGET and (r.clients < 64 or r.errors == 0)
        lines.append(
            f"{r.clients:>3} clients: router p50 = {ratio:.2f} x broker round trip "
            f"(target <= {P50_RATIO_TARGET}), errors {r.errors}: {'met' if ok else 'MISSED'}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each run (default 10)")
    parser.add_argument("--clients", default="1,16,64", help="concurrent clients per run (default 1,16,64)")
    parser.add_argument("--hello-worlds", type=int, default=2, help="hello_world processes (default 2)")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="bench-services-") as workdir:
        base = Path(workdir)
        broker = LocalBroker(workdir=base / "rabbitmq")
        (base / "rabbitmq").mkdir()
        processes = []
        try:
            broker.start()
            port = free_port()
            router = router_process(broker, port=port, log_path=base / "router.log", timeout_seconds=TIMEOUT_SECONDS)
            processes.append(router.start())
            for index in range(args.hello_worlds):
                processes.append(hello_world_process(broker, log_path=base / f"hello_world-{index}.log").start())
            router.wait_for_log(ROUTER_READY, timeout=60)
            for process in processes[1:]:
                process.wait_for_log(HELLO_WORLD_READY, timeout=60)
            print(
                f"RabbitMQ {broker.version} on 127.0.0.1; router and {args.hello_worlds} hello_world processes; "
                f"{args.seconds:.0f} s per run; load average at the start {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            results = asyncio.run(bench(broker=broker, router_port=port, clients=clients, seconds=args.seconds))
        finally:
            for process in processes:
                process.stop()
            broker.close()
    # Everything shares this machine's cores: the load before and after says how much else was running.
    print(table(results))
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    for line in verdicts(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
