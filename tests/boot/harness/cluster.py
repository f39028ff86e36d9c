"""The cluster under test: the bridge namespace, the stand-in for AWS, the node group and its nodes.

The harness plays EC2 and Auto Scaling: every instance moto lists in the group gets a node (its own
namespace, metadata service and container) booted from the same rendered user data. Everything it creates
is undone by ``close``, which the fixtures call however the test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.boot.harness import imds, netns
from tests.boot.harness.cloud import REGION, Cloud
from tests.boot.harness.node import COREOS_CLOUDINIT_PATH, REPOSITORY, TIMELINE_UNITS, Node, cloudinit_binary
from tests.boot.harness.userdata import STACK_NAME, RenderedUserData, render

SUBNET = "10.213.0"
NAMESPACE_PREFIX = "alchemyboot"


@dataclass
class Sample:
    time: float
    hello: bool
    etcd_state: str
    """healthy, unhealthy (etcd answered without a leader or quorum) or silent (no answer, asked twice)."""
    broker: bool
    """This node's broker runs as a cluster member (as its own management API lists it)."""
    brokers_running: int = 0
    """How many cluster members run, as this node's broker sees them (0: no answer)."""
    round: int = 0
    """Samples of one pass over the nodes share a round."""
    hello_code: str = ""
    """The HTTP status of GET /v1/hello (000: no answer within 5 s; the router may publish a request again for up
    to 3 s while a queue is declared again)."""
    node: str = ""

    @property
    def etcd(self) -> bool:
        """This node's etcd answered healthy."""
        return self.etcd_state == "healthy"


@dataclass
class Probe:
    """What the harness sees of one node, sampled every few seconds: the three readiness conditions."""

    samples: list[Sample] = field(default_factory=list)


def rounds_overlapping(probes: Iterable[Probe], started: float, ended: float) -> dict[int, list[Sample]]:
    """Every probing round with a sample taken from ``started`` to ``ended``, by number, each with all its samples.

    A round samples the nodes one after another, so a round under way as a phase starts or ends has samples on
    both sides of that moment. Cut at the moment, it would hold only some of the nodes, and the nodes left out
    would look like members lost; whole, it is one view of the cluster as the phase began or ended."""
    rounds: dict[int, list[Sample]] = {}
    for probe in probes:
        for sample in probe.samples:
            rounds.setdefault(sample.round, []).append(sample)
    return {
        number: samples
        for number, samples in sorted(rounds.items())
        if any(started <= sample.time <= ended for sample in samples)
    }


class Cluster:
    def __init__(self, *, root: Path, work: Path, ca_directory: Path, pydeps: Path | None, size: int = 3) -> None:
        for stale in netns.leftovers(NAMESPACE_PREFIX):
            subprocess.run(["ip", "netns", "del", stale], capture_output=True)
        self.root = root
        self.work = work
        self.pydeps = pydeps
        self.started = time.time()
        self.events: list[tuple[float, str, str, str]] = []
        self.nodes: dict[str, Node] = {}
        self.retired: list[Node] = []
        self.metadata: dict[str, imds.Instance] = {}
        self.metadata_servers: dict[str, Any] = {}
        self.probes: dict[str, Probe] = {}
        self._stop_probing = threading.Event()
        self._prober: threading.Thread | None = None
        self.network = netns.Network(prefix=f"{NAMESPACE_PREFIX}{os.getpid() % 100000}", subnet=SUBNET)
        try:
            self.cloud = Cloud(network=self.network, ca_directory=ca_directory)
            self.user_data: RenderedUserData = render(refs_for=self._stand_ins)
            # What cdk deploy does before the stack: the bootstrap assets bucket holds the bundle.
            self.cloud.publish(url=self.user_data.bundle_url, body=self.user_data.bundle)
            # What CloudFormation does: the deploy values parameter, resolved, under the name the nodes read.
            self.cloud.client("ssm").put_parameter(
                Name=self.user_data.deploy_values_parameter, Value=self.user_data.deploy_values, Type="String"
            )
            self.group = f"{STACK_NAME}-{self.user_data.group_logical_id}"
            self.cloud.create_group(
                name=self.group,
                subnet=SUBNET,
                size=size,
                tags={
                    "aws:cloudformation:stack-name": STACK_NAME,
                    "aws:cloudformation:logical-id": self.user_data.group_logical_id,
                    "Name": "alchemy-node",
                },
            )
        except BaseException:
            self.network.close()
            raise

    def _stand_ins(self, template: dict[str, Any]) -> dict[str, str]:
        refs = {}
        for name, resource in template["Resources"].items():
            if resource["Type"] == "AWS::SecretsManager::Secret":
                refs[name] = self.cloud.create_secret(name)
            elif resource["Type"] == "AWS::S3::Bucket":
                refs[name] = self.cloud.create_bucket(name)
            elif resource["Type"] == "AWS::SSM::Parameter":
                # A name such as CloudFormation generates; the parameter itself is put once it is resolved.
                refs[name] = f"CFN-{name}-boot"
        return refs

    def event(self, node: str, what: str, state: str) -> None:
        self.events.append((time.time(), node, what, state))

    # --- instances -------------------------------------------------------------------------------------

    def prepare(self, instance_id: str, ip: str) -> Node:
        """EC2 creates an instance of the group: its namespace, metadata service and layer (not booted)."""
        namespace = self.network.add_node(ip=ip)
        instance = imds.Instance(
            instance_id=instance_id,
            ip=ip,
            zone=f"{REGION}a",
            user_data=self.user_data.text,
            tags={
                "aws:cloudformation:stack-name": STACK_NAME,
                "aws:cloudformation:logical-id": self.user_data.group_logical_id,
                "aws:autoscaling:groupName": self.group,
            },
        )
        self.metadata[instance_id] = instance
        self.metadata_servers[instance_id] = imds.serve(instance, namespace)
        binds = []
        services = REPOSITORY / "alchemy_services"
        if services.is_dir():
            binds.append((services, "/opt/alchemy-boot/services/alchemy_services"))
        if self.pydeps is not None:
            binds.append((self.pydeps, "/opt/alchemy-boot/pydeps"))
        cloudinit = cloudinit_binary()
        if cloudinit is not None:
            binds.append((cloudinit, COREOS_CLOUDINIT_PATH))
        node = Node(
            instance_id=instance_id,
            ip=ip,
            namespace=namespace,
            directory=self.work / instance_id,
            root=self.root,
            extra_binds=binds,
            cloudinit=cloudinit,
        )
        self.nodes[instance_id] = node
        self.probes.setdefault(instance_id, Probe())
        node.prepare(
            images=self.user_data.images,
            aws_environment=self.cloud.node_environment(),
            ca=self.cloud.ca,
            gateway=self.network.gateway,
        )
        return node

    def boot(self, node: Node) -> None:
        node.boot()
        self.event(node.hostname, "instance", "boot")

    def launch(self, instance_id: str, ip: str) -> Node:
        node = self.prepare(instance_id, ip)
        self.boot(node)
        return node

    def launch_group(self) -> list[Node]:
        """Every instance of the group at once, as a new group's instances boot."""
        nodes = [self.prepare(instance_id, ip) for instance_id, ip, _ in self.cloud.instances()]
        for node in nodes:
            self.boot(node)
        return nodes

    def forget(self, instance_id: str) -> None:
        """The instance is terminated: its container, metadata service and namespace go."""
        node = self.nodes.pop(instance_id)
        node.kill()
        server = self.metadata_servers.pop(instance_id)
        server.shutdown()
        server.server_close()
        self.network.remove_node(node.namespace)
        self.retired.append(node)

    # --- observation -----------------------------------------------------------------------------------

    def start_probing(self, interval: float = 2.0) -> None:
        self._prober = threading.Thread(target=self._probe_loop, args=(interval,), daemon=True)
        self._prober.start()

    def _probe_loop(self, interval: float) -> None:
        number = 0
        while not self._stop_probing.is_set():
            number += 1
            for instance_id, node in list(self.nodes.items()):
                if node.running:
                    sample = self.sample(node)
                    if sample is not None:
                        sample.round = number
                        self.probes.setdefault(instance_id, Probe()).samples.append(sample)
            self._stop_probing.wait(interval)

    def sample(self, node: Node) -> Sample | None:
        taken = time.time()
        # The broker's members through the node's own broker_api (alchemy-lib), as the node's scripts ask.
        script = (
            "source /opt/bin/alchemy-lib; "
            "hello=$(curl -s -o /dev/null -m 5 -w '%{http_code}' http://127.0.0.1:8080/v1/hello); "
            # Asked again when it does not answer in time: one slow answer on a busy host is not a lost member.
            f"etcd=$(curl -s -m 3 http://{node.ip}:2379/health || curl -s -m 3 http://{node.ip}:2379/health); "
            "nodes=$(broker_api 'nodes?columns=name,running' -m 3); "
            'echo "hello=$hello"; echo "etcd=$etcd"; echo "brokers=$nodes"'
        )
        try:
            out = node.sh(f"bash -c {shlex.quote(script)}", timeout=15).stdout
        except subprocess.TimeoutExpired:
            return None
        code = re.search(r"^hello=(\d*)$", out, re.MULTILINE)
        hello_code = code[1] if code and code[1] else "none"
        hello = hello_code == "200"
        answered = re.search(r"^etcd=(.+)$", out, re.MULTILINE)
        etcd_state = "healthy" if '"health":"true"' in out else "unhealthy" if answered else "silent"
        listed = re.search(r"^brokers=(.*)$", out, re.MULTILINE)
        try:
            members = json.loads(listed[1]) if listed else []
        except json.JSONDecodeError:
            members = []
        running = {m.get("name") for m in members if isinstance(m, dict) and m.get("running")}
        broker = f"rabbit@{node.ip}" in running
        return Sample(
            time=taken,
            hello=hello,
            etcd_state=etcd_state,
            broker=broker,
            brokers_running=len(running),
            hello_code=hello_code,
            node=node.hostname,
        )

    def wait_for(self, what: str, condition: Any, *, timeout: float, interval: float = 2.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def timeline(self, nodes: list[Node] | None = None) -> list[tuple[float, str, str, str]]:
        """(seconds since the cluster started, node, unit, state) from every node's journal and the
        harness's own events (signals received, instances launched and terminated)."""
        rows: list[tuple[float, str, str, str]] = []
        for node in nodes if nodes is not None else [*self.nodes.values(), *self.retired]:
            for entry in node.journal():
                unit = entry.get("UNIT")
                if unit not in TIMELINE_UNITS or entry.get("_PID") != "1":
                    continue
                message = entry.get("MESSAGE", "")
                if isinstance(message, list):
                    continue
                state = _state_of(message)
                if state is None:
                    continue
                stamp = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
                rows.append((stamp, node.hostname, unit, state))
        for signal in self.cloud.records.signals:
            host = next(
                (n.hostname for n in [*self.nodes.values(), *self.retired] if n.instance_id == signal["unique_id"]),
                signal["unique_id"],
            )
            rows.append((signal["time"], host, "SignalResource", signal["status"]))
        for completion in self.cloud.records.lifecycle_completions:
            rows.append(
                (
                    completion["time"],
                    completion.get("InstanceId", "?"),
                    "CompleteLifecycleAction",
                    completion.get("LifecycleActionResult", "?"),
                )
            )
        rows.extend(self.events)
        return sorted((stamp - self.started, host, unit, state) for stamp, host, unit, state in rows)

    def print_timeline(self, title: str, *, since: float | None = None) -> None:
        """The rows from ``since`` (wall clock) on: seconds since the cluster started, node, unit, state, and
        seconds since that node's latest boot before the row (blank for the harness's own rows of a node
        not booted then)."""
        boots: dict[str, list[float]] = {}
        for node in [*self.nodes.values(), *self.retired]:
            boots.setdefault(node.hostname, []).extend(node.boots)
        print(f"\n=== timeline: {title}")
        print(f"{'cluster s':>9}  {'node':16} {'unit':32} {'state':18} {'s since boot':>12}")
        for seconds, host, unit, state in self.timeline():
            stamp = seconds + self.started
            if since is not None and stamp < since - 1:
                continue
            booted = [b for b in boots.get(host, []) if b <= stamp]
            since_boot = f"{stamp - max(booted):12.1f}" if booted else ""
            print(f"{seconds:9.1f}  {host:16} {unit:32} {state:18} {since_boot}")

    def close(self) -> None:
        self._stop_probing.set()
        if self._prober is not None:
            self._prober.join(timeout=30)
        for node in self.nodes.values():
            if node.running:
                node.send_kill()
        for instance_id in list(self.nodes):
            with contextlib.suppress(Exception):
                self.forget(instance_id)
        for node in self.retired:
            node.release(keep_journal=self.work / "journals")
        self.retired.clear()
        try:
            self.cloud.close()
        finally:
            self.network.close()


STATES = (
    ("Starting ", "activating"),
    ("Started ", "active"),
    ("Finished ", "active"),
    ("Dependency failed", "dependency-failed"),
    ("Failed with result", "failed"),
    ("Scheduled restart job", "restart-scheduled"),
    ("Stopping ", "deactivating"),
    ("Stopped ", "inactive"),
    ("Deactivated successfully", "inactive"),
)


def _state_of(message: str) -> str | None:
    for prefix, state in STATES:
        if prefix in message:
            return state
    return None
