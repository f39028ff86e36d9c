"""What the node scripts run against here: moto standing in for EC2, Auto Scaling and S3, and real etcd.

Each node is one etcd process bound to its instance's private IP. The group's subnet lies in 127.0.0.0/8,
so moto hands out loopback addresses and the scripts need no test-only override: Linux routes the whole
range to lo, and every member listens on its own address with the real ports 2379 and 2380.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "alchemy_constructs" / "node_scripts"
VENV_BIN = Path(sys.executable).parent
WARM_AWS_BIN: Path | None = None
"""Where the warm AWS CLI's `aws` is (tests/node/warm_aws.py), once the session has started it."""
INSTALL_HINT = "run `bash scripts/install-node-test-deps.sh` (as root) to install etcd-server and etcd-client"
REGION = "eu-west-1"
SCRIPT_TIMEOUT = 60
NO_IMDS = "http://127.0.0.1:9"
"""The discard port on loopback: nothing answers, so a script that asks instance metadata unbidden fails fast."""
ETCD_TEST_TIMINGS = {"ETCD_HEARTBEAT_INTERVAL": "50", "ETCD_ELECTION_TIMEOUT": "500"}
"""Raft timings for the test clusters (ms), half etcd's defaults (100/1000): loopback peers answer within a
millisecond, so the first leader is elected sooner and a lost one noticed sooner, while an election timeout
ten heartbeats long still rides out a busy machine. Set beside the env file's variables, which win."""
NO_CREDENTIALS = "/dev/null/no-credentials"
MOTO_CREDENTIAL = "testing"
"""moto accepts any access key and secret; the CLI and boto3 only need something to sign with."""


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, interval: float = 0.2, details: Callable[[], str] = str
) -> None:
    """Polls `check` until it holds; fails with `what` (and `details()`) once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{details()}")
        time.sleep(interval)


def base_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A node's environment: no ETCD*/AWS* settings leak in from the machine, the pinned CLIs come first."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ETCD", "AWS_", "HOSTS_", "INSTANCE_ID", "PRIVATE_IP", "IMDS_"))
    }
    first = [str(path) for path in (WARM_AWS_BIN, VENV_BIN) if path is not None]
    environment["PATH"] = os.pathsep.join([*first, environment.get("PATH", "/usr/bin:/bin")])
    # Never the real metadata address, nor a credentials file this machine may have: a test that needs either
    # passes its own.
    environment["IMDS_ENDPOINT"] = NO_IMDS
    environment["ETCD_CREDENTIALS_FILE"] = NO_CREDENTIALS
    environment.update(extra or {})
    return environment


def run_script(
    name: str, environment: Mapping[str, str], timeout: float = SCRIPT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / name)],
        env=dict(environment),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def etcdctl(endpoint: str, *args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["etcdctl", f"--endpoints={endpoint}", "--dial-timeout=2s", "--command-timeout=5s", *args],
        env=base_environment({"ETCDCTL_API": "3"}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Member:
    id: str
    status: str
    name: str
    peer_url: str
    client_url: str


def member_list(endpoint: str) -> list[Member]:
    result = etcdctl(endpoint, "member", "list", "-w", "simple")
    assert result.returncode == 0, result.stderr
    members = []
    for line in result.stdout.splitlines():
        fields = line.split(", ")
        members.append(Member(*fields[:5]))
    return sorted(members, key=lambda member: member.peer_url)


def listens(endpoint: str) -> bool:
    """Something accepts connections at the endpoint's address (``http://ip:port``)."""
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) == 0


def is_healthy(endpoint: str) -> bool:
    # Only once the port listens: etcdctl started before that waits out gRPC's reconnect back-off (about a
    # second) before it reports anything, and a poll would pay that on every node that boots.
    return listens(endpoint) and etcdctl(endpoint, "endpoint", "health").returncode == 0


def is_leader(endpoint: str) -> bool:
    """The member that reports itself as the leader (etcdctl 3.4 and 3.5 both print MemberID and Leader)."""
    output = etcdctl(endpoint, "endpoint", "status", "-w", "fields").stdout
    fields = dict(line.split(" : ", 1) for line in output.splitlines() if " : " in line)
    return bool(fields) and fields['"MemberID"'] == fields['"Leader"']


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, split at the first `=`, exactly as systemd's EnvironmentFile and docker's --env-file."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return dict(pairs)


@dataclass
class Node:
    """One instance of the group: its etcd process, data dir and env file live under `home`."""

    instance_id: str
    ip: str
    home: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.home / "etcd"

    @property
    def env_file(self) -> Path:
        return self.home / "cluster.env"

    @property
    def endpoint(self) -> str:
        return f"http://{self.ip}:2379"

    def environment(self, group: str, aws: Mapping[str, str], **extra: str) -> dict[str, str]:
        return base_environment(
            {
                **aws,
                "ETCD_ASG_NAME": group,
                "INSTANCE_ID": self.instance_id,
                "PRIVATE_IP": self.ip,
                "ETCD_ENV_FILE": str(self.env_file),
                "ETCD_DATA_DIR": str(self.data_dir),
                # Every node shares this machine's 127.0.0.1: none may claim its port 2379.
                "ETCD_LOCAL_CLIENT_URL": "",
                "ETCD_BOOT_TIMEOUT": "20",
                "ETCD_POLL_INTERVAL": "1",
                **extra,
            }
        )

    def start_etcd(self) -> None:
        """Starts etcd with the env file's variables, as the node's unit does (and the test raft timings)."""
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **ETCD_TEST_TIMINGS,
            **read_env_file(self.env_file),
        }
        log = (self.home / "etcd.log").open("ab")
        self.process = subprocess.Popen(["etcd"], env=environment, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill_etcd(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        path = self.home / "etcd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@dataclass
class Cloud:
    """The moto server's EC2, Auto Scaling and S3, with groups whose subnets are loopback /24s."""

    endpoint: str
    vpc_id: str
    network_prefix: str
    clients: dict[str, Any] = field(default_factory=dict)
    subnets: int = 0
    image_id: str = ""

    @property
    def environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": MOTO_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": MOTO_CREDENTIAL,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str) -> Any:
        if service not in self.clients:
            import boto3  # type: ignore[import-untyped]

            self.clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id=MOTO_CREDENTIAL,
                aws_secret_access_key=MOTO_CREDENTIAL,
            )
        return self.clients[service]

    def create_group(self, name: str, size: int) -> str:
        """An Auto Scaling group of `size` instances in a fresh loopback /24 (moto starts them InService)."""
        ec2 = self.client("ec2")
        self.subnets += 1
        subnet = ec2.create_subnet(
            VpcId=self.vpc_id,
            CidrBlock=f"{self.network_prefix}.{self.subnets}.0/24",
            AvailabilityZone=f"{REGION}a",
        )["Subnet"]["SubnetId"]
        if not self.image_id:
            # An image of this process's own: listing moto's thousand built-in images cost about 1.8 s of moto's
            # CPU, once per process.
            self.image_id = ec2.register_image(
                Name=f"alchemy-node-{self.vpc_id}", RootDeviceName="/dev/xvda", VirtualizationType="hvm"
            )["ImageId"]
        image = self.image_id
        ec2.create_launch_template(
            LaunchTemplateName=f"{name}-template",
            LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"},
        )
        self.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateName": f"{name}-template"},
            MinSize=size,
            MaxSize=size + 1,
            DesiredCapacity=size,
            VPCZoneIdentifier=subnet,
        )
        return name

    def instances(self, group: str) -> list[tuple[str, str]]:
        """(instance id, private IP) of the group's instances, sorted by id."""
        described = self.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
        ids = [instance["InstanceId"] for instance in described["AutoScalingGroups"][0]["Instances"]]
        reservations = self.client("ec2").describe_instances(InstanceIds=ids)["Reservations"]
        pairs = [(i["InstanceId"], i["PrivateIpAddress"]) for r in reservations for i in r["Instances"]]
        return sorted(pairs)

    def terminate(self, instance_id: str) -> None:
        """Terminates an instance the way a failed health check does: the group launches a replacement."""
        self.client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=False
        )


class Fleet:
    """Nodes of the groups a test creates; every etcd it started is killed at teardown."""

    def __init__(self, cloud: Cloud, home: Path) -> None:
        self.cloud = cloud
        self.home = home
        self.nodes: dict[str, Node] = {}

    def node(self, instance_id: str, ip: str) -> Node:
        if instance_id not in self.nodes:
            home = self.home / instance_id
            home.mkdir(parents=True)
            self.nodes[instance_id] = Node(instance_id, ip, home)
        return self.nodes[instance_id]

    def group_nodes(self, group: str) -> list[Node]:
        return [self.node(instance_id, ip) for instance_id, ip in self.cloud.instances(group)]

    def membership(self, group: str, nodes: list[Node], **extra: str) -> list[subprocess.CompletedProcess[str]]:
        """Runs etcd-membership on every node at once, as nodes that boot together do."""
        processes = [
            subprocess.Popen(
                [str(SCRIPTS / "etcd-membership")],
                env=node.environment(group, self.cloud.environment, **extra),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for node in nodes
        ]
        results = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=SCRIPT_TIMEOUT)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
        return results

    def boot(self, group: str, nodes: list[Node]) -> list[subprocess.CompletedProcess[str]]:
        """Membership then etcd on each node, and waits until every member answers healthy."""
        results = self.membership(group, nodes)
        for node, result in zip(nodes, results, strict=True):
            assert result.returncode == 0, f"{node.instance_id}: {result.stderr}"
        for node in nodes:
            node.start_etcd()
        for node, result in zip(nodes, results, strict=True):
            wait_for(
                f"{node.instance_id} to be healthy",
                lambda n=node: is_healthy(n.endpoint),  # type: ignore[misc]
                20,
                details=lambda n=node, r=result: f"etcd-membership said:\n{r.stderr}\netcd said:\n{n.log()}",  # type: ignore[misc]
            )
        return results

    def form_cluster(self, name: str, size: int) -> list[Node]:
        group = self.cloud.create_group(name, size)
        nodes = self.group_nodes(group)
        self.boot(group, nodes)
        return nodes

    def shutdown(self) -> None:
        for node in self.nodes.values():
            node.kill_etcd()


@dataclass
class FirstBoot:
    """A cluster formed by etcd-membership on a new group, and what each node saw and wrote at that time."""

    fleet: Fleet
    group: str
    nodes: list[Node]
    results: list[subprocess.CompletedProcess[str]]
    env_files: list[dict[str, str]]
    members: list[Member]


def etcd_missing() -> list[str]:
    return [binary for binary in ("etcd", "etcdctl") if shutil.which(binary) is None]


IMDS_TOKEN = "imds-session-token"


class FakeImds:
    """Instance metadata on 127.0.0.1: IMDSv2 only (a request without the session token is refused, as the
    launch template makes the real one do), `meta-data/<path>` answered from `values`, anything else 404."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values: dict[str, str] = dict(values or {})
        self.requests: list[str] = []
        self.on_request: Callable[[str], None] | None = None
        """Called with each meta-data path as it is asked for, before the answer: a test's cue."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self.answer(200, IMDS_TOKEN)
                else:
                    self.answer(400, "")

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                if fake.on_request is not None:
                    fake.on_request(self.path.removeprefix("/latest/meta-data/"))
                if self.headers.get("X-aws-ec2-metadata-token") != IMDS_TOKEN:
                    self.answer(401, "")
                    return
                value = fake.values.get(self.path.removeprefix("/latest/meta-data/"))
                self.answer(404, "") if value is None else self.answer(200, value)

            def answer(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = serve_in_background(self.server)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


SERVER_POLL_S = 0.05
"""How often a test's HTTP server looks for a shutdown: ``shutdown()`` waits for the next look, and at the
default half second that cost every test with a fake service half a second."""


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    """Serves ``server`` on a daemon thread until ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SERVER_POLL_S}, daemon=True)
    thread.start()
    return thread


def fake_commands(directory: Path, commands: Mapping[str, str], path: str | None = None) -> str:
    """PATH with `commands` (name -> sh script body) first, each an executable in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in commands.items():
        executable = directory / name
        executable.write_text(f"#!/bin/sh\n{body}\n")
        executable.chmod(0o755)
    return f"{directory}{os.pathsep}{path or base_environment()['PATH']}"


def recording(log: Path, status: int = 0) -> str:
    """A fake command's body: appends its name and arguments to `log`, one call a line, and exits `status`."""
    return f'echo "$(basename "$0") $*" >>{log}\nexit {status}'
