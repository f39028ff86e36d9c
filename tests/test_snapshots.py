"""Snapshots catch drift; the behavioural tests beside them say what matters.

Update after an intended change with ``pytest -n 0 --snapshot-update`` and review the diff.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension
from syrupy.types import PropertyPath

from alchemy_constructs.node_bootstrap import BundleLocation, DeployValuesLocation, NodeBootstrap
from alchemy_stack.stack import SERVICES_DIRECTORY
from tests.builders import elb_template, log_bucket_template, network_template, node_group_template
from tests.synth import synthesize

ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
ACCOUNT_ID = re.compile(r"\b\d{12}\b")


def mask_volatile(*, data: Any, path: PropertyPath) -> Any:
    """Asset hashes change with every dependency bump and account ids with the machine: mask both."""
    if isinstance(data, str):
        return ACCOUNT_ID.sub("<account>", ASSET_HASH.sub("<asset-hash>", data))
    return data


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension).with_defaults(matcher=mask_volatile)


def test_masking_hides_hashes_and_accounts() -> None:
    value = "cdk-hnb659fds-assets-123456789012-eu-west-1/" + "a" * 64 + ".json"
    assert mask_volatile(data=value, path=()) == "cdk-hnb659fds-assets-<account>-eu-west-1/<asset-hash>.json"


def test_stack_snapshot(snapshot_json: SnapshotAssertion) -> None:
    assert synthesize().template_json == snapshot_json


def test_network_snapshot(snapshot_json: SnapshotAssertion) -> None:
    assert network_template().to_json() == snapshot_json


def test_router_load_balancer_snapshot(snapshot_json: SnapshotAssertion) -> None:
    assert elb_template().to_json() == snapshot_json


def test_node_group_snapshot(snapshot_json: SnapshotAssertion) -> None:
    assert node_group_template().to_json() == snapshot_json


def test_log_bucket_snapshot(snapshot_json: SnapshotAssertion) -> None:
    assert log_bucket_template().to_json() == snapshot_json


def test_cloud_config_snapshot(snapshot: SnapshotAssertion) -> None:
    bootstrap = NodeBootstrap(
        region="eu-west-1",
        cluster_name="alchemy",
        services_directory=SERVICES_DIRECTORY,
        images={"router_image": "router:1", "hello_world_image": "hello:1"},
    )
    # The bundle's files, not its compressed bytes, so a change shows as a readable diff.
    assert bootstrap.bundle_files() == snapshot
    bundle = BundleLocation(url="s3://assets/" + "0" * 64 + ".gz", sha256="1" * 64)
    deploy_values = DeployValuesLocation(parameter_name="deploy-values", digest="2" * 64)
    assert bootstrap.cloud_config(bundle=bundle, deploy_values=deploy_values).render() == snapshot
