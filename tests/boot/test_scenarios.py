"""Scenarios on three booted nodes (issue 9), in order on one cluster: each prints its timeline.

Run with `make boot-test` (root). The harness samples every node every 2 s for the three readiness
conditions (GET /v1/hello through its own router is 200, its etcd member is healthy, its broker is a
running member); see docs/boot-harness.md.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.boot.harness.cluster import Cluster
from tests.boot.harness.node import Node

FIRST_BOOT_BUDGET = 180.0
"""Fault-free first boot to all three signalled, in seconds."""
SIGNAL_WAIT = 420.0
SETTLE_AFTER_SIGNAL = 10.0
"""After a SUCCESS, every sample in this many seconds must see the node ready."""


def etcd_status(node: Node) -> dict:
    out = node.sh(f"curl -s -m 5 -X POST -d '{{}}' http://{node.ip}:2379/v3/maintenance/status").stdout
    return json.loads(out) if out.strip() else {}


def etcd_members(node: Node) -> list[dict]:
    out = node.sh(f"curl -s -m 5 -X POST -d '{{}}' http://{node.ip}:2379/v3/cluster/member/list").stdout
    return json.loads(out).get("members", []) if out.strip() else []


def broker_running_nodes(node: Node) -> list[str]:
    out = node.sh("docker exec rabbitmq rabbitmqctl cluster_status --formatter json", timeout=90).stdout
    try:
        return sorted(json.loads(out).get("running_nodes", []))
    except json.JSONDecodeError:
        return []


def hosts_block(node: Node) -> dict[str, str]:
    text = node.sh("cat /etc/hosts").stdout
    block = re.search(r"# BEGIN alchemy-hosts\n(.*?)# END alchemy-hosts", text, re.DOTALL)
    if block is None:
        return {}
    return {line.split()[1]: line.split()[0] for line in block.group(1).splitlines() if line.strip()}


@pytest.fixture(scope="module")
def first_boot(cluster: Cluster) -> dict[str, float]:
    """Boots the group's three instances at once; returns each instance's seconds to its first signal."""
    started = time.time()
    nodes = cluster.launch_group()
    cluster.start_probing()
    try:
        cluster.wait_for(
            "all three nodes to signal",
            lambda: all(cluster.cloud.signals_from(node.instance_id) for node in nodes),
            timeout=SIGNAL_WAIT,
        )
        time.sleep(SETTLE_AFTER_SIGNAL + 2)
    finally:
        cluster.print_timeline("first boot of three")
    return {node.instance_id: cluster.cloud.signals_from(node.instance_id)[0]["time"] - started for node in nodes}


def test_first_boot_every_node_signals_success(cluster: Cluster, first_boot: dict[str, float]) -> None:
    statuses = {i: [s["status"] for s in cluster.cloud.signals_from(i)] for i in first_boot}
    assert statuses == {i: ["SUCCESS"] for i in first_boot}


def test_first_boot_signals_name_the_stack_and_the_group(cluster: Cluster, first_boot: dict[str, float]) -> None:
    named = {(s["stack"], s["logical_id"]) for i in first_boot for s in cluster.cloud.signals_from(i)}
    assert named == {("alchemy", cluster.user_data.group_logical_id)}


def test_first_boot_reaches_all_signalled_within_budget(first_boot: dict[str, float]) -> None:
    print(f"\nseconds from boot to SUCCESS: {sorted(round(s, 1) for s in first_boot.values())}")
    assert max(first_boot.values()) < FIRST_BOOT_BUDGET


def test_first_boot_founds_one_etcd_cluster(cluster: Cluster, first_boot: dict[str, float]) -> None:
    ids = {etcd_status(node).get("header", {}).get("cluster_id") for node in cluster.nodes.values()}
    assert len(ids) == 1
    assert None not in ids


def test_first_boot_etcd_has_the_three_instances_as_members(cluster: Cluster, first_boot: dict[str, float]) -> None:
    node = next(iter(cluster.nodes.values()))
    assert sorted(m.get("name") for m in etcd_members(node)) == sorted(cluster.nodes)


def test_first_boot_forms_one_broker_cluster_of_three(cluster: Cluster, first_boot: dict[str, float]) -> None:
    expected = sorted(f"rabbit@{node.ip}" for node in cluster.nodes.values())
    assert {node.hostname: broker_running_nodes(node) for node in cluster.nodes.values()} == {
        node.hostname: expected for node in cluster.nodes.values()
    }


def test_first_boot_every_hosts_file_lists_all_three(cluster: Cluster, first_boot: dict[str, float]) -> None:
    expected = {node.hostname: node.ip for node in cluster.nodes.values()}
    assert {node.hostname: hosts_block(node) for node in cluster.nodes.values()} == {
        node.hostname: expected for node in cluster.nodes.values()
    }


def test_first_boot_signals_only_once_ready(cluster: Cluster, first_boot: dict[str, float]) -> None:
    """After each SUCCESS, every sample within SETTLE_AFTER_SIGNAL seconds sees /v1/hello 200 through the
    node's own router, its etcd healthy and its broker running (a signal sent before that shows up as a
    failing sample right after it), and there is at least one such sample."""
    late = {}
    for instance_id in first_boot:
        signalled = cluster.cloud.signals_from(instance_id)[0]["time"]
        window = [
            s for s in cluster.probes[instance_id].samples if signalled <= s.time <= signalled + SETTLE_AFTER_SIGNAL
        ]
        late[instance_id] = bool(window) and all(s.hello and s.etcd and s.broker for s in window)
    assert late == {i: True for i in first_boot}
