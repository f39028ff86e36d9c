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
STATE_DIR = Path(tempfile.gettempdir()) / "alchemy-local-aws" / hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
"""Where a background emulator of this checkout records its port, process id and log."""


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
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


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
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


# Background emulator for people: start / env / status / stop.


def _state_file() -> Path:
    return STATE_DIR / "server.json"


def background_state() -> dict[str, Any] | None:
    """Port and process id of this checkout's background emulator, if one is running."""
    path = _state_file()
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    try:
        os.kill(int(state["pid"]), 0)
    except ProcessLookupError:
        path.unlink()
        return None
    if not is_ready(f"http://{HOST}:{state['port']}"):
        return None
    return state


def start_background(port: int | None = None) -> LocalAws:
    """Starts (or finds) this checkout's background emulator; it outlives this process."""
    state = background_state()
    if state is not None:
        return LocalAws(port=int(state["port"]), log_path=Path(state["log"]))
    server = LocalAws(port=port or free_port(), log_path=STATE_DIR / "moto.log")
    server.start()
    assert server.process is not None
    _state_file().write_text(json.dumps({"port": server.port, "pid": server.process.pid, "log": str(server.log_path)}))
    return server


def stop_background() -> bool:
    """Stops this checkout's background emulator; False when none was running."""
    path = _state_file()
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    stop_process(int(state["pid"]))
    path.unlink()
    return True


def running_background() -> LocalAws:
    state = background_state()
    if state is None:
        raise SystemExit("error: no local emulator is running; start one with: make local-deploy")
    return LocalAws(port=int(state["port"]), log_path=Path(state["log"]))


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
        server = start_background(args.port)
        print(f"local AWS emulator listening on {server.endpoint} (log: {server.log_path})")
    elif args.command == "env":
        server = running_background()
        for name, value in local_emulator.cli_environment(server.endpoint).items():
            print(f"export {name}={shlex.quote(value)}")
    elif args.command == "status":
        state = background_state()
        print("not running" if state is None else f"running on http://{HOST}:{state['port']} (pid {state['pid']})")
    else:
        print("stopped" if stop_background() else "not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
