"""etcd-snapshot: the leader, and only the leader, saves a snapshot to S3 and removes its local copy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.node import harness
from tests.node.harness import FirstBoot, Node, base_environment, run_script


def is_leader(node: Node) -> bool:
    return harness.is_leader(node.endpoint)


def snapshot(
    node: Node, shared_cluster: FirstBoot, cluster_name: str, tmp_dir: Path
) -> subprocess.CompletedProcess[str]:
    environment = base_environment(
        {
            **shared_cluster.fleet.cloud.environment,
            "ETCD_SNAPSHOT_BUCKET": "alchemy-snapshots",
            "ETCD_SNAPSHOT_PREFIX": f"{cluster_name}/etcd/",
            "INSTANCE_ID": node.instance_id,
            "PRIVATE_IP": node.ip,
            "ETCD_SNAPSHOT_TMPDIR": str(tmp_dir),
        }
    )
    return run_script("etcd-snapshot", environment)


def keys(shared_cluster: FirstBoot, cluster_name: str) -> list[str]:
    s3 = shared_cluster.fleet.cloud.client("s3")
    listed = s3.list_objects_v2(Bucket="alchemy-snapshots", Prefix=f"{cluster_name}/")
    return [item["Key"] for item in listed.get("Contents", [])]


@pytest.fixture(scope="module")
def bucket(shared_cluster: FirstBoot) -> None:
    shared_cluster.fleet.cloud.client("s3").create_bucket(
        Bucket="alchemy-snapshots", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )


@pytest.mark.usefixtures("bucket")
def test_leader_uploads_one_snapshot_named_after_itself(shared_cluster: FirstBoot, tmp_path: Path) -> None:
    (leader,) = [node for node in shared_cluster.nodes if is_leader(node)]

    result = snapshot(leader, shared_cluster, "from-leader", tmp_path)

    assert result.returncode == 0, result.stderr
    (key,) = keys(shared_cluster, "from-leader")
    assert key.startswith("from-leader/etcd/")
    assert key.endswith(f"Z-{leader.instance_id}.db")


@pytest.mark.usefixtures("bucket")
def test_followers_upload_nothing(shared_cluster: FirstBoot, tmp_path: Path) -> None:
    followers = [node for node in shared_cluster.nodes if not is_leader(node)]

    results = [snapshot(node, shared_cluster, "from-followers", tmp_path) for node in followers]

    assert [result.returncode for result in results] == [0] * len(followers)
    assert keys(shared_cluster, "from-followers") == []


@pytest.mark.usefixtures("bucket")
def test_uploaded_snapshot_is_a_valid_etcd_snapshot_and_no_local_copy_remains(
    shared_cluster: FirstBoot, tmp_path: Path
) -> None:
    (leader,) = [node for node in shared_cluster.nodes if is_leader(node)]
    local = tmp_path / "local"
    local.mkdir()

    assert snapshot(leader, shared_cluster, "valid", local).returncode == 0

    assert list(local.iterdir()) == []
    (key,) = keys(shared_cluster, "valid")
    downloaded = tmp_path / "downloaded.db"
    shared_cluster.fleet.cloud.client("s3").download_file("alchemy-snapshots", key, str(downloaded))
    status = subprocess.run(
        ["etcdctl", "snapshot", "status", str(downloaded), "-w", "fields"],
        env=base_environment({"ETCDCTL_API": "3"}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert '"Revision"' in status.stdout


@pytest.mark.usefixtures("bucket")
def test_a_snapshot_never_overwrites_an_existing_object(shared_cluster: FirstBoot, tmp_path: Path) -> None:
    """The upload asks for If-None-Match: *, which the bucket policy requires: an existing key is kept."""
    (leader,) = [node for node in shared_cluster.nodes if is_leader(node)]
    clock = tmp_path / "bin"
    clock.mkdir()
    (clock / "date").write_text("#!/bin/sh\necho 20260101T000000Z\n")
    (clock / "date").chmod(0o755)
    key = f"no-overwrite/etcd/20260101T000000Z-{leader.instance_id}.db"
    s3 = shared_cluster.fleet.cloud.client("s3")
    s3.put_object(Bucket="alchemy-snapshots", Key=key, Body=b"the earlier snapshot")
    environment = base_environment(
        {
            **shared_cluster.fleet.cloud.environment,
            "ETCD_SNAPSHOT_BUCKET": "alchemy-snapshots",
            "ETCD_SNAPSHOT_PREFIX": "no-overwrite/etcd/",
            "INSTANCE_ID": leader.instance_id,
            "PRIVATE_IP": leader.ip,
            "ETCD_SNAPSHOT_TMPDIR": str(tmp_path),
        }
    )
    environment["PATH"] = f"{clock}:{environment['PATH']}"

    result = run_script("etcd-snapshot", environment)

    assert result.returncode != 0
    assert "PreconditionFailed" in result.stderr
    assert s3.get_object(Bucket="alchemy-snapshots", Key=key)["Body"].read() == b"the earlier snapshot"
