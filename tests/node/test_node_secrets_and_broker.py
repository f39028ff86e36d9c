"""alchemy-secrets, rabbitmq-users and rabbitmq-leave: the node's secrets and its broker's users and leave.

Secrets Manager and EC2 are moto's; instance metadata is a fake on loopback; the broker is a `docker` on PATH
that records each call (and what it read on standard input) and answers as rabbitmqctl would.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from alchemy_constructs.rabbitmq_config import SERVICE_USERS
from tests.node.harness import (
    Cloud,
    FakeImds,
    FirstBoot,
    base_environment,
    fake_commands,
    recording,
    run_script,
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


def broker(tmp_path: Path, change_password_status: int = 70) -> tuple[str, Path]:
    """A `docker` standing in for `docker exec rabbitmq ...`: records the call, and its standard input as a
    line of its own when it read one; change_password fails like rabbitmqctl's for a user that does not exist."""
    log = tmp_path / "docker-calls"
    body = (
        f'echo "$*" >>{log}\n'
        'case "$*" in *change_password*|*add_user*) echo "stdin: $(cat)" >>' + str(log) + " ;; esac\n"
        f'case "$*" in *change_password*) exit {change_password_status} ;; esac\n'
        "exit 0"
    )
    return fake_commands(tmp_path / "bin", {"docker": body}), log


def run_users(tmp_path: Path, path: str) -> subprocess.CompletedProcess[str]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "amqp-router.env").write_text(f"AMQP_URI={uri('router', 'RouterPw1')}\n")
    return run_script("rabbitmq-users", base_environment({"PATH": path, "ALCHEMY_RUN_DIR": str(run_dir)}))


def test_a_new_service_user_is_added_with_its_password_on_standard_input(tmp_path: Path) -> None:
    path, log = broker(tmp_path)

    result = run_users(tmp_path, path)

    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "exec -i rabbitmq rabbitmq-diagnostics -q check_running"
    assert calls[1:5] == [
        "exec -i rabbitmq rabbitmqctl change_password router",
        "stdin: RouterPw1",
        "exec -i rabbitmq rabbitmqctl add_user router",
        "stdin: RouterPw1",
    ]
    assert not [call for call in calls if "RouterPw1" in call and not call.startswith("stdin")]


def test_an_existing_user_gets_its_password_set_again(tmp_path: Path) -> None:
    path, log = broker(tmp_path, change_password_status=0)

    assert run_users(tmp_path, path).returncode == 0

    assert not [call for call in log.read_text().splitlines() if "add_user" in call]


def test_service_permissions_are_those_of_the_table(tmp_path: Path) -> None:
    path, log = broker(tmp_path)

    assert run_users(tmp_path, path).returncode == 0

    (call,) = [call for call in log.read_text().splitlines() if "set_permissions" in call]
    permissions = SERVICE_USERS["router"]
    assert call == (
        f"exec -i rabbitmq rabbitmqctl -q set_permissions -p / router "
        f"{permissions.configure} {permissions.write} {permissions.read}"
    )


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
