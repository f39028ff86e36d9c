"""The emulator's own app: the product's app keeps the AWS-correct template; the emulator's changes only moto's gaps.

Everything the local emulator needs lives in alchemy_tools/local_emulator/; these tests pin
both sides.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from aws_cdk import CfnResource, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Annotations, Match, Template

import app as cdk_app
from alchemy_tools import local_aws, local_emulator
from alchemy_tools.local_emulator import app as emulator_app
from alchemy_tools.local_emulator import template as emulator_template
from tests.synth import bare_app, cdk_app_context, construct_template, scratch_directory, synthesize

LOOPBACK = {"ALCHEMY_LOCAL_EMULATOR": "1", "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}


def resources_of_type(template: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == resource_type]


def all_traffic_group(stack: Stack) -> None:
    group = ec2.SecurityGroup(
        stack, "Group", vpc=ec2.Vpc(stack, "Vpc", max_azs=1, nat_gateways=0, restrict_default_security_group=False)
    )
    group.add_ingress_rule(ec2.Peer.ipv4("10.0.0.0/16"), ec2.Port.all_traffic(), "from the VPC")


def group_ingress(template: Template) -> list[dict[str, Any]]:
    (group,) = template.find_resources("AWS::EC2::SecurityGroup").values()
    return list(group["Properties"]["SecurityGroupIngress"])


@pytest.fixture(scope="module")
def default_template() -> dict[str, Any]:
    return synthesize().template_json


@pytest.fixture(scope="module")
def emulator_synth() -> tuple[dict[str, Any], bool, Path]:
    outdir = Path(scratch_directory("emulator-"))
    app = cdk_app.create_app(context=cdk_app_context(), outdir=str(outdir))
    emulator_app.build(app, environ=LOOPBACK)
    try:
        app.synth()
        passed = True
    except RuntimeError:
        passed = False
    return json.loads((outdir / f"{cdk_app.STACK_ID}.template.json").read_text()), passed, outdir


def test_an_all_traffic_rule_has_no_ports_without_the_switch() -> None:
    (rule,) = group_ingress(construct_template(all_traffic_group))
    assert (rule["IpProtocol"], "FromPort" in rule) == ("-1", False)


def test_the_switch_gives_an_all_traffic_rule_explicit_all_ports() -> None:
    def build(stack: Stack) -> None:
        all_traffic_group(stack)
        emulator_template.adapt(stack)

    (rule,) = group_ingress(construct_template(build))
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"], rule["CidrIp"]) == ("-1", -1, -1, "10.0.0.0/16")


def test_default_synth_reads_the_nat_address_from_the_elastic_ip(default_template: dict[str, Any]) -> None:
    value = default_template["Outputs"]["NATIPAddress"]["Value"]
    assert list(value) == ["Fn::GetAtt"]
    assert value["Fn::GetAtt"][1] == "PublicIp"


def test_default_synth_lets_aws_size_the_nat_root_volume(default_template: dict[str, Any]) -> None:
    (nat,) = resources_of_type(default_template, "AWS::EC2::Instance")
    assert "VolumeSize" not in nat["Properties"]["BlockDeviceMappings"][0]["Ebs"]


def test_emulator_synth_reads_the_nat_address_with_ref(emulator_synth: tuple[dict[str, Any], bool, Path]) -> None:
    assert list(emulator_synth[0]["Outputs"]["NATIPAddress"]["Value"]) == ["Ref"]


def test_emulator_synth_sizes_the_nat_root_volume(emulator_synth: tuple[dict[str, Any], bool, Path]) -> None:
    (nat,) = resources_of_type(emulator_synth[0], "AWS::EC2::Instance")
    assert nat["Properties"]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == local_emulator.NAT_ROOT_VOLUME_GB


def test_emulator_synth_passes_the_rule_packs(emulator_synth: tuple[dict[str, Any], bool, Path]) -> None:
    assert emulator_synth[1]


def test_emulator_synth_changes_only_what_moto_cannot_take(
    default_template: dict[str, Any], emulator_synth: tuple[dict[str, Any], bool, Path]
) -> None:
    changed = {
        name
        for name, resource in default_template["Resources"].items()
        if emulator_synth[0]["Resources"].get(name) != resource
    }
    # Launch template: stand-in image references; the node policy: no image to pull. Deploy values
    # parameter: no image built, so no image repository in it.
    adapted = {
        "AWS::SSM::Parameter",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::Instance",
        "AWS::KMS::Key",
        "AWS::EC2::LaunchTemplate",
        "AWS::IAM::ManagedPolicy",
    }
    changed_types = {default_template["Resources"][name]["Type"] for name in changed}
    assert {t for t in changed_types if not t.startswith("Custom::")} <= adapted


def test_emulator_synth_leaves_the_group_alone(
    default_template: dict[str, Any], emulator_synth: tuple[dict[str, Any], bool, Path]
) -> None:
    for name, resource in default_template["Resources"].items():
        if resource["Type"] in ("AWS::AutoScaling::AutoScalingGroup", "AWS::AutoScaling::LifecycleHook"):
            assert emulator_synth[0]["Resources"][name] == resource


def test_emulator_synth_drops_only_the_image_pull_statements_of_the_nodes(
    default_template: dict[str, Any], emulator_synth: tuple[dict[str, Any], bool, Path]
) -> None:
    """Nothing is built for the emulator, so there is nothing to pull (the bundle's object differs
    too: it names other images)."""
    (policy,) = [key for key in default_template["Resources"] if key.startswith("NodeGroupPolicy")]

    def actions(template: dict[str, Any]) -> list[tuple[str | None, str]]:
        statements = template["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"]
        return [(s.get("Sid"), json.dumps(s["Action"])) for s in statements]

    pulls = {"PullServiceImages", "LogInToEcr"}
    assert pulls <= {sid for sid, _ in actions(default_template)}
    assert actions(emulator_synth[0]) == [
        (sid, action) for sid, action in actions(default_template) if sid not in pulls
    ]


def test_emulator_synth_builds_no_image(emulator_synth: tuple[dict[str, Any], bool, Path]) -> None:
    """The loop has no Docker engine: the assembly lists no image asset for the CLI to build."""
    assets = json.loads((emulator_synth[2] / f"{cdk_app.STACK_ID}.assets.json").read_text())
    assert assets.get("dockerImages", {}) == {}


def test_emulator_synth_runs_the_pinned_stand_in_images(emulator_synth: tuple[dict[str, Any], bool, Path]) -> None:
    user_data = json.dumps(resources_of_type(emulator_synth[0], "AWS::EC2::LaunchTemplate"))
    assert "10-deploy-values.conf" not in user_data
    assert "dkr.ecr" not in user_data
    assert local_emulator.PLACEHOLDER_IMAGES == {
        "router_image": "localhost/alchemy/router:local-emulator",
        "hello_world_image": "localhost/alchemy/hello_world:local-emulator",
    }


def test_emulator_keeps_an_image_the_settings_give() -> None:
    assert local_emulator.placeholder_images({"router_image": "example.com/router:1.0", "hello_world_image": None}) == {
        "hello_world_image": "localhost/alchemy/hello_world:local-emulator"
    }


def test_default_synth_builds_both_images() -> None:
    assets = synthesize().stack.service_images.assets
    assert set(assets) == {"router_image", "hello_world_image"}


def test_the_switch_is_off_without_the_variable() -> None:
    assert local_emulator.enabled({"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}) is False


def test_the_switch_is_on_with_a_loopback_endpoint() -> None:
    assert local_emulator.enabled(LOOPBACK) is True


def test_the_switch_refuses_a_real_aws_endpoint() -> None:
    environ = {**LOOPBACK, "AWS_ENDPOINT_URL": "https://cloudformation.eu-west-1.amazonaws.com"}
    with pytest.raises(local_emulator.EmulatorTargetError, match="only allowed while AWS_ENDPOINT_URL points at"):
        local_emulator.enabled(environ)


def test_the_switch_refuses_a_missing_endpoint() -> None:
    with pytest.raises(local_emulator.EmulatorTargetError, match="received AWS_ENDPOINT_URL=''"):
        local_emulator.enabled({"ALCHEMY_LOCAL_EMULATOR": "1"})


def test_the_switch_refuses_an_unclear_value() -> None:
    with pytest.raises(local_emulator.EmulatorTargetError, match="ALCHEMY_LOCAL_EMULATOR='yes': must be 1, true"):
        local_emulator.enabled({**LOOPBACK, "ALCHEMY_LOCAL_EMULATOR": "yes"})


def test_the_emulator_app_refuses_to_build_against_aws() -> None:
    app = cdk_app.create_app(context=cdk_app_context(), outdir=scratch_directory("refused-"))
    with pytest.raises(local_emulator.EmulatorTargetError, match="points at the local emulator"):
        emulator_app.build(app, environ={"ALCHEMY_LOCAL_EMULATOR": "true", "AWS_ENDPOINT_URL": "https://example.com"})


def test_the_emulator_app_refuses_to_build_without_the_switch() -> None:
    app = cdk_app.create_app(context=cdk_app_context(), outdir=scratch_directory("refused-"))
    with pytest.raises(
        local_emulator.EmulatorTargetError,
        match=r"^invalid ALCHEMY_LOCAL_EMULATOR='': this app synthesizes for the local emulator only: set it to 1",
    ):
        emulator_app.build(app, environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"})


def test_the_emulator_app_says_a_wrong_target_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    app = cdk_app.create_app(context=cdk_app_context(), outdir=scratch_directory("refused-"))
    assert emulator_app.main(app, environ={}) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: invalid ALCHEMY_LOCAL_EMULATOR=''")


def test_the_cli_runs_the_emulator_app_as_a_module_with_this_python() -> None:
    command = local_emulator.cli_app_command("/opt/venv/bin/python")
    assert command == "/opt/venv/bin/python -m alchemy_tools.local_emulator.app"


def custom_resource(stack: Stack) -> None:
    CfnResource(stack, "Custom", type="Custom::Thing", properties={"ServiceToken": "arn:aws:lambda:x"})


def test_a_custom_resource_is_deployed_without_the_switch() -> None:
    (resource,) = construct_template(custom_resource).find_resources("Custom::Thing").values()
    assert "Condition" not in resource


def test_the_switch_keeps_a_lambda_backed_custom_resource_off_the_emulator() -> None:
    def build(stack: Stack) -> None:
        custom_resource(stack)
        emulator_template.adapt(stack)

    template = construct_template(build).to_json()
    condition = template["Resources"]["Custom"]["Condition"]
    assert template["Conditions"][condition] == {"Fn::Equals": ["local-emulator", "aws"]}


def test_the_switch_warns_about_each_skipped_custom_resource() -> None:
    stack = Stack(bare_app(), "WithCustomResource")
    custom_resource(stack)
    emulator_template.adapt(stack)
    Annotations.from_stack(stack).has_warning("*", Match.string_like_regexp("Custom::Thing is skipped on the local"))


def test_parameters_with_defaults_are_passed_explicitly() -> None:
    template = {"Parameters": {"BootstrapVersion": {"Type": "String", "Default": "/cdk"}, "NodeImageId": {}}}
    assert local_emulator.explicit_parameter_defaults(template) == {"BootstrapVersion": "/cdk"}


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:5000", True),
        ("http://127.8.0.1", True),
        ("http://localhost:4566", True),
        ("http://[::1]:4566", True),
        ("http://10.0.0.5:4566", False),
        ("https://s3.us-east-1.amazonaws.com", False),
        ("not a url", False),
    ],
)
def test_only_this_machine_counts_as_loopback(url: str, loopback: bool) -> None:
    assert local_emulator.is_loopback_endpoint(url) is loopback


def test_cli_environment_refuses_an_endpoint_off_this_machine() -> None:
    with pytest.raises(ValueError, match=re.escape("must be on this machine; received 'http://10.0.0.5:4566'")):
        local_emulator.cli_environment("http://10.0.0.5:4566")


def test_cli_environment_sends_anything_else_to_a_closed_local_port() -> None:
    environment = local_emulator.cli_environment("http://127.0.0.1:4566")
    assert all(local_emulator.is_loopback_endpoint(environment[name]) for name in ("HTTPS_PROXY", "HTTP_PROXY"))


# The background emulator of `make local-deploy`: started once, found again by the next command, stopped by
# `make local-destroy`. Each test gets its own state directory, so none meets a person's emulator; the tests that
# only read a running emulator share one (a start costs about a second of CPU).


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(local_aws.STATE_DIR_VARIABLE, str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def shared_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("emulator-state")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(local_aws.STATE_DIR_VARIABLE, str(directory))
        yield directory


@pytest.fixture(scope="module")
def background(shared_state_dir: Path) -> Iterator[local_aws.LocalAws]:
    server, _ = local_aws.start_background()
    yield server
    local_aws.stop_background()


def test_a_started_emulator_is_recorded_with_its_pid_and_port(
    background: local_aws.LocalAws, shared_state_dir: Path
) -> None:
    recorded = json.loads((shared_state_dir / "server.json").read_text())
    assert (recorded["port"], local_aws.is_emulator_process(recorded["pid"], recorded["port"])) == (
        background.port,
        True,
    )


def test_the_next_command_finds_the_running_emulator(background: local_aws.LocalAws) -> None:
    found, started = local_aws.start_background()
    assert (found.port, started) == (background.port, False)


def test_the_emulator_answers_the_probe(background: local_aws.LocalAws) -> None:
    assert local_aws.is_ready(background.endpoint)


def test_the_probe_is_not_fooled_by_a_lambda_function(background: local_aws.LocalAws) -> None:
    """moto's state dump answers 500 once a Lambda function exists; the probe must not care."""
    environment = local_emulator.cli_environment(background.endpoint)
    clients = {
        service: boto3.client(
            service,
            endpoint_url=background.endpoint,
            region_name=environment["AWS_REGION"],
            aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        )
        for service in ("iam", "lambda")
    }
    role = clients["iam"].create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return None\n")
    clients["lambda"].create_function(
        FunctionName="fn", Runtime="python3.12", Role=role, Handler="index.handler", Code={"ZipFile": code.getvalue()}
    )
    assert local_aws.is_ready(background.endpoint)


def test_a_closed_port_is_not_ready() -> None:
    assert not local_aws.is_ready(f"http://127.0.0.1:{local_aws.free_port()}")


def test_stopping_ends_the_process_and_forgets_it(state_dir: Path) -> None:
    local_aws.start_background()
    state = local_aws.read_state()
    assert state is not None
    assert local_aws.stop_background()
    assert (local_aws.is_emulator_process(state.pid, state.port), (state_dir / "server.json").exists()) == (
        False,
        False,
    )


def test_stopping_twice_says_nothing_was_running(state_dir: Path) -> None:
    assert local_aws.stop_background() is False


def test_a_state_file_of_a_dead_emulator_is_removed(state_dir: Path) -> None:
    (state_dir / "server.json").write_text(json.dumps({"port": 1, "pid": 2**22 + 1, "log": "x"}))
    assert (local_aws.background_state(), (state_dir / "server.json").exists()) == (None, False)


def test_a_recycled_pid_is_not_taken_for_the_emulator(state_dir: Path) -> None:
    (state_dir / "server.json").write_text(json.dumps({"port": 1, "pid": os.getpid(), "log": "x"}))
    assert local_aws.stop_background() is False
