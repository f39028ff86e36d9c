"""Fixtures for the node scripts: one moto server for the session, etcd nodes per test."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node import harness, warm_aws
from tests.node.harness import (
    INSTALL_HINT,
    Cloud,
    FakeImds,
    FirstBoot,
    Fleet,
    etcd_missing,
    member_list,
    read_env_file,
    wait_for,
)


@pytest.fixture(scope="session", autouse=True)
def warm_aws_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The AWS CLI the node scripts call, imported once and forked per call (see warm_aws)."""
    server, harness.WARM_AWS_BIN = warm_aws.start(tmp_path_factory.mktemp("aws-cli"))
    try:
        yield
    finally:
        harness.WARM_AWS_BIN = None
        server.kill()
        server.wait()


@pytest.fixture(scope="session")
def etcd_installed() -> None:
    """The suite needs the real etcd: a machine without it fails loudly instead of skipping."""
    missing = etcd_missing()
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found on PATH: {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    """This test's instance metadata service (empty: each test says what its instance reports)."""
    service = FakeImds()
    try:
        yield service
    finally:
        service.close()


MOTO_ENDPOINT_VARIABLE = "ALCHEMY_NODE_TEST_MOTO"
"""The moto server of this run, started by the main pytest process for every test process (each has a VPC of
its own in it). A process started without it starts a server of its own: in a whole-suite `pytest` run the main
process hands tests out without collecting, so it never loads this conftest."""


def start_moto(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for("the moto server to answer", lambda: process.poll() is None and answers(f"{endpoint}/moto-api/"), 30)
    except BaseException:
        stop(process)
        raise
    return process, endpoint


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


RUN_MOTO = pytest.StashKey[subprocess.Popen[bytes]]()
RUN_MOTO_LOGS = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """One moto server for the run: a server costs several seconds of CPU to start and serve, once per process
    otherwise."""
    if hasattr(config, "workerinput") or MOTO_ENDPOINT_VARIABLE in os.environ:
        return
    log_directory = Path(tempfile.mkdtemp(prefix="alchemy-node-moto-"))
    config.stash[RUN_MOTO_LOGS] = log_directory
    config.stash[RUN_MOTO], os.environ[MOTO_ENDPOINT_VARIABLE] = start_moto(log_directory / "moto.log")


def pytest_unconfigure(config: pytest.Config) -> None:
    process = config.stash.get(RUN_MOTO, None)
    if process is not None:
        stop(process)
        del os.environ[MOTO_ENDPOINT_VARIABLE]
        shutil.rmtree(config.stash[RUN_MOTO_LOGS], ignore_errors=True)


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if MOTO_ENDPOINT_VARIABLE in os.environ:
        yield os.environ[MOTO_ENDPOINT_VARIABLE]
        return
    process, endpoint = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield endpoint
    finally:
        stop(process)


@pytest.fixture(scope="session")
def cloud(moto_endpoint: str) -> Cloud:
    # A 127.N.0.0/16 of its own for each test process (xdist runs several), random within the process's band,
    # so that two runs on one machine are unlikely to bind the same addresses either.
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    prefix = f"127.{100 + (worker % 4) * 38 + random.randint(0, 37)}"
    probe = Cloud(endpoint=moto_endpoint, vpc_id="", network_prefix=prefix)
    vpc_id = probe.client("ec2").create_vpc(CidrBlock=f"{prefix}.0.0/16")["Vpc"]["VpcId"]
    return Cloud(endpoint=moto_endpoint, vpc_id=vpc_id, network_prefix=prefix, clients=probe.clients)


@pytest.fixture
def fleet(etcd_installed: None, cloud: Cloud, tmp_path: Path) -> Iterator[Fleet]:
    """Nodes of groups that one test creates for itself."""
    nodes = Fleet(cloud, tmp_path)
    try:
        yield nodes
    finally:
        nodes.shutdown()


def formed_cluster(name: str, cloud: Cloud, home: Path) -> Iterator[FirstBoot]:
    """A three-node cluster formed by etcd-membership on a new group of its own, shut down afterwards.

    What its first boot wrote is recorded, so the first-boot tests hold whatever ran before them. Each is
    formed, once, by each test process that needs it, on a group named anew (the processes share one moto server).
    """
    fleet = Fleet(cloud, home)
    try:
        group = cloud.create_group(name, 3)
        nodes = fleet.group_nodes(group)
        results = fleet.boot(group, nodes)
        yield FirstBoot(
            fleet=fleet,
            group=group,
            nodes=nodes,
            results=results,
            env_files=[read_env_file(node.env_file) for node in nodes],
            members=member_list(nodes[0].endpoint),
        )
    finally:
        fleet.shutdown()


@pytest.fixture(scope="session")
def shared_cluster(etcd_installed: None, cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstBoot]:
    """The cluster for tests that leave it with its three members: first boot, reboot, hosts, snapshots."""
    yield from formed_cluster(f"shared-{uuid.uuid4().hex[:8]}", cloud, tmp_path_factory.mktemp("shared"))


@pytest.fixture(scope="session")
def replace_cluster(
    etcd_installed: None, cloud: Cloud, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FirstBoot]:
    """The cluster whose node the replacement scenario kills."""
    yield from formed_cluster(f"replace-{uuid.uuid4().hex[:8]}", cloud, tmp_path_factory.mktemp("replace"))


@pytest.fixture(scope="session")
def leave_cluster(etcd_installed: None, cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstBoot]:
    """The cluster whose nodes the leave tests take out, one per test."""
    yield from formed_cluster(f"leave-{uuid.uuid4().hex[:8]}", cloud, tmp_path_factory.mktemp("leave"))
