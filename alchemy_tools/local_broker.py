"""A throwaway RabbitMQ broker on 127.0.0.1, for the services' tests and their benchmark.

It runs Debian's ``rabbitmq-server`` (installed by ``scripts/install-broker-test-deps.sh``) as a child
process, never the system broker: every port (AMQP, Erlang distribution, epmd) is chosen free at start,
the node name is unique, and all its state, logs and its Erlang cookie live in a directory of the caller's.
Its users and their permissions are loaded from a definitions file at boot, so no ``rabbitmqctl`` round
trip (each one boots an Erlang VM) is needed before the first connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aio_pika

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
"""Debian's start script that runs the node in the foreground (not the wrapper that switches user)."""

INSTALL_HINT = "run `make setup` (scripts/install-broker-test-deps.sh installs Debian's rabbitmq-server)"
SERVICES = ("router", "hello_world")
ADMIN = "alchemy-test-admin"
START_TIMEOUT_SECONDS = 120.0
"""Generous: a boot takes seconds on an idle machine, and much longer on one whose cores are all busy."""
STOP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class BrokerUser:
    """A broker user and its permissions on the vhost ``/`` (regular expressions, as RabbitMQ takes them)."""

    name: str
    password: str
    configure: str
    write: str
    read: str
    tags: str = ""


def service_user(service: str) -> BrokerUser:
    """The least-privilege user of one service, with the permissions the nodes give it.

    The regexes are the platform's contract (docs/protocol.md): a service may only declare and read
    queues named after itself, declare and use ``resources.exchange``, and publish to the default exchange.
    """
    own = rf"{service}(\..*)?"
    return BrokerUser(
        name=service,
        password=secrets.token_hex(16),
        configure=rf"^({own}|resources\.exchange)$",
        write=rf"^({own}|resources\.exchange|amq\.default)$",
        read=rf"^({own}|resources\.exchange)$",
    )


def admin_user() -> BrokerUser:
    """A user with every permission, for the tests' own fixtures (services written like other libraries)."""
    return BrokerUser(
        name=ADMIN, password=secrets.token_hex(16), configure=".*", write=".*", read=".*", tags="administrator"
    )


def free_port() -> int:
    """A TCP port nothing listens on right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64 of a 4-byte salt and SHA-256(salt + password)."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(users: Sequence[BrokerUser]) -> dict[str, object]:
    """The definitions document the broker imports at boot: the vhost ``/`` and the users."""
    return {
        "vhosts": [{"name": "/"}],
        "users": [
            {
                "name": user.name,
                "password_hash": password_hash(user.password),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": user.tags,
            }
            for user in users
        ],
        "permissions": [
            {"user": u.name, "vhost": "/", "configure": u.configure, "write": u.write, "read": u.read} for u in users
        ],
    }


class BrokerError(RuntimeError):
    """The broker could not be started or stopped; the message carries the end of its log."""


class LocalBroker:
    """One RabbitMQ node on 127.0.0.1 with the services' users and an administrator."""

    def __init__(self, *, workdir: Path) -> None:
        self.workdir = workdir
        self.users = {name: service_user(name) for name in SERVICES}
        self.admin = admin_user()
        self.node = f"alchemy-test-{uuid.uuid4().hex[:12]}@localhost"
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.version = ""
        self._server: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None

    def uri(self, user: str) -> str:
        """``AMQP_URI`` for one of the users (a service name, or the administrator's name)."""
        account = self.admin if user == ADMIN else self.users[user]
        return f"amqp://{account.name}:{account.password}@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def admin_uri(self) -> str:
        return self.uri(ADMIN)

    @property
    def log_file(self) -> Path:
        return self.workdir / "log" / "broker.log"

    def _environment(self) -> dict[str, str]:
        base = self.workdir
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            # The Erlang cookie is created in HOME; it must be ours, not root's or rabbitmq's.
            "HOME": str(base),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # Names resolve from /etc/hosts only: with no DNS server reachable, each lookup the node makes
            # at boot would otherwise wait for a resolver timeout.
            "ERL_INETRC": str(base / "inetrc"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # No busy-waiting schedulers: the node shares its cores with the services and the tests.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                "-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none"
            ),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.config"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_LOGS": str(self.log_file),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        }

    def _write_config(self) -> None:
        base = self.workdir
        (base / "log").mkdir(parents=True, exist_ok=True)
        (base / "mnesia").mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq-env.conf").write_text("")
        (base / "enabled_plugins").write_text("[].\n")
        (base / "inetrc").write_text('{lookup, [file]}.\n{host, {127,0,0,1}, ["localhost"]}.\n')
        defs = base / "definitions.json"
        defs.write_text(json.dumps(definitions([*self.users.values(), self.admin])))
        defs.chmod(0o600)
        # The classic Erlang-term format: the node reads it as it is, where rabbitmq.conf would first be
        # translated through its schema, seconds of CPU at every boot.
        (base / "rabbitmq.config").write_text(
            "[{rabbit, ["
            f'{{tcp_listeners, [{{"127.0.0.1", {self.amqp_port}}}]}}, '
            f'{{load_definitions, "{defs}"}}, '
            "{loopback_users, []}"
            "]}].\n"
        )

    def start(self) -> None:
        """Start the node (and its own epmd) and return once a service user can log in."""
        if not SERVER.exists() or shutil.which("epmd") is None:
            raise BrokerError(f"RabbitMQ is not installed ({SERVER} or epmd missing): {INSTALL_HINT}")
        self._write_config()
        env = self._environment()
        if self._epmd is None or self._epmd.poll() is not None:
            self._epmd = subprocess.Popen(
                ["epmd", "-address", "127.0.0.1", "-port", str(self.epmd_port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        console = (self.workdir / "log" / "console.log").open("ab")
        self._server = subprocess.Popen(
            [str(SERVER)], env=env, stdout=console, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
        )
        console.close()
        self.version = self._wait_until_ready()

    def _wait_until_ready(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            assert self._server is not None
            if self._server.poll() is not None:
                raise BrokerError(f"rabbitmq-server exited with status {self._server.returncode}:\n{self.log_tail()}")
            try:
                return asyncio.run(server_version(self.uri("router")))
            except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as error:
                last_error = error
            time.sleep(0.2)
        self.stop()
        raise BrokerError(
            f"rabbitmq-server did not accept a login within {START_TIMEOUT_SECONDS:.0f} s ({last_error!r}):\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the node gracefully (SIGTERM), killing it only if it does not stop in time; epmd stays."""
        server, self._server = self._server, None
        if server is None or server.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    def restart(self) -> None:
        """Stop and start the same node: same ports, same data (durable queues and bindings survive)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the node and its epmd."""
        self.stop()
        epmd, self._epmd = self._epmd, None
        if epmd is not None and epmd.poll() is None:
            epmd.terminate()
            epmd.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.workdir / "log" / "console.log", self.log_file):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text


async def server_version(uri: str) -> str:
    """Log in as a user and return the broker's version from the connection's server properties."""
    connection = await aio_pika.connect(uri, timeout=5)
    try:
        properties = connection.transport.connection.server_properties if connection.transport else {}
        version = properties.get("version", "unknown")
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        await connection.close()


@contextlib.contextmanager
def running_broker(*, workdir: Path) -> Iterator[LocalBroker]:
    """A started broker, stopped (with its epmd) when the block ends."""
    broker = LocalBroker(workdir=workdir)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
"""Not resolved: the venv's python is a symlink, and following it would leave the venv behind."""
ROUTER_READY = "connected to the broker"
HELLO_WORLD_READY = "consuming queue hello_world"


class ServiceProcess:
    """One service run as its image runs it: ``python -m alchemy_services.<name>``, set up by environment only.

    Its log (stderr) goes to a file, which is how a caller learns that it is ready or stopping.
    """

    def __init__(self, *, name: str, environment: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.environment = dict(environment)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **self.environment}
        python = PYTHON if PYTHON.exists() else Path(sys.executable)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(python), "-m", f"alchemy_services.{self.name}"],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, *, timeout: float, occurrences: int = 1) -> None:
        """Return once the log holds ``text`` (``occurrences`` times); fail if the process exits first."""
        deadline = time.monotonic() + timeout
        while self.log_text().count(text) < occurrences:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not log {text!r} within {timeout} s:\n{self.log_text()}")
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, *, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self, *, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. None if it was never started."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def router_process(
    broker: LocalBroker, *, port: int, log_path: Path, timeout_seconds: float, dialect: str | None = None
) -> ServiceProcess:
    """The router on 127.0.0.1:port, logged in as the ``router`` user."""
    environment = {
        "AMQP_URI": broker.uri("router"),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(port),
        "ROUTER_TIMEOUT_SECONDS": str(timeout_seconds),
    }
    if dialect is not None:
        environment["ROUTER_REQUEST_DIALECT"] = dialect
    return ServiceProcess(name="router", environment=environment, log_path=log_path)


def hello_world_process(broker: LocalBroker, *, log_path: Path) -> ServiceProcess:
    """A hello_world instance, logged in as the ``hello_world`` user."""
    return ServiceProcess(name="hello_world", environment={"AMQP_URI": broker.uri("hello_world")}, log_path=log_path)


def main() -> int:
    """Run a broker in the foreground for trying the services by hand; Ctrl-C stops it."""
    import tempfile

    with (
        tempfile.TemporaryDirectory(prefix="alchemy-broker-") as workdir,
        running_broker(workdir=Path(workdir)) as node,
    ):
        print(f"RabbitMQ {node.version} on 127.0.0.1:{node.amqp_port} (node {node.node}); Ctrl-C stops it")
        for name in SERVICES:
            print(f"  {name}: AMQP_URI={node.uri(name)}")
        print(f"  administrator: AMQP_URI={node.admin_uri}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
