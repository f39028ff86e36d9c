"""Scenarios on three booted nodes, in order on one cluster: each prints its timeline.

(a) first boot of three, (b) reboot of one, (c) quorum lost (two killed) and restored from the last S3
snapshot by the operations runbook, (d) rolling replacement of all three through the termination lifecycle
hook (each termination is also a scale-in through the hook), (e) one killed without warning and its
replacement, whose first boot meets transient faults. The nodes lost are chosen around the broker that holds
the `hello_world` queue, the hardest loss for the services (its consumers elsewhere are cancelled and must
declare it again): it survives (c), goes last in (d) and dies in (e).
Run with `make boot-test` (root). The harness samples every node every
2 s for the three readiness conditions (GET /v1/hello through its own router is 200, its etcd member is
healthy, its broker is a running member); see docs/boot-harness.md.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.boot.harness.cluster import Cluster, rounds_overlapping
from tests.boot.harness.node import Node

FIRST_BOOT_BUDGET = 180.0
"""Fault-free first boot to all three signalled, in seconds."""
SIGNAL_WAIT = 420.0
BROKER_SETTLE = 60.0
SETTLE_AFTER_SIGNAL = 10.0
"""After a SUCCESS, every sample in this many seconds must see the node ready."""


def etcd_status(node: Node) -> dict:
    out = node.sh(f"curl -s -m 5 -X POST -d '{{}}' http://{node.ip}:2379/v3/maintenance/status").stdout
    return json.loads(out) if out.strip() else {}


def etcd_members(node: Node) -> list[dict]:
    out = node.sh(f"curl -s -m 5 -X POST -d '{{}}' http://{node.ip}:2379/v3/cluster/member/list").stdout
    return json.loads(out).get("members", []) if out.strip() else []


def management_api(node: Node, path: str) -> Any:
    """GET /api/PATH of the node's broker, through the node's own ``broker_api`` (alchemy-lib: loopback, as the
    admin user), which costs the node nothing where rabbitmqctl boots an Erlang VM. None when it does not answer."""
    try:
        script = f"source /opt/bin/alchemy-lib && broker_api {shlex.quote(path)}"
        answer = node.sh(f"bash -c {shlex.quote(script)}", timeout=30).stdout
        return json.loads(answer)
    except (json.JSONDecodeError, subprocess.TimeoutExpired):
        return None


def broker_nodes(node: Node) -> dict[str, bool]:
    """Every member the node's broker lists, and whether it runs."""
    listed = management_api(node, "nodes?columns=name,running")
    return {entry["name"]: bool(entry.get("running")) for entry in listed} if isinstance(listed, list) else {}


def broker_running_nodes(node: Node) -> list[str]:
    return sorted(name for name, running in broker_nodes(node).items() if running)


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
    booted = max(node.boots[0] for node in nodes)
    print(f"\nthree layers prepared and booted in {booted - started:.1f} s")
    cluster.start_probing()
    try:
        cluster.wait_for(
            "all three nodes to signal",
            lambda: all(cluster.cloud.signals_from(node.instance_id) for node in nodes),
            timeout=SIGNAL_WAIT,
        )
        time.sleep(SETTLE_AFTER_SIGNAL + 2)
    finally:
        cluster.print_timeline("(a) first boot of three", since=started)
    return {node.instance_id: cluster.cloud.signals_from(node.instance_id)[0]["time"] - started for node in nodes}


def test_first_boot_every_node_signals_success(cluster: Cluster, first_boot: dict[str, float]) -> None:
    statuses = {i: [s["status"] for s in cluster.cloud.signals_from(i)] for i in first_boot}
    assert statuses == {i: ["SUCCESS"] for i in first_boot}


def test_first_boot_signals_name_the_stack_and_the_group(cluster: Cluster, first_boot: dict[str, float]) -> None:
    named = {(s["stack"], s["logical_id"]) for i in first_boot for s in cluster.cloud.signals_from(i)}
    assert named == {("alchemy", cluster.user_data.group_logical_id)}


def test_first_boot_reaches_all_signalled_within_budget(cluster: Cluster, first_boot: dict[str, float]) -> None:
    """From the group's launch (layers prepared, containers started) to the last SUCCESS."""
    since_boot = [cluster.cloud.signals_from(i)[0]["time"] - cluster.nodes[i].boots[0] for i in first_boot]
    print(f"\nseconds from launch to SUCCESS: {sorted(round(s, 1) for s in first_boot.values())}")
    print(f"seconds from each node's boot to SUCCESS: {sorted(round(s, 1) for s in since_boot)}")
    assert max(first_boot.values()) < FIRST_BOOT_BUDGET


def test_first_boot_founds_one_etcd_cluster(cluster: Cluster, first_boot: dict[str, float]) -> None:
    ids = {etcd_status(node).get("header", {}).get("cluster_id") for node in cluster.nodes.values()}
    assert len(ids) == 1
    assert None not in ids


def test_first_boot_etcd_has_the_three_instances_as_members(cluster: Cluster, first_boot: dict[str, float]) -> None:
    node = next(iter(cluster.nodes.values()))
    assert sorted(str(m.get("name", "")) for m in etcd_members(node)) == sorted(cluster.nodes)


def test_first_boot_forms_one_broker_cluster_of_three(cluster: Cluster, first_boot: dict[str, float]) -> None:
    """Every broker lists the same three running nodes, within BROKER_SETTLE seconds of the last signal."""
    expected = sorted(f"rabbit@{node.ip}" for node in cluster.nodes.values())

    def agreed() -> bool:
        return all(broker_running_nodes(node) == expected for node in cluster.nodes.values())

    cluster.wait_for("one broker cluster of three", agreed, timeout=BROKER_SETTLE)


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


# --- helpers for the scenarios after the first boot ---------------------------------------------------------

READY_WAIT = 300.0
CLEANUP_BOUND = 120.0
"""Seconds within which survivors drop a dead node's hosts entry, etcd member and broker membership."""


def wait_ready(cluster: Cluster, node: Node, *, since: float, timeout: float = READY_WAIT) -> None:
    """Until a sample taken after ``since`` sees the node ready (the three conditions)."""

    def ready() -> bool:
        return any(s.time > since and s.hello and s.etcd and s.broker for s in cluster.probes[node.instance_id].samples)

    cluster.wait_for(f"{node.hostname} ready", ready, timeout=timeout)


def wait_signal(cluster: Cluster, node: Node, *, since: float, timeout: float = SIGNAL_WAIT) -> dict:
    def signalled() -> list[dict]:
        return [s for s in cluster.cloud.signals_from(node.instance_id) if s["time"] > since]

    return cluster.wait_for(f"{node.hostname} to signal", signalled, timeout=timeout)[0]


def member_names(cluster: Cluster) -> list[str]:
    for node in cluster.nodes.values():
        members = etcd_members(node)
        if members:
            return sorted(m.get("name", "") for m in members)
    return []


def broker_members(node: Node) -> list[str]:
    """Every member the broker's cluster lists (running or not)."""
    return sorted(broker_nodes(node))


def terminate_through_hook(cluster: Cluster, node: Node, *, timeout: float = 240.0) -> dict:
    """What the group does with a termination lifecycle hook: Terminating:Wait and target state Terminated,
    then it waits for the node to complete the action; then EC2 shuts the instance down and it is gone.
    Returns the seconds the node took to complete the action, and the etcd members and broker members that
    a survivor saw right when it completed (before the instance went)."""
    survivor = next(n for n in cluster.nodes.values() if n is not node)
    seen: dict = {}
    started = time.time()
    cluster.cloud.set_lifecycle_state(node.instance_id, "Terminating:Wait")
    cluster.metadata[node.instance_id].target_lifecycle_state = "Terminated"
    cluster.event(node.hostname, "lifecycle hook", "Terminating:Wait")

    def completed() -> bool:
        return any(c.get("InstanceId") == node.instance_id for c in cluster.cloud.records.lifecycle_completions)

    try:
        cluster.wait_for(f"{node.hostname} to complete its lifecycle action", completed, timeout=timeout, interval=0.5)
        seen["seconds"] = time.time() - started
        seen["etcd_members"] = sorted(m.get("name", "") for m in etcd_members(survivor))
        seen["broker_members"] = broker_members(survivor)
        seen["completion"] = next(
            c for c in cluster.cloud.records.lifecycle_completions if c.get("InstanceId") == node.instance_id
        )
    finally:
        node.shutdown()
        cluster.event(node.hostname, "instance", "terminated")
        cluster.cloud.drop_instance(node.instance_id, decrement=False)
        cluster.forget(node.instance_id)
    return seen


REPLACEMENT_WAIT = 300.0
"""Seconds a node booted after the first boot gets to signal (one boots alone: 90-160 s seen)."""


def queue_host(cluster: Cluster, queue: str = "hello_world") -> str | None:
    """The IP of the broker that holds ``queue``, from the management API of any node that answers."""
    for node in cluster.nodes.values():
        listed = management_api(node, "queues?columns=name,node")
        for entry in listed if isinstance(listed, list) else []:
            if entry.get("name") == queue:
                return str(entry["node"]).removeprefix("rabbit@")
    return None


# --- (b) reboot ---------------------------------------------------------------------------------------------


def test_reboot_rejoins_without_founding_again(cluster: Cluster, first_boot: dict[str, float]) -> None:
    node = sorted(cluster.nodes.values(), key=lambda n: n.ip)[0]
    other = next(n for n in cluster.nodes.values() if n is not node)
    before_cluster = etcd_status(other).get("header", {}).get("cluster_id")
    before_members = sorted((m["name"], m["ID"]) for m in etcd_members(other))
    started = time.time()
    try:
        node.reboot()
        cluster.event(node.hostname, "instance", "rebooted")
        wait_ready(cluster, node, since=started + 5)
    finally:
        cluster.print_timeline("(b) reboot of one node", since=started)
    print(f"\nreboot to ready: {time.time() - started:.1f} s")
    after = (
        etcd_status(node).get("header", {}).get("cluster_id"),
        sorted((m["name"], m["ID"]) for m in etcd_members(node)),
    )
    assert after == (before_cluster, before_members)


def test_reboot_keeps_one_broker_cluster_of_three(cluster: Cluster) -> None:
    expected = sorted(f"rabbit@{n.ip}" for n in cluster.nodes.values())
    node = sorted(cluster.nodes.values(), key=lambda n: n.ip)[0]
    cluster.wait_for("the broker cluster of three", lambda: broker_running_nodes(node) == expected, timeout=120)


# --- (c) quorum lost (two of three killed), restored by the runbook from the last S3 snapshot --------------


def etcdctl(node: Node, command: str, *, timeout: float = 60) -> str:
    """etcdctl on the node as the runbook has an operator run it: root's credentials from their file."""
    script = f"export ETCDCTL_USER=$(cat /run/alchemy/etcd/root.credentials); /opt/bin/etcdctl {command}"
    return node.sh(script, timeout=timeout).stdout.strip()


def node_setting(node: Node, name: str) -> str:
    return node.sh(f"sed -n 's/^{name}=//p' /etc/environment").stdout.strip()


def etcd_waiting_for_recovery(node: Node) -> bool:
    """etcd-membership has started and refuses to found a cluster beside the one that lost quorum."""
    return "waiting for it to recover" in node.sh("journalctl -u etcd-membership.service --no-pager -q").stdout


@pytest.fixture(scope="module")
def restored(cluster: Cluster, first_boot: dict[str, float]) -> dict:
    """A key is written, the hourly snapshot runs, a second key is written; two nodes die at once and the group
    replaces them; the runbook (OPERATIONS.md, "Restoring a snapshot") is then run as written: the snapshot
    listed and presigned from outside, etcd stopped everywhere, restored on every node, started again."""
    nodes = sorted(cluster.nodes.values(), key=lambda n: n.ip)
    host = queue_host(cluster)
    survivor = next((n for n in nodes if n.ip == host), nodes[0])
    victims = [n for n in nodes if n is not survivor]
    started = time.time()
    outcome: dict = {"survivor": survivor}
    try:
        etcdctl(survivor, "put /alchemy-boot/restore-check before-the-snapshot")
        for node in nodes:
            node.sh("systemctl start etcd-snapshot.service", timeout=120)
        cluster.event(survivor.hostname, "etcd-snapshot.service", "ran on every node")
        etcdctl(survivor, "put /alchemy-boot/after-the-snapshot written-after-it")
        bucket, prefix = node_setting(survivor, "ETCD_SNAPSHOT_BUCKET"), node_setting(survivor, "ETCD_SNAPSHOT_PREFIX")
        s3 = cluster.cloud.client("s3")
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))
        outcome["snapshots"] = keys
        assert keys, f"no snapshot under s3://{bucket}/{prefix}"
        for victim in victims:
            victim.kill()
            cluster.event(victim.hostname, "instance", "killed")
        replacements = []
        for victim in victims:
            cluster.cloud.drop_instance(victim.instance_id, decrement=False)
            cluster.forget(victim.instance_id)
            instance_id, ip = cluster.cloud.launch_replacement()
            replacements.append(cluster.launch(instance_id, ip))
        outcome["replacements"] = replacements
        # The runbook starts once the group has replaced the dead: the new nodes wait, refusing to found a
        # second cluster beside the survivor's, which answers without quorum.
        cluster.wait_for(
            "the new nodes' etcd-membership to wait for the lost cluster",
            lambda: all(etcd_waiting_for_recovery(n) for n in replacements),
            timeout=300,
        )
        cluster.event(survivor.hostname, "runbook", "begins")
        members = sorted(cluster.nodes.values(), key=lambda n: n.instance_id)
        initial = ",".join(f"{n.instance_id}=http://{n.ip}:2380" for n in members)
        # From the operator's machine: list the prefix, presign the newest (reached by the nodes).
        presigner = cluster.cloud.presigning_client()
        url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": keys[-1]}, ExpiresIn=900)
        image = survivor.sh("sed -n 's/^image=//p' /opt/bin/etcdctl").stdout.strip()
        # The new nodes first: stopped while the survivor's etcd still answers, they cannot found an empty
        # cluster in between. hosts.service wants etcd and restarts every 5 s: it goes too, or it starts
        # etcd again (on the old data) right after the stop.
        for node in [*replacements, survivor]:
            node.sh("systemctl stop hosts.service etcd.service etcd-membership.service", timeout=180)
        for node in members:
            restore = (
                f"curl -fsS -o /tmp/snap.db {shlex.quote(url)} && "
                "{ [ ! -e /var/lib/etcd ] || mv /var/lib/etcd /var/lib/etcd.lost-$(date +%s); } && "
                f"docker run --rm --network host --volume /var/lib:/var/lib --volume /tmp:/tmp "
                f"--entrypoint etcdutl {image} snapshot restore /tmp/snap.db --name {node.instance_id} "
                f"--initial-cluster {initial} --initial-cluster-token alchemy-restore-boot "
                f"--initial-advertise-peer-urls http://{node.ip}:2380 --data-dir /var/lib/etcd"
            )
            result = node.sh(restore, timeout=120)
            assert result.returncode == 0, f"{node.hostname}: {result.stderr}"
        for node in members:
            node.sh("systemctl start --no-block etcd.service hosts.service")
        cluster.event(survivor.hostname, "runbook", "etcd started on every node")
        since = time.time()
        for node in members:
            wait_ready(cluster, node, since=since, timeout=REPLACEMENT_WAIT)
        outcome["seconds"] = time.time() - started
    finally:
        cluster.print_timeline("(c) quorum lost, restored from the last snapshot", since=started)
    print(f"\nquorum loss to all three ready: {outcome.get('seconds', float('nan')):.1f} s")
    return outcome


def test_quorum_loss_restore_brings_back_the_snapshot_data(restored: dict) -> None:
    assert etcdctl(restored["survivor"], "get /alchemy-boot/restore-check --print-value-only") == "before-the-snapshot"


def test_quorum_loss_restore_is_the_snapshot_not_later(restored: dict) -> None:
    assert etcdctl(restored["survivor"], "get /alchemy-boot/after-the-snapshot --print-value-only") == ""


def test_quorum_loss_restore_ends_with_the_live_instances_as_members(cluster: Cluster, restored: dict) -> None:
    cluster.wait_for(
        "etcd members = the live instances", lambda: member_names(cluster) == sorted(cluster.nodes), timeout=60
    )


def test_quorum_loss_restore_answers_hello_on_every_node(cluster: Cluster, restored: dict) -> None:
    for node in cluster.nodes.values():
        wait_ready(cluster, node, since=restored["survivor"].boots[-1], timeout=60)


def test_quorum_loss_restore_new_nodes_join_the_broker(cluster: Cluster, restored: dict) -> None:
    expected = sorted(f"rabbit@{n.ip}" for n in cluster.nodes.values())
    cluster.wait_for(
        "one broker cluster of the live nodes",
        lambda: broker_running_nodes(restored["survivor"]) == expected,
        timeout=120,
    )


# --- (d) rolling replacement of all three, one at a time, through the lifecycle hook ---------------------------


@pytest.fixture(scope="module")
def rolled(cluster: Cluster, restored: dict) -> dict:
    """As CloudFormation's rolling update of this group does it (MaxBatchSize 1, MinInstancesInService one
    below the group's size, wait on signals): each old instance is terminated through the lifecycle hook (the
    group's scale-in path: it leaves etcd and the broker, then completes the action), then its replacement is
    launched and its signal awaited before the next old one goes."""
    host = queue_host(cluster)
    old = sorted(cluster.nodes.values(), key=lambda n: (n.ip == host, n.ip))
    started = time.time()
    leaves = []
    signalled = []
    try:
        for node in old:
            leaves.append({"node": node, **terminate_through_hook(cluster, node)})
            since = time.time()
            instance_id, ip = cluster.cloud.launch_replacement()
            new = cluster.launch(instance_id, ip)
            try:
                wait_signal(cluster, new, since=since, timeout=REPLACEMENT_WAIT)
                wait_ready(cluster, new, since=since, timeout=60)
                signalled.append(True)
            except AssertionError:
                signalled.append(False)
                cluster.event(new.hostname, "harness", "no signal: the next old node goes anyway")
    finally:
        cluster.print_timeline("(d) rolling replacement of all three", since=started)
    ended = time.time()
    print(
        f"\nrolling replacement: {ended - started:.1f} s; hook completed after (s) "
        f"{[round(leave['seconds'], 1) for leave in leaves]}"
    )
    rounds = rounds_overlapping(cluster.probes.values(), started, ended)
    return {"old": old, "rounds": rounds, "leaves": leaves, "signalled": signalled}


def test_rolling_replacement_leaves_none_of_the_old_instances(cluster: Cluster, rolled: dict) -> None:
    assert not {n.instance_id for n in rolled["old"]} & set(cluster.nodes)


def test_rolling_replacement_completes_each_hook_with_continue_for_its_own_group(
    cluster: Cluster, rolled: dict
) -> None:
    assert [
        (leave["completion"]["LifecycleActionResult"], leave["completion"]["AutoScalingGroupName"])
        for leave in rolled["leaves"]
    ] == [("CONTINUE", cluster.group)] * 3


def test_rolling_replacement_leaves_etcd_before_completing_the_hook(rolled: dict) -> None:
    assert [leave["node"].instance_id in leave["etcd_members"] for leave in rolled["leaves"]] == [False] * 3


def test_rolling_replacement_leaves_the_broker_before_completing_the_hook(rolled: dict) -> None:
    assert [f"rabbit@{leave['node'].ip}" in leave["broker_members"] for leave in rolled["leaves"]] == [False] * 3


def test_rolling_replacement_the_first_two_new_nodes_signal(rolled: dict) -> None:
    """Replacing the two nodes that do not hold the hello_world queue."""
    assert rolled["signalled"][:2] == [True, True]


def test_rolling_replacement_the_last_new_node_signals(rolled: dict) -> None:
    """After the node that held the hello_world queue left."""
    assert rolled["signalled"][2:] == [True]


def test_rolling_replacement_keeps_hello_answering_throughout(cluster: Cluster, rolled: dict) -> None:
    silent = {
        number: [(round(s.time - cluster.started, 1), s.node, s.hello_code) for s in samples]
        for number, samples in rolled["rounds"].items()
        if not any(s.hello for s in samples)
    }
    assert silent == {}, "rounds with no 200 (seconds on the timeline, node, status)"


def test_rolling_replacement_keeps_etcd_quorum_throughout(cluster: Cluster, rolled: dict) -> None:
    lost = {
        number: [(round(s.time - cluster.started, 1), s.node, s.etcd_state) for s in samples]
        for number, samples in rolled["rounds"].items()
        if sum(s.etcd for s in samples) < 2
    }
    assert lost == {}, "rounds with fewer than two healthy members (seconds on the timeline, node, etcd)"


def test_rolling_replacement_keeps_a_broker_majority_throughout(rolled: dict) -> None:
    """In every sampling round some broker sees a majority of the three running (one slow answer is not a loss)."""
    lost = [number for number, samples in rolled["rounds"].items() if max(s.brokers_running for s in samples) < 2]
    assert lost == []


def test_rolling_replacement_ends_with_three_members(cluster: Cluster, rolled: dict) -> None:
    assert member_names(cluster) == sorted(cluster.nodes)


# --- (e) a node killed without warning, and its replacement (whose first boot meets transient faults) --------


def broker_forgotten(cluster: Cluster, survivors: list[Node], victim: Node) -> bool:
    return all(f"rabbit@{victim.ip}" not in broker_members(n) for n in survivors)


@pytest.fixture(scope="module")
def killed(cluster: Cluster, rolled: dict) -> dict:
    """Kills one node (PID 1 and everything with it); the group, seeing it unhealthy, terminates it and
    launches a replacement at once. The replacement's first boot meets a failing image pull (twice), Secrets
    Manager throttling (its first two calls) and a metadata service answering 500 (its first three requests).
    Returns when each cleanup was seen and the replacement signalled."""
    host = queue_host(cluster)
    ordered = sorted(cluster.nodes.values(), key=lambda n: n.ip)
    victim = next((n for n in ordered if n.ip == host), ordered[-1])
    survivors = [n for n in cluster.nodes.values() if n is not victim]
    started = time.time()
    victim.kill()
    cluster.event(victim.hostname, "instance", "killed")
    cluster.cloud.drop_instance(victim.instance_id, decrement=False)
    cluster.forget(victim.instance_id)
    instance_id, ip = cluster.cloud.launch_replacement()
    replacement = cluster.prepare(instance_id, ip)
    (replacement.merged / "etc/alchemy-boot/faults/pull").write_text("2")
    cluster.cloud.throttle_secrets(ip, 2)
    cluster.metadata[instance_id].fail_requests = 3
    cluster.event(replacement.hostname, "faults", "pull x2, secretsmanager x2, metadata x3")
    cluster.boot(replacement)
    seen: dict[str, float] = {}
    checks: dict[str, Callable[[], bool]] = {
        "hosts": lambda: all(victim.hostname not in hosts_block(n) for n in survivors),
        "broker": lambda: broker_forgotten(cluster, survivors, victim),
        "signal": lambda: bool([s for s in cluster.cloud.signals_from(instance_id) if s["time"] > started]),
    }

    def all_seen() -> bool:
        for name, check in checks.items():
            if name not in seen and check():
                seen[name] = time.time() - started
                cluster.event(victim.hostname if name != "signal" else replacement.hostname, f"seen: {name}", "done")
        return len(seen) == len(checks)

    try:
        cluster.wait_for(
            "the dead node cleaned up and its replacement signalled", all_seen, timeout=REPLACEMENT_WAIT, interval=1
        )
    except AssertionError:
        pass  # each test below names what was not seen
    finally:
        cluster.print_timeline("(e) a node killed without warning, and its faulty replacement", since=started)
    print(f"\nkilled node: seen after (s) {seen}")
    return {"victim": victim, "survivors": survivors, "replacement": replacement, "seen": seen, "started": started}


def test_killed_node_leaves_the_hosts_files_within_the_bound(killed: dict) -> None:
    assert killed["seen"].get("hosts", float("inf")) < CLEANUP_BOUND


def test_killed_node_broker_membership_is_forgotten_within_the_bound(killed: dict) -> None:
    assert killed["seen"].get("broker", float("inf")) < CLEANUP_BOUND


def test_killed_node_etcd_member_is_replaced(cluster: Cluster, killed: dict) -> None:
    """Within a minute of the replacement's signal."""
    cluster.wait_for(
        "etcd members = the live instances", lambda: member_names(cluster) == sorted(cluster.nodes), timeout=60
    )


def test_killed_node_replacement_heals_its_transient_failures_and_signals_success(
    cluster: Cluster, killed: dict
) -> None:
    assert [s["status"] for s in cluster.cloud.signals_from(killed["replacement"].instance_id)] == ["SUCCESS"]


def test_killed_node_replacement_met_all_three_faults(cluster: Cluster, killed: dict) -> None:
    replacement = killed["replacement"]
    assert (
        (replacement.merged / "etc/alchemy-boot/faults/pull").read_text(),
        cluster.cloud.records.throttle[replacement.ip],
        cluster.metadata[replacement.instance_id].fail_requests,
    ) == ("0", 0, 0)


def test_killed_node_replacement_leaves_no_failed_unit(killed: dict) -> None:
    assert killed["replacement"].sh("systemctl --failed --no-legend --plain").stdout.strip() == ""


def test_killed_node_replacement_answers_hello(cluster: Cluster, killed: dict) -> None:
    wait_ready(cluster, killed["replacement"], since=killed["started"], timeout=30)


def test_killed_node_replacement_is_in_every_hosts_file(cluster: Cluster, killed: dict) -> None:
    expected = {n.hostname: n.ip for n in cluster.nodes.values()}
    cluster.wait_for(
        "every hosts file to list the live nodes",
        lambda: (
            {n.hostname: hosts_block(n) for n in cluster.nodes.values()}
            == {n.hostname: expected for n in cluster.nodes.values()}
        ),
        timeout=60,
    )
