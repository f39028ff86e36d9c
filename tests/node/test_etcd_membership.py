"""etcd-membership against moto and real etcd: first boot, replacement of a dead node, reboot, discovery."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.node.harness import (
    FirstBoot,
    Fleet,
    Node,
    base_environment,
    etcdctl,
    is_healthy,
    is_leader,
    member_list,
    read_env_file,
    run_script,
    serve_in_background,
    wait_for,
)


def test_first_nodes_all_choose_a_new_cluster(shared_cluster: FirstBoot) -> None:
    assert [env["ETCD_INITIAL_CLUSTER_STATE"] for env in shared_cluster.env_files] == ["new"] * 3


def test_first_nodes_all_write_the_same_sorted_member_list_and_token(shared_cluster: FirstBoot) -> None:
    nodes = sorted(shared_cluster.nodes, key=lambda node: node.instance_id)
    expected = ",".join(f"{node.instance_id}=http://{node.ip}:2380" for node in nodes)
    assert {env["ETCD_INITIAL_CLUSTER"] for env in shared_cluster.env_files} == {expected}
    assert len({env["ETCD_INITIAL_CLUSTER_TOKEN"] for env in shared_cluster.env_files}) == 1


def test_first_nodes_form_one_cluster_of_three_started_members(shared_cluster: FirstBoot) -> None:
    names = sorted(member.name for member in shared_cluster.members)
    assert names == sorted(node.instance_id for node in shared_cluster.nodes)
    assert all(member.status == "started" for member in shared_cluster.members)


def test_env_file_configures_this_node_alone(shared_cluster: FirstBoot) -> None:
    node, env = shared_cluster.nodes[0], shared_cluster.env_files[0]
    assert env["ETCD_NAME"] == node.instance_id
    assert env["ETCD_DATA_DIR"] == str(node.data_dir)
    assert env["ETCD_LISTEN_CLIENT_URLS"] == env["ETCD_ADVERTISE_CLIENT_URLS"] == f"http://{node.ip}:2379"
    assert env["ETCD_LISTEN_PEER_URLS"] == env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"http://{node.ip}:2380"


def test_replacement_removes_the_dead_member_and_joins(replace_cluster: FirstBoot) -> None:
    fleet, group = replace_cluster.fleet, replace_cluster.group
    nodes = replace_cluster.nodes
    # The leader, the hardest case: the replacement boots while the survivors are still electing a new one.
    (dead,) = [node for node in nodes if is_leader(node.endpoint)]
    survivors = [node for node in nodes if node is not dead]
    before = member_list(survivors[0].endpoint)
    dead.kill_etcd()
    fleet.cloud.terminate(dead.instance_id)
    (replacement,) = [node for node in fleet.group_nodes(group) if node not in nodes]

    (result,) = fleet.boot(group, [replacement])

    after = member_list(survivors[0].endpoint)
    print("\nreplacement of the leader", dead.instance_id, "by", replacement.instance_id)
    print(result.stderr, end="")
    print("member list before:", *before, sep="\n  ")
    print("member list after:", *after, sep="\n  ")
    assert sorted(member.name for member in after) == sorted(n.instance_id for n in [*survivors, replacement])
    assert all(member.status == "started" for member in after)
    assert all(is_healthy(node.endpoint) for node in [*survivors, replacement])
    assert read_env_file(replacement.env_file)["ETCD_INITIAL_CLUSTER_STATE"] == "existing"


def listens(ip: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((ip, port)) == 0


def test_slow_first_node_founds_the_same_cluster_as_a_quicker_sibling(fleet: Fleet) -> None:
    group = fleet.cloud.create_group("sibling", 3)
    quick, slow, last = fleet.group_nodes(group)
    assert fleet.membership(group, [quick])[0].returncode == 0
    quick.start_etcd()  # up, but alone: no quorum, so no healthy cluster to join
    wait_for("the quick node's etcd to listen", lambda: listens(quick.ip, 2379), 10)

    results = fleet.membership(group, [slow, last])

    assert [result.returncode for result in results] == [0, 0], [result.stderr for result in results]
    assert read_env_file(slow.env_file)["ETCD_INITIAL_CLUSTER"] == read_env_file(quick.env_file)["ETCD_INITIAL_CLUSTER"]
    slow.start_etcd()
    last.start_etcd()
    wait_for("the three to form one cluster", lambda: all(is_healthy(n.endpoint) for n in (quick, slow, last)), 20)


def restart(node: Node, fleet: Fleet, group: str) -> subprocess.CompletedProcess[str]:
    """What a reboot does: etcd stops, etcd-membership runs again, etcd starts again."""
    node.kill_etcd()
    (result,) = fleet.membership(group, [node])
    assert result.returncode == 0, result.stderr
    node.start_etcd()
    wait_for(f"{node.instance_id} to be healthy again", lambda: is_healthy(node.endpoint), 20, details=node.log)
    return result


def test_rebooted_member_keeps_its_data_and_its_membership(shared_cluster: FirstBoot) -> None:
    fleet, group = shared_cluster.fleet, shared_cluster.group
    node = shared_cluster.nodes[2]
    before = member_list(node.endpoint)

    restart(node, fleet, group)

    assert member_list(node.endpoint) == before


def test_member_that_lost_its_data_is_added_again_under_a_new_id(shared_cluster: FirstBoot) -> None:
    fleet, group = shared_cluster.fleet, shared_cluster.group
    node = shared_cluster.nodes[1]
    (old,) = [member for member in member_list(node.endpoint) if member.name == node.instance_id]
    node.kill_etcd()
    shutil.rmtree(node.data_dir)

    restart(node, fleet, group)

    (new,) = [member for member in member_list(node.endpoint) if member.name == node.instance_id]
    assert new.id != old.id
    assert new.status == "started"


def test_new_member_wipes_a_data_dir_from_a_previous_life(shared_cluster: FirstBoot) -> None:
    fleet, group = shared_cluster.fleet, shared_cluster.group
    node, other = shared_cluster.nodes[0], shared_cluster.nodes[2]
    node.kill_etcd()
    (old,) = [member for member in member_list(other.endpoint) if member.name == node.instance_id]
    # etcd refuses a change until its members have been connected for a while: retry, as an operator would.
    wait_for(
        "the old member to be removed", lambda: etcdctl(other.endpoint, "member", "remove", old.id).returncode == 0, 15
    )
    stale = node.data_dir / "member" / "stale-marker"
    stale.write_text("from a cluster this node no longer belongs to")

    restart(node, fleet, group)

    assert not stale.exists()
    assert node.instance_id in [member.name for member in member_list(node.endpoint) if member.status == "started"]


def fake_aws(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An `aws` first on PATH that only records that it was called, and fails."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "aws-calls"
    (bin_dir / "aws").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 1\n')
    (bin_dir / "aws").chmod(0o755)
    environment = base_environment()
    return {"PATH": f"{bin_dir}:{environment['PATH']}"}, calls


def test_discovery_url_is_written_instead_and_no_aws_call_is_made(tmp_path: Path) -> None:
    path, calls = fake_aws(tmp_path)
    environment = base_environment(
        {
            **path,
            "ETCD_DISCOVERY_URL": "https://discovery.example/0123456789abcdef",
            "INSTANCE_ID": "i-0123456789abcdef0",
            "PRIVATE_IP": "127.0.0.9",
            "ETCD_ENV_FILE": str(tmp_path / "cluster.env"),
        }
    )

    result = run_script("etcd-membership", environment)

    assert result.returncode == 0, result.stderr
    env = read_env_file(tmp_path / "cluster.env")
    assert env["ETCD_DISCOVERY"] == "https://discovery.example/0123456789abcdef"
    assert "ETCD_INITIAL_CLUSTER" not in env
    assert not calls.exists()


class FakeImds(BaseHTTPRequestHandler):
    """IMDSv2: a PUT hands out a session token, and meta-data answers only to that token."""

    token = "imds-session-token"
    values: ClassVar[dict[str, str]] = {"instance-id": "i-0fedcba987654321f", "local-ipv4": "127.0.0.10"}

    def do_PUT(self) -> None:
        self.answer(200, self.token if self.path == "/latest/api/token" else "")

    def do_GET(self) -> None:
        key = self.path.removeprefix("/latest/meta-data/")
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            self.answer(401, "")
        elif key in self.values:
            self.answer(200, self.values[key])
        else:
            self.answer(404, "")

    def answer(self, status: int, body: str) -> None:
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def imds_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeImds)
    serve_in_background(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_instance_id_and_private_ip_come_from_imds_v2_when_unset(tmp_path: Path, imds_endpoint: str) -> None:
    path, _ = fake_aws(tmp_path)
    environment = base_environment(
        {
            **path,
            "IMDS_ENDPOINT": imds_endpoint,
            "ETCD_DISCOVERY_URL": "https://discovery.example/token",
            "ETCD_ENV_FILE": str(tmp_path / "cluster.env"),
        }
    )

    result = run_script("etcd-membership", environment)

    assert result.returncode == 0, result.stderr
    env = read_env_file(tmp_path / "cluster.env")
    assert env["ETCD_NAME"] == "i-0fedcba987654321f"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://127.0.0.10:2379"
