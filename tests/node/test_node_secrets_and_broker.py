"""alchemy-secrets, rabbitmq-users and rabbitmq-leave: the node's secrets and its broker's users and leave.

Secrets Manager and EC2 are moto's; instance metadata is a fake on loopback; the broker's management API is a
recording HTTP server on loopback, and for leaving, a `docker` on PATH records each rabbitmqctl call.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from alchemy_constructs.rabbitmq_config import SERVICE_USERS
from tests.node.harness import (
    Cloud,
    FakeImds,
    FirstBoot,
    base_environment,
    fake_commands,
    recording,
    run_script,
    serve_in_background,
)

BROKER_UID = 4242
PRIVATE_IP = "10.0.1.5"


def uri(user: str, password: str) -> str:
    """The AMQP URI of a service user on this node's broker (vhost "/")."""
    return f"amqp://{user}:{password}@{PRIVATE_IP}:5672/%2F"


def create_secret(cloud: Cloud, value: str) -> str:
    arn: str = cloud.client("secretsmanager").create_secret(Name=f"s-{uuid.uuid4().hex}", SecretString=value)["ARN"]
    return arn


def run_secrets(cloud: Cloud, run_dir: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    environment = base_environment(
        {
            **cloud.environment,
            "RABBITMQ_COOKIE_SECRET": create_secret(cloud, "COOKIE0123456789"),
            "RABBITMQ_ADMIN_SECRET": create_secret(cloud, "AdminPassw0rd"),
            "RABBITMQ_ADMIN_USER": "alchemy",
            "RABBITMQ_SERVICE_SECRETS": (
                f"router={create_secret(cloud, 'RouterPw1')} hello_world={create_secret(cloud, 'HelloPw2')}"
            ),
            "ETCD_ROOT_SECRET": create_secret(cloud, "EtcdRootPw3"),
            "PRIVATEIP": PRIVATE_IP,
            "RABBITMQ_UID": str(BROKER_UID),
            "ALCHEMY_RUN_DIR": str(run_dir),
            **extra,
        }
    )
    return run_script("alchemy-secrets", environment)


def test_each_service_gets_its_own_broker_uri(cloud: Cloud, tmp_path: Path) -> None:
    result = run_secrets(cloud, tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "amqp-router.env").read_text() == f"AMQP_URI={uri('router', 'RouterPw1')}\n"
    assert (tmp_path / "amqp-hello_world.env").read_text() == f"AMQP_URI={uri('hello_world', 'HelloPw2')}\n"
    assert not (tmp_path / "amqp.env").exists()


def test_etcd_root_credentials_are_readable_by_root_only(cloud: Cloud, tmp_path: Path) -> None:
    assert run_secrets(cloud, tmp_path).returncode == 0

    credentials = tmp_path / "etcd" / "root.credentials"
    assert credentials.read_text() == "root:EtcdRootPw3"
    assert (credentials.stat().st_uid, credentials.stat().st_mode & 0o777) == (0, 0o400)


def test_the_broker_owns_its_cookie_and_credentials(cloud: Cloud, tmp_path: Path) -> None:
    assert run_secrets(cloud, tmp_path).returncode == 0

    cookie = tmp_path / "rabbitmq" / ".erlang.cookie"
    credentials = tmp_path / "rabbitmq" / "conf.d" / "20-credentials.conf"
    assert cookie.read_text() == "COOKIE0123456789"
    assert credentials.read_text() == "default_user = alchemy\ndefault_pass = AdminPassw0rd\n"
    assert {path.stat().st_uid for path in (cookie, credentials)} == {BROKER_UID}
    assert {path.stat().st_mode & 0o077 for path in (cookie, credentials)} == {0}


def test_a_secret_read_that_fails_at_first_is_retried(cloud: Cloud, tmp_path: Path) -> None:
    """The first two AWS calls fail (a throttle, a NAT not forwarding yet); the run still succeeds."""
    calls = tmp_path / "calls"
    real = base_environment()["PATH"]
    flaky = f'echo x >>{calls}\n[ "$(wc -l <{calls})" -gt 2 ] || exit 255\nPATH={real} exec aws "$@"'
    path = fake_commands(tmp_path / "bin", {"aws": flaky})

    result = run_secrets(cloud, tmp_path / "run", PATH=path, RETRY_DELAY="0")

    assert result.returncode == 0, result.stderr
    assert "get failed (255); retry" in result.stderr
    assert (tmp_path / "run" / "secrets-written").exists()


def test_a_missing_setting_is_named(cloud: Cloud, tmp_path: Path) -> None:
    result = run_secrets(cloud, tmp_path, ETCD_ROOT_SECRET="")

    assert result.returncode != 0
    assert "ETCD_ROOT_SECRET" in result.stderr


@dataclass
class ManagementApi:
    """The broker's management API on loopback: records each request (method, path, basic auth, JSON body);
    refuses the first ``unavailable`` ones with 503, as a broker that is still booting would not answer."""

    unavailable: int = 0
    requests: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def management() -> Iterator[tuple[ManagementApi, int]]:
    api = ManagementApi()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if api.unavailable > 0:
                api.unavailable -= 1
                self.send_response(503)
            else:
                auth = base64.b64decode(self.headers.get("Authorization", "Basic ").split()[1]).decode()
                api.requests.append(("PUT", self.path, auth, body))
                self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serve_in_background(server)
    try:
        yield api, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_users(tmp_path: Path, port: int, **extra: str) -> subprocess.CompletedProcess[str]:
    run_dir = tmp_path / "run"
    (run_dir / "rabbitmq/conf.d").mkdir(parents=True)
    (run_dir / "amqp-router.env").write_text(f"AMQP_URI={uri('router', 'RouterPw1')}\n")
    (run_dir / "rabbitmq/conf.d/20-credentials.conf").write_text("default_user = alchemy\ndefault_pass = AdminPw9\n")
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(f"listeners.tcp.default = 5672\nmanagement.tcp.port = {port}\n")
    environment = base_environment(
        {"ALCHEMY_RUN_DIR": str(run_dir), "RABBITMQ_CONF": str(conf), "RETRY_DELAY": "0", **extra}
    )
    return run_script("rabbitmq-users", environment)


def test_a_service_user_is_put_with_its_password_as_the_admin(
    tmp_path: Path, management: tuple[ManagementApi, int]
) -> None:
    api, port = management

    result = run_users(tmp_path, port)

    assert result.returncode == 0, result.stderr
    method, path, auth, body = api.requests[0]
    assert (method, path, auth, sorted(body.items())) == (
        "PUT",
        "/api/users/router",
        "alchemy:AdminPw9",
        [("password", "RouterPw1"), ("tags", "")],
    )


def test_service_permissions_are_those_of_the_table(tmp_path: Path, management: tuple[ManagementApi, int]) -> None:
    api, port = management

    assert run_users(tmp_path, port).returncode == 0

    permissions = SERVICE_USERS["router"]
    assert api.requests[1] == (
        "PUT",
        "/api/permissions/%2F/router",
        "alchemy:AdminPw9",
        {"configure": permissions.configure, "write": permissions.write, "read": permissions.read},
    )


def test_a_broker_still_booting_is_waited_for(tmp_path: Path, management: tuple[ManagementApi, int]) -> None:
    api, port = management
    api.unavailable = 2

    result = run_users(tmp_path, port)

    assert result.returncode == 0, result.stderr
    assert [path for _, path, _, _ in api.requests] == ["/api/users/router", "/api/permissions/%2F/router"]


def test_no_secret_is_on_a_command_line(tmp_path: Path, management: tuple[ManagementApi, int]) -> None:
    """curl's arguments name neither password: the admin user comes as a config file, the service's as the body."""
    _, port = management
    log = tmp_path / "curl-arguments"
    path = fake_commands(tmp_path / "bin", {"curl": f'echo "$*" >>{log}\nexec /usr/bin/curl "$@"'})

    result = run_users(tmp_path, port, PATH=path)

    assert result.returncode == 0, result.stderr
    arguments = log.read_text()
    assert (arguments.count("/api/"), "RouterPw1" in arguments, "AdminPw9" in arguments) == (2, False, False)


def leave_broker(
    tmp_path: Path, imds: FakeImds, cluster: FirstBoot, docker_status: int = 0, **extra: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    log = tmp_path / "docker-calls"
    path = fake_commands(tmp_path / "bin", {"docker": recording(log, docker_status)})
    environment = base_environment(
        {
            **cluster.fleet.cloud.environment,
            "PATH": path,
            "IMDS_ENDPOINT": imds.endpoint,
            "INSTANCE_ID": cluster.nodes[0].instance_id,
            **extra,
        }
    )
    return run_script("rabbitmq-leave", environment), log


def test_a_broker_whose_instance_the_group_terminates_leaves_the_cluster(
    tmp_path: Path, imds: FakeImds, shared_cluster: FirstBoot
) -> None:
    imds.values["autoscaling/target-lifecycle-state"] = "Terminated"

    result, log = leave_broker(tmp_path, imds, shared_cluster)

    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [
        "docker exec rabbitmq rabbitmqctl -q stop_app",
        "docker exec rabbitmq rabbitmqctl -q reset",
    ]


def test_a_rebooting_broker_stays_a_member(tmp_path: Path, imds: FakeImds, shared_cluster: FirstBoot) -> None:
    imds.values["autoscaling/target-lifecycle-state"] = "InService"

    result, log = leave_broker(tmp_path, imds, shared_cluster)

    assert result.returncode == 0, result.stderr
    assert not log.exists()
    assert "the broker stays a member" in result.stderr


def test_a_failed_leave_never_fails_the_stop(tmp_path: Path, imds: FakeImds, shared_cluster: FirstBoot) -> None:
    imds.values["autoscaling/target-lifecycle-state"] = "Terminated"

    result, _ = leave_broker(tmp_path, imds, shared_cluster, docker_status=1, RABBITMQ_LEAVE_TIMEOUT="1")

    assert result.returncode == 0
    assert "the survivors will forget this member" in result.stderr
