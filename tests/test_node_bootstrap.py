"""The node's cloud-config and bundle: valid for coreos-cloudinit, a small stub, and complete.

These tests check what a node would receive: the document's keys against coreos-cloudinit's
schema, the user data size (a stub that fetches the bundle, whatever the number of services),
every unit with `systemd-analyze verify`, every script (and inline ExecStart command) with
shellcheck. The boot harness (tests/boot) runs the same user data under systemd.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from aws_cdk import Aws, Stack

from alchemy_constructs.node_bootstrap import (
    DEPLOY_VALUES_DROP_IN,
    FETCH_SCRIPT,
    FIRST_UNIT,
    NODE_SCRIPTS,
    UNITS_MANIFEST,
    BundleLocation,
    NodeBootstrap,
    NodeSecrets,
)
from alchemy_constructs.unit_files import UnitFileError
from alchemy_stack.stack import SERVICES_DIRECTORY
from tests import cloud_config_schema
from tests.synth import synthesize

USER_DATA_BUDGET = 5 * 1024
"""Bytes of user data (before EC2's base64), each deploy-time value counted at its longest: a stub that
the number of services barely changes (EC2 refuses above 16 KB). Most of it is the environment: ARNs and
names known only at deploy time, and the fetch script."""
BUNDLE_SHA256 = "0" * 64
BUNDLE_URL = "s3://cdk-assets-123456789012-eu-west-1/" + "a" * 64 + ".gz"
SECRETS_ARN_PREFIX = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"  # pragma: allowlist secret
TOKEN_STAND_IN = "x" * 100
"""Deploy-time values (ARNs, bucket names, the stack name) are shorter than this."""
PSEUDO_PARAMETER_LENGTHS = {"AWS::AccountId": 12, "AWS::Region": 14, "AWS::URLSuffix": 16, "AWS::Partition": 10}
"""The longest each of these can be (a region name such as ap-southeast-5; amazonaws.com.cn)."""


def deploy_time_length(part: dict) -> int:
    """Bytes a deploy-time value can take: a pseudo parameter, or an ``Fn::Sub`` of them (an image URI),
    by their longest values; anything else as the stand-in."""
    if part.get("Ref") in PSEUDO_PARAMETER_LENGTHS:
        return PSEUDO_PARAMETER_LENGTHS[part["Ref"]]
    if "Fn::Sub" in part and isinstance(part["Fn::Sub"], str):
        text = part["Fn::Sub"]
        for name, length in PSEUDO_PARAMETER_LENGTHS.items():
            text = text.replace("${" + name + "}", "x" * length)
        assert "${" not in text, text
        return len(text)
    return len(TOKEN_STAND_IN)


@pytest.fixture(scope="module")
def bootstrap() -> NodeBootstrap:
    return NodeBootstrap(
        region="eu-west-1",
        cluster_name="alchemy",
        services_directory=SERVICES_DIRECTORY,
        secrets=NodeSecrets(
            rabbitmq_cookie_arn=f"{SECRETS_ARN_PREFIX}cookie",
            rabbitmq_admin_password_arn=f"{SECRETS_ARN_PREFIX}admin",
            rabbitmq_service_password_arns={
                "router": f"{SECRETS_ARN_PREFIX}router",
                "hello_world": f"{SECRETS_ARN_PREFIX}hello",
            },
            etcd_root_password_arn=f"{SECRETS_ARN_PREFIX}etcd",
        ),
        etcd_snapshot_bucket="alchemy-etcd-snapshots",
        stack_name="alchemy",
        node_group_logical_id="NodeGroupASG0123ABCD",
        lifecycle_hook_name="alchemy-node-leave",
        router_timeout_seconds=45,
        ready_timeout_seconds=600,
        images={
            "router_image": "quay.io/loyalty_nz/alchemy-router:v1.0.1",
            "hello_world_image": "quay.io/loyalty_nz/alchemy-hello-world:v1.0.1",
        },
        instances={"hello_world": 2},
    )


@pytest.fixture(scope="module")
def document(bootstrap: NodeBootstrap) -> dict:
    text = bootstrap.cloud_config(BundleLocation(url=BUNDLE_URL, sha256=BUNDLE_SHA256)).render()
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def bundle_members(bootstrap: NodeBootstrap) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(bootstrap.bundle_archive())) as archive:
        return archive.getmembers()


@pytest.fixture(scope="module")
def bundle(bootstrap: NodeBootstrap) -> dict[str, str]:
    """The node files as the node unpacks them: path -> text."""
    with tarfile.open(fileobj=io.BytesIO(bootstrap.bundle_archive())) as archive:
        return {
            f"/{member.name}": archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in archive.getmembers()
        }


def unit_files(document: dict, bundle: dict[str, str]) -> dict[str, str]:
    """Every unit the cloud-config adds: the one inline unit and those in the bundle."""
    units = {u["name"]: u["content"] for u in document["coreos"]["units"] if "content" in u}
    units.update(
        {path.rsplit("/", 1)[1]: text for path, text in bundle.items() if path.startswith("/etc/systemd/system/")}
    )
    return units


def test_document_follows_coreos_cloudinits_schema(document: dict) -> None:
    assert cloud_config_schema.problems(document) == []


def test_schema_check_catches_deprecated_and_unknown_keys() -> None:
    broken = {"coreos": {"etcd2": {}, "units": [{"name": "a", "command": "launch"}]}, "runcmd": []}
    assert cloud_config_schema.problems(broken) == [
        ".runcmd: unrecognized key",
        ".coreos.etcd2: deprecated",
        ".coreos.units[0].command: 'launch' is not a command",
    ]


def test_user_data_of_the_stack_is_a_small_stub() -> None:
    template = synthesize().template_json
    (data,) = [
        r["Properties"]["LaunchTemplateData"]["UserData"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::EC2::LaunchTemplate" and "UserData" in r["Properties"]["LaunchTemplateData"]
    ]
    parts = data["Fn::Base64"]["Fn::Join"][1]
    size = sum(len(part.encode()) if isinstance(part, str) else deploy_time_length(part) for part in parts)
    print(f"\nuser data: {size} bytes (budget {USER_DATA_BUDGET}, EC2 limit 16384)")
    assert size <= USER_DATA_BUDGET


def test_etc_environment_carries_the_seed_variables_first(document: dict) -> None:
    (environment,) = [f for f in document["write_files"] if f["path"] == "/etc/environment"]
    assert environment["content"].splitlines()[:4] == [
        "REGION_NAME=eu-west-1",
        "CLUSTER_NAME=alchemy",
        "PRIVATEIP=$private_ipv4",
        "PUBLICIP=$public_ipv4",
    ]


def environment_of(document: dict) -> dict[str, str]:
    (environment,) = [f for f in document["write_files"] if f["path"] == "/etc/environment"]
    return dict(line.split("=", 1) for line in environment["content"].splitlines())


def test_etc_environment_names_each_services_broker_secret(document: dict) -> None:
    assert environment_of(document)["RABBITMQ_SERVICE_SECRETS"] == (
        f"router={SECRETS_ARN_PREFIX}router hello_world={SECRETS_ARN_PREFIX}hello"
    )


def test_etc_environment_names_etcds_root_secret(document: dict) -> None:
    assert environment_of(document)["ETCD_ROOT_SECRET"] == f"{SECRETS_ARN_PREFIX}etcd"


def test_etc_environment_names_the_stack_group_and_hook_for_signals_and_leaving(document: dict) -> None:
    environment = environment_of(document)
    assert (environment["STACK_NAME"], environment["NODE_GROUP_LOGICAL_ID"], environment["LIFECYCLE_HOOK_NAME"]) == (
        "alchemy",
        "NodeGroupASG0123ABCD",
        "alchemy-node-leave",
    )


def test_etc_environment_carries_router_and_readiness_settings(document: dict) -> None:
    environment = environment_of(document)
    assert (environment["ROUTER_PORT"], environment["ROUTER_TIMEOUT_SECONDS"], environment["READY_TIMEOUT"]) == (
        "8080",
        "45",
        "600",
    )


def deploy_time_bootstrap() -> NodeBootstrap:
    """Images known only at deploy time, as an image asset's URI is."""
    account_bound = f"{Aws.ACCOUNT_ID}.dkr.ecr.{Aws.REGION}.amazonaws.com/assets"
    return NodeBootstrap(
        region="eu-west-1",
        cluster_name="alchemy",
        services_directory=SERVICES_DIRECTORY,
        images={"router_image": f"{account_bound}:router", "hello_world_image": "example.com/hello:1.0"},
    )


def test_a_deploy_time_image_goes_to_a_drop_in_beside_its_unit() -> None:
    bootstrap = deploy_time_bootstrap()
    (drop_in,) = bootstrap.deploy_time_drop_ins()
    assert drop_in.path == f"/etc/systemd/system/router@.service.d/{DEPLOY_VALUES_DROP_IN}"
    resolved = Stack().resolve(drop_in.content)
    assert resolved["Fn::Join"][1][0] == "[Service]\nEnvironment=IMAGE="
    assert drop_in.encoding is None


def test_a_deploy_time_image_leaves_the_bundled_unit(tmp_path: Path) -> None:
    files = deploy_time_bootstrap().bundle_files()
    router = files["/etc/systemd/system/router@.service"]
    assert "Environment=IMAGE=" not in router
    assert "ExecStart=/usr/bin/docker run" in router
    assert "Environment=IMAGE=example.com/hello:1.0" in files["/etc/systemd/system/hello_world@.service"]


def test_a_deploy_time_value_outside_an_environment_line_is_refused(tmp_path: Path) -> None:
    (tmp_path / "web@.service").write_text(
        "[Unit]\nDescription=web\n[Service]\nExecStart=/usr/bin/docker run {{router_image}}\n"
        "[Install]\nWantedBy=multi-user.target\n[X-Fleet]\nConflicts=%p@*.service\n"
    )
    bootstrap = NodeBootstrap(
        region="eu-west-1",
        cluster_name="alchemy",
        services_directory=tmp_path,
        images={"router_image": f"{Aws.ACCOUNT_ID}.dkr.ecr.eu-west-1.amazonaws.com/assets:router"},
    )
    with pytest.raises(
        UnitFileError, match=r"web@\.service: a deploy-time value .* may only fill an Environment= line"
    ):
        bootstrap.deploy_time_drop_ins()


def test_no_secret_value_only_secret_arns(document: dict) -> None:
    (environment,) = [f for f in document["write_files"] if f["path"] == "/etc/environment"]
    assert "RABBITMQ_COOKIE_SECRET=arn:aws:secretsmanager:" in environment["content"]
    assert "default_pass" not in yaml.safe_dump(document)


def test_docker_is_enabled_and_started(document: dict) -> None:
    assert {"name": "docker.service", "enable": True, "command": "start"} in document["coreos"]["units"]


def test_os_self_updates_are_off_and_new_images_roll_out_by_deploy(document: dict) -> None:
    assert document["coreos"]["update"] == {"reboot_strategy": "off"}
    masked = {u["name"] for u in document["coreos"]["units"] if u.get("mask")}
    assert {"update-engine.service", "locksmithd.service"} <= masked


def test_flatcars_own_etcd_unit_is_masked_for_the_explicit_one(document: dict, bundle: dict[str, str]) -> None:
    assert {"name": "etcd-member.service", "mask": True} in document["coreos"]["units"]
    assert "/etc/systemd/system/etcd.service" in bundle


def test_first_unit_fetches_unpacks_and_starts_the_placed_units_in_that_order(document: dict) -> None:
    (first,) = [u for u in document["coreos"]["units"] if u["name"] == FIRST_UNIT]
    assert first["command"] == "start"
    assert re.findall(r"^ExecStart=(\S+)", first["content"], re.M) == [
        f"/opt/bin/{FETCH_SCRIPT}",
        "/usr/bin/tar",
        "/opt/bin/start-units",
    ]
    assert f"start-units {UNITS_MANIFEST}" in first["content"]


def test_first_unit_retries_a_failed_fetch_without_a_start_limit(document: dict) -> None:
    (first,) = [u for u in document["coreos"]["units"] if u["name"] == FIRST_UNIT]
    assert "Restart=on-failure" in first["content"]
    assert "StartLimitIntervalSec=0" in first["content"]


def test_the_environment_names_the_bundle_and_its_hash(document: dict) -> None:
    environment = environment_of(document)
    assert (environment["NODE_BUNDLE_URL"], environment["NODE_BUNDLE_SHA256"]) == (BUNDLE_URL, BUNDLE_SHA256)


def test_the_user_data_holds_no_node_file_but_the_fetch_script(document: dict) -> None:
    """Images given as literals (this fixture's) need no drop-in: the stub is the environment and the fetch."""
    assert {f["path"] for f in document["write_files"]} == {"/etc/environment", f"/opt/bin/{FETCH_SCRIPT}"}


def test_the_bundle_archive_is_the_same_bytes_for_the_same_files(bootstrap: NodeBootstrap) -> None:
    assert bootstrap.bundle_archive() == bootstrap.bundle_archive()


def test_every_placed_unit_is_started(bundle: dict[str, str]) -> None:
    assert bundle[UNITS_MANIFEST].splitlines() == [
        "alchemy-lifecycle.service",
        "alchemy-ready.service",
        "etcd-auth.service",
        "etcd.service",
        "rabbitmq-users.service",
        "etcd-snapshot.timer",
        "hello_world@1.service",
        "hello_world@2.service",
        "hosts.service",
        "rabbitmq.service",
        "router@1.service",
    ]


def test_images_come_from_settings(bundle: dict[str, str]) -> None:
    assert "IMAGE=quay.io/loyalty_nz/alchemy-router:v1.0.1" in bundle["/etc/systemd/system/router@.service"]
    assert "IMAGE=quay.io/loyalty_nz/alchemy-hello-world:v1.0.1" in bundle["/etc/systemd/system/hello_world@.service"]


def test_every_node_script_is_shipped_executable(bundle_members: list[tarfile.TarInfo]) -> None:
    members = bundle_members
    shipped = {member.name: member.mode for member in members if member.name.startswith("opt/bin/")}
    assert set(shipped) == {f"opt/bin/{path.name}" for path in NODE_SCRIPTS.iterdir()}
    assert set(shipped.values()) == {0o755}


def test_every_service_unit_restarts_and_pulls_with_retries(bundle: dict[str, str]) -> None:
    for name in ("rabbitmq.service", "router@.service", "hello_world@.service", "etcd.service"):
        unit = bundle[f"/etc/systemd/system/{name}"]
        assert "Restart=always" in unit, name
        assert "ExecStartPre=/opt/bin/docker-pull ${IMAGE}" in unit, name
        assert re.search(r"^ExecStop=.*docker stop", unit, re.M), name


def test_services_order_after_docker_network_and_their_dependencies(bundle: dict[str, str]) -> None:
    for name in ("rabbitmq.service", "router@.service", "hello_world@.service"):
        after = re.search(r"^After=(.*)$", bundle[f"/etc/systemd/system/{name}"], re.M)
        assert after is not None
        assert {"docker.service", "network-online.target", "alchemy-secrets.service"} <= set(after[1].split())
    assert "etcd.service" in re.findall(r"^After=(.*)$", bundle["/etc/systemd/system/hosts.service"], re.M)[0]


def stub_executable(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


def test_systemd_analyze_verify_reports_nothing(document: dict, bundle: dict[str, str], tmp_path: Path) -> None:
    """Every unit, with the commands and units only a Flatcar node has stubbed in the test."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: install systemd")
    units_dir = tmp_path / "units"
    units_dir.mkdir()
    stubs = tmp_path / "stubs"
    for name in ("docker.service", "etcd-member.service"):
        (units_dir / name).write_text("[Service]\nExecStart=/bin/true\n")
    paths = []
    for name, text in unit_files(document, bundle).items():
        for command in set(re.findall(r"(/(?:opt|usr)/bin/[\w.-]+)", text)):
            stub_executable(stubs / command.lstrip("/"))
        text = re.sub(r"(/(?:opt|usr)/bin/)", lambda m: f"{stubs}{m[1]}", text)
        (units_dir / name).write_text(text)
        if not name.endswith("@.service"):
            paths.append(str(units_dir / name))
    # Template units are verified through their instances.
    for instance in ("router@1.service", "hello_world@1.service"):
        (units_dir / instance).symlink_to(units_dir / instance.replace("1.service", ".service"))
        paths.append(str(units_dir / instance))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *paths], capture_output=True, text=True, check=False, cwd=units_dir
    )
    assert result.stdout + result.stderr == ""


def inline_commands(unit: str) -> list[str]:
    """Shell programs written inline in Exec lines (``sh -c '...'``), joined across continuations."""
    joined = unit.replace("\\\n", " ")
    return re.findall(r"^Exec\w+=[-@+!]*/bin/(?:ba)?sh -c '(.*)'\s*$", joined, re.M)


def test_shellcheck_finds_nothing_in_node_scripts_and_inline_commands(
    bootstrap: NodeBootstrap, document: dict, bundle: dict[str, str], tmp_path: Path
) -> None:
    """Scripts as rendered for the node (placeholders filled, comments and directives kept)."""
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists():
        pytest.fail("shellcheck is missing: pip install -r requirements-dev.txt")
    targets = []
    for path, text in bootstrap.node_files().items():
        if path.startswith("/opt/bin/"):
            script = tmp_path / path.rsplit("/", 1)[1]
            script.write_text(text)
            targets.append(str(script))
    for entry in document["write_files"]:
        if entry["path"].startswith("/opt/bin/"):
            script = tmp_path / entry["path"].rsplit("/", 1)[1]
            script.write_text(entry["content"])
            targets.append(str(script))
    for name, text in unit_files(document, bundle).items():
        for index, command in enumerate(inline_commands(text)):
            script = tmp_path / f"{name}.{index}.sh"
            script.write_text(f"#!/bin/sh\n{command}\n")
            targets.append(str(script))
    result = subprocess.run([str(shellcheck), "--shell=bash", *targets], capture_output=True, text=True, check=False)
    assert result.stdout == "", result.stdout


def test_inline_command_extraction_finds_sh_c_programs() -> None:
    unit = "[Service]\nExecStart=/bin/sh -c 'echo $A \\\n  && true'\n"
    assert inline_commands(unit) == ["echo $A    && true"]


RETRIED_WRITERS = ("alchemy-secrets.service", "etcd-membership.service", "rabbitmq-users.service", "etcd.service")
"""Units whose first attempt may fail at boot (an AWS call, the group filling up, the broker not up yet)."""


def section_values(unit: str, key: str) -> list[str]:
    return [value for line in re.findall(rf"^{key}=(.*)$", unit, re.M) for value in line.split()]


def test_no_unit_requires_a_unit_whose_first_attempt_may_fail(document: dict, bundle: dict[str, str]) -> None:
    """Requires= on such a unit fails the dependent's start job for good ("dependency") when the first attempt
    fails, and the unit's own retry does not start the dependent again: dependents want and wait instead."""
    for name, text in unit_files(document, bundle).items():
        assert not set(section_values(text, "Requires")) & set(RETRIED_WRITERS), name


def test_dependents_wait_for_what_the_retried_units_write(bundle: dict[str, str]) -> None:
    waits = {
        "etcd.service": "/run/etcd/cluster.env",
        "etcd-membership.service": "/run/alchemy/etcd/root.credentials",
        "rabbitmq.service": "/run/alchemy/rabbitmq/conf.d/20-credentials.conf",
        "router@.service": "/run/alchemy/amqp-%p.env",
        "hello_world@.service": "/run/alchemy/amqp-%p.env",
        "hosts.service": "/run/alchemy/etcd/root.credentials",
    }
    for name, path in waits.items():
        unit = bundle[f"/etc/systemd/system/{name}"]
        assert re.search(rf"^ExecStartPre=/bin/sh -c 'until .*\[ -e {re.escape(path)} \]", unit, re.M), name


def test_units_that_retry_have_no_start_limit(document: dict, bundle: dict[str, str]) -> None:
    for name, text in unit_files(document, bundle).items():
        if re.search(r"^Restart=(always|on-failure)$", text, re.M):
            assert "StartLimitIntervalSec=0" in text, name


def test_units_use_nothing_newer_than_systemd_252(document: dict, bundle: dict[str, str]) -> None:
    """RestartMode= (254), RestartSteps= and RestartMaxDelaySec= (254) would be unknown keys on systemd 252."""
    for name, text in unit_files(document, bundle).items():
        assert not re.search(r"^(RestartMode|RestartSteps|RestartMaxDelaySec)=", text, re.M), name


def test_each_service_connects_as_its_own_broker_user(bundle: dict[str, str]) -> None:
    for name in ("router@.service", "hello_world@.service"):
        unit = bundle[f"/etc/systemd/system/{name}"]
        assert "--env-file /run/alchemy/amqp-%p.env" in unit, name
        assert "amqp.env" not in unit.replace("amqp-%p.env", ""), name


def test_router_takes_its_port_and_timeout_from_the_node_environment(bundle: dict[str, str]) -> None:
    unit = bundle["/etc/systemd/system/router@.service"]
    assert "--publish ${ROUTER_PORT}:${ROUTER_PORT}" in unit
    assert "--env ROUTER_PORT=${ROUTER_PORT} --env ROUTER_TIMEOUT_SECONDS=${ROUTER_TIMEOUT_SECONDS}" in unit
    # Defaults first: EnvironmentFile= overrides Environment= whatever their order.
    assert "Environment=ROUTER_PORT=8080" in unit


def test_the_lifecycle_watcher_starts_at_boot(bundle: dict[str, str]) -> None:
    assert "alchemy-lifecycle.service" in bundle[UNITS_MANIFEST].splitlines()
    assert "ExecStart=/opt/bin/alchemy-lifecycle" in bundle["/etc/systemd/system/alchemy-lifecycle.service"]


def test_leaving_runs_when_the_broker_and_etcd_stop(bundle: dict[str, str]) -> None:
    assert "ExecStop=/opt/bin/rabbitmq-leave" in bundle["/etc/systemd/system/rabbitmq.service"]
    assert "ExecStop=/opt/bin/etcd-leave" in bundle["/etc/systemd/system/etcd.service"]
