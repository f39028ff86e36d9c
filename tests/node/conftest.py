"""Fixtures for the node scripts: one moto server for the session, etcd nodes per test."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.harness import (
    INSTALL_HINT,
    Cloud,
    FirstBoot,
    Fleet,
    etcd_missing,
    member_list,
    read_env_file,
    wait_for,
)


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


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for("the moto server to answer", lambda: process.poll() is None and answers(f"{endpoint}/moto-api/"), 30)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


@pytest.fixture(scope="session")
def cloud(moto_endpoint: str) -> Cloud:
    # A random 127.N.0.0/16 per session, so two runs on one machine never bind the same addresses.
    prefix = f"127.{random.randint(100, 250)}"
    probe = Cloud(endpoint=moto_endpoint, vpc_id="", network_prefix=prefix)
    vpc_id = probe.client("ec2").create_vpc(CidrBlock=f"{prefix}.0.0/16")["Vpc"]["VpcId"]
    return Cloud(endpoint=moto_endpoint, vpc_id=vpc_id, network_prefix=prefix, clients=probe.clients)


@pytest.fixture
def fleet(etcd_installed: None, cloud: Cloud, tmp_path: Path) -> Iterator[Fleet]:
    nodes = Fleet(cloud, tmp_path)
    try:
        yield nodes
    finally:
        nodes.shutdown()


@pytest.fixture(scope="session")
def shared_cluster(etcd_installed: None, cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstBoot]:
    """Three instances of a new group that run etcd-membership at the same moment, then start etcd.

    What the first boot wrote is recorded in the fixture, so the first-boot tests hold in any order; later
    tests (reboot, hosts, snapshots) use the running cluster and leave it with the same three members.
    """
    fleet = Fleet(cloud, tmp_path_factory.mktemp("shared"))
    try:
        group = cloud.create_group("shared", 3)
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
