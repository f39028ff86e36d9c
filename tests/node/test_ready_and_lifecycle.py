"""alchemy-ready and alchemy-lifecycle: the ready signal's three conditions, and leaving through the hook.

The router and the broker's management API are one small HTTP server on loopback, etcd is a real member of
the shared cluster, and the CloudFormation and lifecycle calls are recorded by an `aws` on PATH (moto has
neither SignalResource's wait nor CompleteLifecycleAction).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.node.harness import (
    SCRIPTS,
    FakeImds,
    FirstBoot,
    base_environment,
    fake_commands,
    recording,
    run_script,
    serve_in_background,
)


class Router:
    """GET /v1/hello answered with `status`; the broker's GET /api/nodes?columns=name,running lists `brokers`
    as running members (and one stopped member besides), to the admin user only."""

    def __init__(self) -> None:
        self.status = 200
        self.brokers: list[str] = []
        router = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b""
                if self.path == "/v1/hello":
                    status = router.status
                elif self.path == "/api/nodes?columns=name,running":
                    status = 200 if self.headers.get("Authorization") == f"Basic {ADMIN_AUTHORIZATION}" else 401
                    members = [{"name": name, "running": True} for name in router.brokers]
                    body = json.dumps([*members, {"name": "rabbit@10.9.9.9", "running": False}]).encode()
                else:
                    status = 404
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        serve_in_background(self.server)

    @property
    def port(self) -> int:
        port: int = self.server.server_address[1]
        return port


@pytest.fixture
def router() -> Iterator[Router]:
    service = Router()
    try:
        yield service
    finally:
        service.server.shutdown()
        service.server.server_close()


ADMIN_AUTHORIZATION = base64.b64encode(b"alchemy:AdminPw9").decode()


def ready(
    tmp_path: Path, cluster: FirstBoot, router: Router, running: list[str], **extra: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    node = cluster.nodes[0]
    log = tmp_path / "aws-calls"
    router.brokers = running
    path = fake_commands(tmp_path / "bin", {"aws": recording(log)})
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(f"cluster_formation.target_cluster_size_hint = 3\nmanagement.tcp.port = {router.port}\n")
    credentials = tmp_path / "20-credentials.conf"
    credentials.write_text("default_user = alchemy\ndefault_pass = AdminPw9\n")
    environment = base_environment(
        {
            "PATH": path,
            "STACK_NAME": "alchemy",
            "NODE_GROUP_LOGICAL_ID": "NodesAsg1234",
            "AWS_REGION": "eu-west-1",
            "INSTANCE_ID": node.instance_id,
            "PRIVATE_IP": node.ip,
            "ROUTER_PORT": str(router.port),
            "READY_TIMEOUT": "3",
            "READY_INTERVAL": "0.2",
            "RABBITMQ_CONF": str(conf),
            "RABBITMQ_CREDENTIALS": str(credentials),
            **extra,
        }
    )
    return run_script("alchemy-ready", environment), log


def three_brokers(cluster: FirstBoot) -> list[str]:
    return [f"rabbit@{node.ip}" for node in cluster.nodes]


def signal_of(log: Path) -> str:
    (call,) = log.read_text().splitlines()
    return call


def test_ready_when_all_three_hold(tmp_path: Path, shared_cluster: FirstBoot, router: Router) -> None:
    result, log = ready(tmp_path, shared_cluster, router, three_brokers(shared_cluster))

    assert result.returncode == 0, result.stderr
    assert signal_of(log).endswith(
        "cloudformation signal-resource --stack-name alchemy --logical-resource-id NodesAsg1234 "
        f"--unique-id {shared_cluster.nodes[0].instance_id} --status SUCCESS"
    )


def test_an_error_from_the_router_is_not_ready(tmp_path: Path, shared_cluster: FirstBoot, router: Router) -> None:
    router.status = 502

    result, log = ready(tmp_path, shared_cluster, router, three_brokers(shared_cluster))

    assert result.returncode != 0
    assert "GET /v1/hello through the router answered 502" in result.stderr
    assert signal_of(log).endswith("--status FAILURE")


def test_a_broker_alone_is_not_ready(tmp_path: Path, shared_cluster: FirstBoot, router: Router) -> None:
    result, log = ready(tmp_path, shared_cluster, router, [f"rabbit@{shared_cluster.nodes[0].ip}"])

    assert result.returncode != 0
    assert "does not run in a cluster of 2 or more" in result.stderr
    assert signal_of(log).endswith("--status FAILURE")


def test_an_unhealthy_etcd_member_is_not_ready(tmp_path: Path, shared_cluster: FirstBoot, router: Router) -> None:
    silent = "127.0.0.9"
    result, log = ready(tmp_path, shared_cluster, router, [f"rabbit@{silent}"] * 3, PRIVATE_IP=silent)

    assert result.returncode != 0
    assert f"the etcd member at {silent} is not healthy" in result.stderr
    assert signal_of(log).endswith("--status FAILURE")


def test_no_stack_name_is_refused_by_name(tmp_path: Path, shared_cluster: FirstBoot, router: Router) -> None:
    result, log = ready(tmp_path, shared_cluster, router, three_brokers(shared_cluster), STACK_NAME="")

    assert result.returncode != 0
    assert "STACK_NAME" in result.stderr
    assert not log.exists()


def lifecycle(tmp_path: Path, imds: FakeImds, cluster: FirstBoot) -> tuple[subprocess.Popen[str], Path]:
    """alchemy-lifecycle with systemctl, etcd-leave and the hook's completion recorded in one log, in order;
    every other AWS call (the group of the instance) goes to moto."""
    log = tmp_path / "calls"
    real = base_environment()["PATH"]
    aws = f'case "$*" in *complete-lifecycle-action*) {recording(log)} ;; esac\nPATH={real} exec aws "$@"'
    path = fake_commands(
        tmp_path / "bin", {"systemctl": recording(log), "etcd-leave": recording(log), "aws": aws}, path=real
    )
    environment = base_environment(
        {
            **cluster.fleet.cloud.environment,
            "PATH": path,
            "IMDS_ENDPOINT": imds.endpoint,
            "INSTANCE_ID": cluster.nodes[0].instance_id,
            "LIFECYCLE_HOOK_NAME": "alchemy-terminate",
            "LIFECYCLE_POLL_INTERVAL": "0.2",
        }
    )
    process = subprocess.Popen([str(SCRIPTS / "alchemy-lifecycle")], env=environment, stderr=subprocess.PIPE, text=True)
    return process, log


def test_a_terminated_instance_leaves_then_completes_the_hook(
    tmp_path: Path, imds: FakeImds, shared_cluster: FirstBoot
) -> None:
    imds.values["autoscaling/target-lifecycle-state"] = "InService"
    process, log = lifecycle(tmp_path, imds, shared_cluster)
    try:
        time.sleep(1)
        assert process.poll() is None
        assert not log.exists()

        imds.values["autoscaling/target-lifecycle-state"] = "Terminated"
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 0, stderr
    stop, leave, complete = log.read_text().splitlines()
    assert stop.startswith("systemctl stop ")
    assert {"rabbitmq.service", "etcd.service", "hosts.service", "router@*.service"} <= set(stop.split()[2:])
    assert leave == "etcd-leave "
    assert complete.endswith(
        "autoscaling complete-lifecycle-action --lifecycle-hook-name alchemy-terminate --auto-scaling-group-name "
        f"{shared_cluster.group} --instance-id {shared_cluster.nodes[0].instance_id} --lifecycle-action-result CONTINUE"
    )
