"""etcd-leave: a node that leaves its group for good takes its member out; a reboot leaves it in.

The group terminating an instance shows in its instance metadata (`autoscaling/target-lifecycle-state` is
`Terminated`), played here by a fake metadata service. An instance terminated outside the group shows in EC2
(moto: terminating it through the group also terminates it in EC2 and drops it from the group at once).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from tests.node.harness import (
    Cloud,
    FakeImds,
    FirstBoot,
    Fleet,
    Node,
    base_environment,
    is_leader,
    member_list,
    run_script,
)

ELECTION_PAUSE = 12.0
"""Seconds two of the three members stay frozen once the third has lost its leader: longer than one whole round
of the leave's health probe (three candidates, 3 s each), so at least one round finds no healthy member however
slow the machine, and well short of the leave's own timeout (40 s)."""


def leave(node: Node, cloud: Cloud, imds: FakeImds, **extra: str) -> subprocess.CompletedProcess[str]:
    environment = base_environment(
        {
            **cloud.environment,
            "INSTANCE_ID": node.instance_id,
            "PRIVATE_IP": node.ip,
            "ETCD_ENV_FILE": str(node.env_file),
            "ETCD_LEFT_MARKER": str(node.home / f"left-{node.instance_id}"),
            "IMDS_ENDPOINT": imds.endpoint,
            **extra,
        }
    )
    return run_script("etcd-leave", environment)


def answers_healthy(node: Node) -> bool:
    """What the leave's probe asks: etcd's /health, with a short timeout (a member without leader is slow)."""
    try:
        with urllib.request.urlopen(f"{node.endpoint}/health", timeout=1) as response:
            return json.load(response).get("health") == "true"
    except (OSError, ValueError):
        return False


def names(endpoint: str) -> list[str]:
    return [member.name for member in member_list(endpoint)]


def test_instance_the_group_terminates_removes_its_member(leave_cluster: FirstBoot, imds: FakeImds) -> None:
    node, other = leave_cluster.nodes[0], leave_cluster.nodes[2]
    imds.values["autoscaling/target-lifecycle-state"] = "Terminated"

    result = leave(node, leave_cluster.fleet.cloud, imds)

    assert result.returncode == 0, result.stderr
    assert node.instance_id not in names(other.endpoint), result.stderr
    assert "removed member" in result.stderr


def still_members(cluster: FirstBoot) -> list[Node]:
    """The cluster's nodes that are still members, as a member that answers lists them (the leave tests take
    this cluster's members out one by one)."""
    listed = next(names(node.endpoint) for node in cluster.nodes if answers_healthy(node))
    return [node for node in cluster.nodes if node.instance_id in listed]


def test_a_leader_that_leaves_hands_over_its_leadership_first(leave_cluster: FirstBoot, imds: FakeImds) -> None:
    """The others are never without a leader: right after the leave they answer healthy, with no election to
    wait out (a leader that removed itself would leave them leaderless for an election timeout)."""
    remaining = still_members(leave_cluster)
    (leader,) = [node for node in remaining if is_leader(node.endpoint)]
    others = [node for node in remaining if node is not leader]
    imds.values["autoscaling/target-lifecycle-state"] = "Terminated"

    result = leave(leader, leave_cluster.fleet.cloud, imds)

    assert result.returncode == 0, result.stderr
    assert "handed the leadership to" in result.stderr
    assert [answers_healthy(node) for node in others] == [True] * len(others)
    assert leader.instance_id not in names(others[0].endpoint)


def test_a_second_leave_in_the_same_boot_asks_no_one(fleet: Fleet, imds: FakeImds) -> None:
    """Once removed (etcd's ExecStop), the leave that alchemy-lifecycle runs after stopping etcd returns at once:
    with etcd stopped it may know no member to ask (its env file names the members it joined with)."""
    node, other = fleet.form_cluster(f"again-{uuid.uuid4().hex[:8]}", 2)
    imds.values["autoscaling/target-lifecycle-state"] = "Terminated"
    first = leave(node, fleet.cloud, imds)
    assert "removed member" in first.stderr, first.stderr
    started = time.monotonic()

    again = leave(node, fleet.cloud, imds, ETCD_ENDPOINTS="http://127.0.0.2:9", ETCD_LEAVE_TIMEOUT="20")

    assert again.returncode == 0, again.stderr
    assert "already left the etcd cluster" in again.stderr
    assert time.monotonic() - started < 10
    assert names(other.endpoint) == [other.instance_id]


def test_instance_the_group_terminated_removes_its_member(fleet: Fleet, imds: FakeImds) -> None:
    """Through a leader election on purpose. The moment the leave asks whether the instance is leaving, the
    leader and the third member freeze (a stall of two members); the answer comes once the leaving member has
    noticed it has no leader, so the leave's health probe finds no healthy member until the two are back and a
    leader is elected, and then etcd refuses the removal until they have been connected for a few seconds."""
    nodes = fleet.form_cluster(f"election-{uuid.uuid4().hex[:8]}", 3)
    (leader,) = [candidate for candidate in nodes if is_leader(candidate.endpoint)]
    node, other = [candidate for candidate in nodes if candidate is not leader]
    fleet.cloud.terminate(node.instance_id)
    imds.values["autoscaling/target-lifecycle-state"] = "Terminated"
    frozen = [member.process for member in (leader, other) if member.process is not None]

    def thaw() -> None:
        for process in frozen:
            process.send_signal(signal.SIGCONT)

    resume = threading.Timer(ELECTION_PAUSE, thaw)

    froze = threading.Event()

    def freeze(path: str) -> None:
        # Once only: a later metadata request (a retry) must not freeze the thawed members again.
        if path == "autoscaling/target-lifecycle-state" and not froze.is_set():
            froze.set()
            for process in frozen:
                process.send_signal(signal.SIGSTOP)
            deadline = time.monotonic() + 10
            while answers_healthy(node) and time.monotonic() < deadline:
                time.sleep(0.1)
            resume.start()

    imds.on_request = freeze
    try:
        result = leave(node, fleet.cloud, imds)
    finally:
        resume.cancel()
        thaw()

    assert result.returncode == 0, result.stderr
    assert "no member answers healthy yet" in result.stderr, result.stderr
    assert node.instance_id not in names(other.endpoint), result.stderr


def test_reboot_keeps_the_member(shared_cluster: FirstBoot, imds: FakeImds) -> None:
    node = shared_cluster.nodes[0]
    imds.values["autoscaling/target-lifecycle-state"] = "InService"
    before = member_list(node.endpoint)

    result = leave(node, shared_cluster.fleet.cloud, imds)

    assert result.returncode == 0, result.stderr
    assert member_list(node.endpoint) == before
    assert "not leaving" in result.stderr


def test_leaving_again_once_removed_changes_nothing(shared_cluster: FirstBoot, imds: FakeImds) -> None:
    node = shared_cluster.nodes[0]
    gone = Node("i-0000000000000dead", node.ip, node.home)
    imds.values["autoscaling/target-lifecycle-state"] = "Terminated"
    before = member_list(node.endpoint)

    result = leave(gone, shared_cluster.fleet.cloud, imds)

    assert result.returncode == 0, result.stderr
    assert member_list(node.endpoint) == before
    assert "is not a member" in result.stderr


def test_leave_never_fails_the_stop_when_no_member_answers(cloud: Cloud, imds: FakeImds, tmp_path: Path) -> None:
    node = Node("i-0000000000000beef", "127.0.0.2", tmp_path)
    imds.values["autoscaling/target-lifecycle-state"] = "Terminated"

    result = leave(node, cloud, imds, ETCD_ENDPOINTS="http://127.0.0.2:2379", ETCD_LEAVE_TIMEOUT="2")

    assert result.returncode == 0
    assert "leaving the cluster as it is" in result.stderr
