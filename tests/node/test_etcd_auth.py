"""etcd-auth against real etcd: the founding member turns client authentication on, once; from then on a client
without root's credentials (a container on a node) can neither write the hosts registry nor change membership,
while the node scripts, which read the credentials file, still can."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.node.harness import Cloud, Fleet, Node, base_environment, etcdctl, run_script

ROOT_WORD = "EtcdRootPw3"


@dataclass
class AuthCluster:
    node: Node
    credentials: Path
    not_founder: subprocess.CompletedProcess[str]
    founder: subprocess.CompletedProcess[str]


def run_auth(node: Node, credentials: Path, instance_id: str) -> subprocess.CompletedProcess[str]:
    environment = base_environment(
        {
            "INSTANCE_ID": instance_id,
            "PRIVATE_IP": node.ip,
            "ETCD_ENV_FILE": str(node.env_file),
            "ETCD_CREDENTIALS_FILE": str(credentials),
            "ETCD_AUTH_TIMEOUT": "20",
        }
    )
    return run_script("etcd-auth", environment)


@pytest.fixture(scope="module")
def auth_cluster(etcd_installed: None, cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthCluster]:
    """A one-node cluster of its own (the others keep auth off); a node that is not the founder runs etcd-auth
    first, then the founder."""
    home = tmp_path_factory.mktemp("auth")
    fleet = Fleet(cloud, home)
    try:
        (node,) = fleet.form_cluster(f"auth-{uuid.uuid4().hex[:8]}", 1)
        credentials = home / "root.credentials"
        credentials.write_text(f"root:{ROOT_WORD}")
        credentials.chmod(0o400)
        not_founder = run_auth(node, credentials, "i-0000000000000f00d")
        founder = run_auth(node, credentials, node.instance_id)
        yield AuthCluster(node, credentials, not_founder, founder)
    finally:
        fleet.shutdown()


def as_root(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return etcdctl(endpoint, f"--user=root:{ROOT_WORD}", *args)


def test_only_the_founding_member_turns_auth_on(auth_cluster: AuthCluster) -> None:
    assert auth_cluster.not_founder.returncode == 0, auth_cluster.not_founder.stderr
    assert "the founding member" in auth_cluster.not_founder.stderr
    assert auth_cluster.founder.returncode == 0, auth_cluster.founder.stderr
    assert "turned on client authentication" in auth_cluster.founder.stderr


def test_a_client_without_credentials_cannot_write_the_hosts_registry(auth_cluster: AuthCluster) -> None:
    result = etcdctl(auth_cluster.node.endpoint, "put", "/alchemy/hosts/intruder", "10.9.9.9")

    assert result.returncode != 0
    assert "user name is empty" in result.stderr
    assert as_root(auth_cluster.node.endpoint, "get", "/alchemy/hosts/intruder").stdout == ""


def test_a_client_without_credentials_cannot_change_membership(auth_cluster: AuthCluster) -> None:
    result = etcdctl(auth_cluster.node.endpoint, "member", "add", "intruder", "--peer-urls=http://127.0.0.99:2380")

    assert result.returncode != 0
    assert "user name is empty" in result.stderr


def test_a_client_with_a_wrong_password_is_refused(auth_cluster: AuthCluster) -> None:
    result = etcdctl(auth_cluster.node.endpoint, "--user=root:guess", "put", "/alchemy/hosts/intruder", "10.9.9.9")

    assert result.returncode != 0
    assert "authentication failed" in result.stderr


def test_root_still_writes(auth_cluster: AuthCluster) -> None:
    assert as_root(auth_cluster.node.endpoint, "put", "/alchemy/test/root", "yes").returncode == 0


def test_turning_auth_on_again_changes_nothing(auth_cluster: AuthCluster) -> None:
    result = run_auth(auth_cluster.node, auth_cluster.credentials, auth_cluster.node.instance_id)

    assert result.returncode == 0, result.stderr
    assert "client authentication is on" in result.stderr


def test_the_node_scripts_authenticate_from_the_credentials_file(auth_cluster: AuthCluster, tmp_path: Path) -> None:
    """hosts-registry, through alchemy-lib's etcd_ctl, registers the node with auth on."""
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    environment = base_environment(
        {
            "HOSTS_FILE": str(hosts),
            "HOSTS_NAME": "authenticated",
            "PRIVATE_IP": auth_cluster.node.ip,
            "HOSTS_WATCH_CONTAINER": "",
            "ETCD_CREDENTIALS_FILE": str(auth_cluster.credentials),
        }
    )
    process = subprocess.Popen(
        [str(Path(__file__).resolve().parents[2] / "alchemy_constructs" / "node_scripts" / "hosts-registry")],
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert process.stderr is not None
    assert "registered authenticated" in process.stderr.read()
