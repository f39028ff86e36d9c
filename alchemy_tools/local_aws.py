"""The local AWS emulator: the pinned moto server on 127.0.0.1, started and stopped by this project.

It serves every AWS API the CDK CLI and the tests call on one port, keeps everything in
memory, and is gone when stopped. ``python -m alchemy_tools.local_aws start`` leaves one
running in the background for a person to poke at (``env`` prints the variables to reach it,
``stop`` ends it); tests use :class:`LocalAws` as a context manager instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from alchemy_tools import local_emulator

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
"""The emulator listens here only: nothing outside this machine can reach it."""
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 5.0
STATE_DIR_VARIABLE = "ALCHEMY_LOCAL_AWS_STATE_DIR"
"""Overrides :func:`state_dir` (tests give each run its own, so they never meet a person's emulator)."""


def state_dir() -> Path:
    """Where this checkout's background emulator records its port, process id and log.

    One directory per checkout (by path), so two clones never find each other's emulator.
    """
    override = os.environ.get(STATE_DIR_VARIABLE)
    if override:
        return Path(override)
    return Path(tempfile.gettempdir()) / "alchemy-local-aws" / hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalAws:
    """One moto server process; a context manager that starts it and always stops it."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def on_free_port(cls, log_dir: Path) -> LocalAws:
        port = free_port()
        return cls(port=port, log_path=log_dir / f"moto-{port}.log")

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) pointed at this emulator only."""
        environment = dict(os.environ if base is None else base)
        # A profile would win over the variables below in some SDKs; it must not be used.
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            environment.pop(name, None)
        environment.update(local_emulator.cli_environment(self.endpoint))
        return environment

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "--host", HOST, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_until_ready(self.endpoint, self.process)

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process.pid)
        self.process.wait(timeout=STOP_TIMEOUT_S)
        self.process = None

    def __enter__(self) -> LocalAws:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def is_ready(endpoint: str) -> bool:
    """Whether the emulator at ``endpoint`` answers an STS ``GetCallerIdentity`` with moto's account.

    A plain AWS call, not moto's ``/moto-api/data.json`` state dump: that answers 500 as soon as
    a Lambda function exists (moto tries to reach Docker to describe it), and every stack the
    loop deploys creates one. The account check also tells moto apart from another program
    that took a recycled port.
    """
    request = urllib.request.Request(
        f"{endpoint}/",
        data=b"Action=GetCallerIdentity&Version=2011-06-15",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            # moto routes a request by the service in the credential scope, as AWS's endpoints do by host.
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={local_emulator.MOTO_CREDENTIAL}/20240101/"
                f"{local_emulator.DEFAULT_REGION}/sts/aws4_request, SignedHeaders=host, Signature=0"
            ),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            body = response.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
    return f"<Account>{local_emulator.ACCOUNT}</Account>" in body


def wait_until_ready(endpoint: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the emulator exited with status {process.returncode} before it was ready")
        if is_ready(endpoint):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the emulator at {endpoint} was not ready within {START_TIMEOUT_S:.0f} s")


def stop_process(pid: int) -> None:
    """Ends the emulator process (its own session, started by this module) and waits for it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if _has_ended(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _has_ended(pid: int) -> bool:
    """Whether ``pid`` has exited. A child of this process that has exited stays a zombie, which
    ``kill(pid, 0)`` still reaches, until it is reaped: so a child is reaped here."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return True
    except ChildProcessError:
        pass  # not this process's child (started by an earlier command): only kill(0) can tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# Background emulator for people: start / env / status / stop.


class EmulatorStateError(RuntimeError):
    """The state file names a live emulator process that does not answer."""


@dataclass(frozen=True)
class BackgroundState:
    """What ``server.json`` records about the background emulator this checkout started."""

    port: int
    pid: int
    log: Path

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def server(self) -> LocalAws:
        return LocalAws(port=self.port, log_path=self.log)


def state_file() -> Path:
    return state_dir() / "server.json"


def is_emulator_process(pid: int, port: int) -> bool:
    """Whether ``pid`` is a moto server listening on ``port``, as this module starts them.

    Guards against a recycled process id: the state file may outlive the process it names.
    """
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"moto.server" in arguments and str(port).encode() in arguments


def read_state() -> BackgroundState | None:
    """The recorded background emulator, whether or not it still runs; None without a state file."""
    path = state_file()
    if not path.exists():
        return None
    recorded: dict[str, Any] = json.loads(path.read_text())
    return BackgroundState(port=int(recorded["port"]), pid=int(recorded["pid"]), log=Path(recorded["log"]))


def background_state() -> BackgroundState | None:
    """This checkout's background emulator, if it runs and answers.

    A state file whose process is gone (a reboot, a kill) is removed. A live process that does
    not answer within :data:`START_TIMEOUT_S` is an error that names it, rather than a reason to
    start a second emulator beside it.
    """
    state = read_state()
    if state is None:
        return None
    if not is_emulator_process(state.pid, state.port):
        state_file().unlink(missing_ok=True)
        return None
    deadline = time.monotonic() + START_TIMEOUT_S
    while not is_ready(state.endpoint):
        if time.monotonic() > deadline:
            raise EmulatorStateError(
                f"the local emulator (pid {state.pid}) on {state.endpoint} does not answer; "
                f"see {state.log}, or stop it with: python -m alchemy_tools.local_aws stop"
            )
        time.sleep(0.2)
    return state


def start_background(port: int | None = None) -> tuple[LocalAws, bool]:
    """Finds this checkout's background emulator, or starts one that outlives this process.

    Returns the emulator and whether it was started now.
    """
    state = background_state()
    if state is not None:
        return state.server(), False
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    server = LocalAws(port=port or free_port(), log_path=directory / "moto.log")
    server.start()
    assert server.process is not None
    state_file().write_text(json.dumps({"port": server.port, "pid": server.process.pid, "log": str(server.log_path)}))
    return server, True


def stop_background() -> bool:
    """Stops this checkout's background emulator; False when none was running.

    Only a process that is still the recorded moto server is signalled.
    """
    state = read_state()
    if state is None:
        return False
    running = is_emulator_process(state.pid, state.port)
    if running:
        stop_process(state.pid)
    state_file().unlink(missing_ok=True)
    return running


def running_background() -> LocalAws:
    state = background_state()
    if state is None:
        raise SystemExit("error: no local emulator is running; start one with: make local-deploy")
    return state.server()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alchemy_tools.local_aws", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start a background emulator on 127.0.0.1 (or reuse the running one)")
    start.add_argument("--port", type=int, default=None, help="default: a free port")
    commands.add_parser("env", help="print `export` lines that point the AWS CLI, boto3 and the CDK CLI at it")
    commands.add_parser("status", help="say whether one is running, and where")
    commands.add_parser("stop", help="stop the background emulator (its state is lost)")
    args = parser.parse_args(argv)

    if args.command == "start":
        server, started = start_background(args.port)
        verb = "started" if started else "already running"
        print(f"local AWS emulator {verb} on {server.endpoint} (log: {server.log_path})")
    elif args.command == "env":
        server = running_background()
        for name, value in local_emulator.cli_environment(server.endpoint).items():
            print(f"export {name}={shlex.quote(value)}")
    elif args.command == "status":
        state = background_state()
        print("not running" if state is None else f"running on {state.endpoint} (pid {state.pid})")
    else:
        print("stopped" if stop_background() else "not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
