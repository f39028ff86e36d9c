"""etcd-leave: a node that leaves its group on purpose takes its member out; a reboot leaves it in.

moto has no Terminating lifecycle state: terminating an instance there drops it from the group at once,
and EC2 reports it terminated. That path is tested for real. The Terminating:Wait answer a real group
gives while its lifecycle hook holds the instance is played by an `aws` first on PATH that answers
describe-auto-scaling-instances with it and hands every other call to the real CLI.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.node.harness import Cloud, FirstBoot, Node, base_environment, member_list, run_script


def terminating_aws(tmp_path: Path) -> str:
    """PATH with an `aws` that reports this instance Terminating:Wait and passes everything else on."""
    real = shutil.which("aws", path=base_environment()["PATH"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "aws"
    shim.write_text(
        "#!/bin/sh\n"
        'case "$*" in *describe-auto-scaling-instances*) echo Terminating:Wait; exit 0 ;; esac\n'
        f'exec {real} "$@"\n'
    )
    shim.chmod(0o755)
    return f"{bin_dir}:{base_environment()['PATH']}"


def leave(node: Node, cloud: Cloud, **extra: str) -> subprocess.CompletedProcess[str]:
    environment = base_environment(
        {
            **cloud.environment,
            "INSTANCE_ID": node.instance_id,
            "PRIVATE_IP": node.ip,
            "ETCD_ENV_FILE": str(node.env_file),
            **extra,
        }
    )
    return run_script("etcd-leave", environment)


def names(endpoint: str) -> list[str]:
    return [member.name for member in member_list(endpoint)]


def test_terminating_instance_removes_its_member(leave_cluster: FirstBoot, tmp_path: Path) -> None:
    node, other = leave_cluster.nodes[0], leave_cluster.nodes[2]

    result = leave(node, leave_cluster.fleet.cloud, PATH=terminating_aws(tmp_path))

    assert result.returncode == 0, result.stderr
    assert node.instance_id not in names(other.endpoint), result.stderr
    assert "removed member" in result.stderr


def test_instance_the_group_terminated_removes_its_member(leave_cluster: FirstBoot) -> None:
    node, other = leave_cluster.nodes[1], leave_cluster.nodes[2]
    leave_cluster.fleet.cloud.terminate(node.instance_id)

    result = leave(node, leave_cluster.fleet.cloud)

    assert result.returncode == 0, result.stderr
    assert node.instance_id not in names(other.endpoint), result.stderr


def test_reboot_keeps_the_member(shared_cluster: FirstBoot) -> None:
    node = shared_cluster.nodes[0]
    before = member_list(node.endpoint)

    result = leave(node, shared_cluster.fleet.cloud)

    assert result.returncode == 0, result.stderr
    assert member_list(node.endpoint) == before
    assert "not leaving" in result.stderr


def test_leaving_again_once_removed_changes_nothing(shared_cluster: FirstBoot, tmp_path: Path) -> None:
    node = shared_cluster.nodes[0]
    gone = Node("i-0000000000000dead", node.ip, node.home)
    before = member_list(node.endpoint)

    result = leave(gone, shared_cluster.fleet.cloud, PATH=terminating_aws(tmp_path))

    assert result.returncode == 0, result.stderr
    assert member_list(node.endpoint) == before
    assert "is not a member" in result.stderr


def test_leave_never_fails_the_shutdown_when_no_member_answers(cloud: Cloud, tmp_path: Path) -> None:
    node = Node("i-0000000000000beef", "127.0.0.2", tmp_path)

    result = leave(node, cloud, PATH=terminating_aws(tmp_path), ETCD_ENDPOINTS="http://127.0.0.2:2379")

    assert result.returncode == 0
    assert "leaving the cluster as it is" in result.stderr
