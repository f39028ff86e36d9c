"""The AWS CLI (v1, from the venv) started once and forked per call, for the node script tests.

A cold `aws` call costs about 0.9 s of CPU on this machine, nearly all of it importing awscli and botocore
and parsing service models; the node tests make dozens of them while etcd and the unit suite want the same
two cores. Here one server process imports the CLI and parses the models the node scripts use, then forks a
child per call that runs the CLI's own `main()` with the caller's arguments, environment, working directory
and standard streams (passed over a Unix socket). Each call is still a fresh CLI run: a new session, the
caller's environment read anew, its exit status returned. The client (`aws` in `bin`) is a few lines of
Python started with `-IS`.

Run as ``python -m tests.node.warm_aws SOCKET`` (the server) or through :func:`start`.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SERVICES_USED = ("ec2", "autoscaling", "s3", "secretsmanager", "ssm", "ecr", "sts")
"""Services whose models the server parses before forking (what the node scripts call)."""

CLIENT = """#!{python} -IS
# `aws` for the node tests: hands this call to the warm AWS CLI (tests/node/warm_aws.py) and exits with its status.
import json, os, socket, sys
connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
connection.connect({socket_path!r})
request = json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}}).encode()
socket.send_fds(connection, [len(request).to_bytes(4, "big") + request], [0, 1, 2])
status = connection.recv(4)
sys.exit(int.from_bytes(status, "big", signed=True) if len(status) == 4 else 255)
"""


def _receive(connection: socket.socket) -> tuple[dict, list[int]]:
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    size = int.from_bytes(message[:4], "big")
    body = message[4:]
    while len(body) < size:
        chunk = connection.recv(size - len(body))
        if not chunk:
            raise ConnectionError("the client hung up mid-request")
        body += chunk
    return json.loads(body), fds


def _run_call(connection: socket.socket) -> None:
    """In the forked child: become the caller's `aws` process, run the CLI, report the status."""
    request, fds = _receive(connection)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own streams, closed at exit
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # What importing awscli does to the environment, done again for the caller's: its data path appended.
    import awscli

    caller = request["env"].get("AWS_DATA_PATH", "")
    caller_paths = [os.path.expanduser(os.path.expandvars(path)) for path in caller.split(os.pathsep) if path]
    os.environ["AWS_DATA_PATH"] = os.pathsep.join([*caller_paths, str(Path(awscli.__file__).parent / "data")])
    sys.argv = ["aws", *request["argv"]]
    from awscli.clidriver import main

    try:
        status = main()
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # whatever the CLI raises ends the call with a status
        import traceback

        traceback.print_exc()
        status = 255
    sys.stdout.flush()
    sys.stderr.flush()
    connection.sendall(int(status or 0).to_bytes(4, "big", signed=True))


def _warm() -> None:
    """Imports the CLI and keeps every JSON model file it parses, so children start from parsed models."""
    # awscli first: it carries a botocore of its own and makes `botocore` name it.
    import awscli.clidriver
    import botocore.loaders
    import botocore.session

    parse = botocore.loaders.JSONFileLoader.load_file
    parsed = functools.cache(lambda file_path: parse(botocore.loaders.JSONFileLoader(), file_path))
    # Keyed on the path alone: every child's session makes loaders of its own. What a child does to a model
    # stays in its own copy of the memory.
    botocore.loaders.JSONFileLoader.load_file = lambda self, file_path: parsed(file_path)
    # Which services the data directories hold: a walk of some 2,000 directories that every call made again.
    list_services = botocore.loaders.Loader.list_available_services
    listed: dict[tuple[tuple[str, ...], str], list[str]] = {}

    def list_available_services(self: botocore.loaders.Loader, type_name: str) -> list[str]:
        # Keyed on the directories that exist: each caller's HOME adds a `~/.aws/models` of its own, which the
        # node tests never create, so a key of every search path would miss on every call.
        key = (tuple(path for path in self.search_paths if os.path.isdir(path)), type_name)
        if key not in listed:
            listed[key] = list_services(self, type_name)
        return list(listed[key])

    botocore.loaders.Loader.list_available_services = list_available_services
    # Each session registers some 400 event handlers and asks `inspect` for each one's signature; the answers
    # are the functions' own, so they are kept (keyed on the function behind a bound method).
    import botocore.hooks

    takes_kwargs = functools.cache(botocore.hooks.accepts_kwargs)
    botocore.hooks.accepts_kwargs = lambda handler: takes_kwargs(getattr(handler, "__func__", handler))
    driver = awscli.clidriver.create_clidriver()
    driver._get_command_table()  # every service's command, and the files behind them
    session = botocore.session.get_session()
    for service in SERVICES_USED:
        # A client, not only its model: making one parses the endpoint rules, partitions, retry and default
        # configuration files too, which every call's client needs.
        session.create_client(service, region_name="eu-west-1", aws_access_key_id="warm", aws_secret_access_key="warm")
        session.get_paginator_model(service) if service != "sts" else None


def _reap(signum: int, frame: object) -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def serve(socket_path: str) -> None:
    _warm()
    # Everything warmed is moved out of the collector's reach: a child's collections would otherwise touch every
    # inherited object and so copy nearly every page of this process (copy-on-write), call after call.
    gc.freeze()
    # Children are reaped as they end (their CPU time is then counted as the server's, and so the suite's).
    signal.signal(signal.SIGCHLD, _reap)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                _run_call(connection)
            finally:
                os._exit(0)
        connection.close()


def start(directory: Path) -> tuple[subprocess.Popen[str], Path]:
    """Starts the server; returns it and the directory holding its `aws` client, to put first on PATH."""
    socket_path = directory / "aws.sock"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.node.warm_aws", str(socket_path)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    deadline = time.monotonic() + 60
    if server.stdout.readline().strip() != "ready" or time.monotonic() > deadline:
        server.kill()
        raise RuntimeError("the warm AWS CLI did not start")
    bin_directory = directory / "bin"
    bin_directory.mkdir()
    client = bin_directory / "aws"
    client.write_text(CLIENT.format(python=sys.executable, socket_path=str(socket_path)))
    client.chmod(0o755)
    return server, bin_directory


if __name__ == "__main__":
    serve(sys.argv[1])
