"""Fixtures of the services' end-to-end tests: a real broker, the router and hello_world as processes.

The broker is Debian's rabbitmq-server on 127.0.0.1 with free ports (alchemy_tools/local_broker.py),
one per test session; its version is printed in the summary. It is never skipped: when it cannot start,
the tests fail with its log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from alchemy_tools.local_broker import (
    HELLO_WORLD_READY,
    ROUTER_READY,
    LocalBroker,
    ServiceProcess,
    free_port,
    hello_world_process,
    router_process,
)

T = TypeVar("T")
STACK_TIMEOUT_SECONDS = 3.0
"""The stack router's ROUTER_TIMEOUT_SECONDS: short, so the 408 case ends quickly, yet far above a round trip."""
READY_SECONDS = 30.0
VERSION_PROPERTY = "rabbitmq_version"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the broker's version, recorded by a test (reports reach the summary from xdist workers too)."""
    versions = {
        value
        for report in terminalreporter.stats.get("passed", [])
        for name, value in getattr(report, "user_properties", [])
        if name == VERSION_PROPERTY
    }
    for version in sorted(versions):
        terminalreporter.write_line(f"services tests: RabbitMQ {version} (Debian rabbitmq-server) on 127.0.0.1")


class LoopThread:
    """An event loop in a thread, for the tests' own AMQP clients and library-like services."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Runs ``coroutine`` in the background; the future gives its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    node = LocalBroker(workdir=tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    try:
        yield node
    finally:
        node.close()


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    port: int,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> Reply:
    """One HTTP request to 127.0.0.1:port; error statuses are replies too."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers.items()), error.read())


def wait_for_status(port: int, path: str, status: int, *, timeout: float) -> Reply:
    """Ask until the answer has ``status`` (an event seen from outside); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = http(port, path, timeout=5)
            if reply.status == status:
                return reply
        except OSError as error:
            reply = Reply(0, {}, repr(error).encode())
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never answered {status} in {timeout} s; last: {reply}")
        time.sleep(0.1)


@dataclass
class Stack:
    """The router and two hello_world instances, started as the image starts them."""

    broker: LocalBroker
    logs: Path
    port: int = field(default_factory=free_port)
    router: ServiceProcess | None = None
    hello_worlds: list[ServiceProcess] = field(default_factory=list)

    def start_router(self) -> None:
        self.router = router_process(
            self.broker, port=self.port, log_path=self.logs / "router.log", timeout_seconds=STACK_TIMEOUT_SECONDS
        ).start()
        self.router.wait_for_log(ROUTER_READY, timeout=READY_SECONDS)

    def start_hello_worlds(self, count: int = 2) -> None:
        for _ in range(count):
            index = len(self.hello_worlds)
            process = hello_world_process(self.broker, log_path=self.logs / f"hello_world-{index}.log").start()
            self.hello_worlds.append(process)
        for process in self.hello_worlds[-count:]:
            process.wait_for_log(HELLO_WORLD_READY, timeout=READY_SECONDS)

    def running_hello_worlds(self) -> list[ServiceProcess]:
        return [p for p in self.hello_worlds if p.process is not None and p.process.poll() is None]

    def stop(self) -> None:
        for process in [*self.hello_worlds, *([self.router] if self.router else [])]:
            process.stop()


@pytest.fixture(scope="module")
def stack(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(broker=broker, logs=tmp_path_factory.mktemp("services"))
    try:
        running.start_router()
        running.start_hello_worlds(2)
        yield running
    finally:
        running.stop()
