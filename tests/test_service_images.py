"""The router and hello_world images: built from alchemy_services/ as assets unless a setting names an image."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

from aws_cdk import App

from alchemy_constructs.node_bundle import NodeBundle
from alchemy_constructs.node_group import LIFECYCLE_HOOK_NAME
from tests.synth import VARIANTS, synthesize

OVERRIDES = {
    "router_image": "registry.example.com/router:1.2.3",
    "hello_world_image": "registry.example.com/hello:1.2.3",
}


def joined(value: Any) -> str:
    """A string or an Fn::Join of one, deploy-time values as JSON."""
    if isinstance(value, str):
        return value
    return "".join(p if isinstance(p, str) else json.dumps(p) for p in value["Fn::Join"][1])


def environment_and_deploy_values(template: dict[str, Any]) -> str:
    """What a node gets besides its bundle: the user data and the deploy values parameter's text."""
    (data,) = [
        r["Properties"]["LaunchTemplateData"]["UserData"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::EC2::LaunchTemplate" and "UserData" in r["Properties"]["LaunchTemplateData"]
    ]
    (parameter,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SSM::Parameter"]
    return joined(data["Fn::Base64"]) + joined(parameter["Properties"]["Value"])


def bundle_unit(synthesis: Any, name: str) -> str:
    (bundle,) = [c for c in synthesis.stack.node.find_all() if isinstance(c, NodeBundle)]
    with tarfile.open(bundle.archive_path) as archive:
        member = archive.extractfile(f"etc/systemd/system/{name}")
        assert member is not None
        return member.read().decode()


def assembly_directory(synthesis: Any) -> Path:
    root = synthesis.stack.node.root
    assert isinstance(root, App)
    return Path(root.outdir)


def assets_manifest(synthesis: Any) -> dict[str, Any]:
    outdir = assembly_directory(synthesis)
    return json.loads((outdir / "AlchemyStack.assets.json").read_text())


def test_default_synth_records_one_amd64_build_per_service_target() -> None:
    images = assets_manifest(synthesize())["dockerImages"].values()
    sources = sorted((image["source"]["dockerBuildTarget"], image["source"]["platform"]) for image in images)
    assert sources == [("hello_world", "linux/amd64"), ("router", "linux/amd64")]


def test_default_synth_stages_the_build_context_without_building() -> None:
    """Synth copies the context into the assembly; only cdk deploy runs docker build."""
    synthesis = synthesize()
    outdir = assembly_directory(synthesis)
    for image in assets_manifest(synthesis)["dockerImages"].values():
        assert (outdir / image["source"]["directory"] / "Dockerfile").is_file()


def test_units_run_the_images_from_the_bootstrap_repository() -> None:
    synthesis = synthesize()
    text = environment_and_deploy_values(synthesis.template_json)
    assert (
        'IMAGE_REPOSITORY={"Ref": "AWS::AccountId"}.dkr.ecr.{"Ref": "AWS::Region"}.{"Ref": "AWS::URLSuffix"}/'
        '{"Fn::Sub": "cdk-hnb659fds-container-assets-${AWS::AccountId}-${AWS::Region}"}\n'
    ) in text
    for unit in ("router@.service", "hello_world@.service"):
        assert re.search(r"^Environment=IMAGE=@@IMAGE_REPOSITORY@@:[0-9a-f]{64}$", bundle_unit(synthesis, unit), re.M)


def node_policies(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The managed policies attached to the node role, by logical id."""
    return {
        key: r
        for key, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::ManagedPolicy"
        and any(role["Ref"].startswith("NodeGroupRole") for role in r["Properties"]["Roles"])
    }


def ecr_statements(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The node role's ECR statements, by Sid."""
    return {
        statement["Sid"]: statement
        for policy in node_policies(template).values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "ecr:" in json.dumps(statement["Action"])
    }


def test_nodes_may_pull_only_from_the_images_repository() -> None:
    statements = ecr_statements(synthesize().template_json)
    assert set(statements) == {"PullServiceImages", "LogInToEcr"}
    pull, login = statements["PullServiceImages"], statements["LogInToEcr"]
    assert pull["Action"] == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert pull["Resource"]["Fn::Join"][1][-2:] == [
        ":repository/",
        {"Fn::Sub": "cdk-hnb659fds-container-assets-${AWS::AccountId}-${AWS::Region}"},
    ]
    assert (login["Action"], login["Resource"]) == ("ecr:GetAuthorizationToken", "*")


def test_given_images_are_used_as_they_are_and_nothing_is_built() -> None:
    synthesis = synthesize(**OVERRIDES)
    assert assets_manifest(synthesis).get("dockerImages", {}) == {}
    assert "IMAGE_REPOSITORY" not in environment_and_deploy_values(synthesis.template_json)
    assert ecr_statements(synthesis.template_json) == {}


def test_one_given_image_leaves_the_other_built() -> None:
    synthesis = synthesize(router_image=OVERRIDES["router_image"])
    assert set(synthesis.stack.service_images.assets) == {"hello_world_image"}
    assert "Environment=IMAGE=@@IMAGE_REPOSITORY@@:" in bundle_unit(synthesis, "hello_world@.service")
    assert f"Environment=IMAGE={OVERRIDES['router_image']}\n" in bundle_unit(synthesis, "router@.service")


def test_node_environment_carries_the_stack_group_hook_and_router_settings() -> None:
    synthesis = synthesize(**VARIANTS["own_nodes"])  # router_timeout_seconds 45
    (asg_id,) = synthesis.template.find_resources("AWS::AutoScaling::AutoScalingGroup")
    text = environment_and_deploy_values(synthesis.template_json)
    for line in ('STACK_NAME={"Ref": "AWS::StackName"}\n', f"NODE_GROUP_LOGICAL_ID={asg_id}\n"):
        assert line in text
    (bundle,) = [c for c in synthesis.stack.node.find_all() if isinstance(c, NodeBundle)]
    with tarfile.open(bundle.archive_path) as archive:
        member = archive.extractfile("etc/alchemy/bundle.env")
        assert member is not None
        environment = member.read().decode()
    for line in (
        f"LIFECYCLE_HOOK_NAME={LIFECYCLE_HOOK_NAME}\n",
        "ROUTER_PORT=8080\n",
        "ROUTER_TIMEOUT_SECONDS=45\n",
        "READY_TIMEOUT=900\n",
    ):
        assert line in environment


def test_node_environment_names_each_service_secret_and_the_etcd_root_secret() -> None:
    synthesis = synthesize()
    secrets = {key: key for key in synthesis.template.find_resources("AWS::SecretsManager::Secret")}
    router = next(k for k in secrets if k.startswith("SecretsRabbitMqRouterPassword"))
    hello = next(k for k in secrets if k.startswith("SecretsRabbitMqHelloWorldPassword"))
    etcd = next(k for k in secrets if k.startswith("SecretsEtcdRootPassword"))
    text = environment_and_deploy_values(synthesis.template_json)
    assert f'RABBITMQ_SERVICE_SECRETS=router={{"Ref": "{router}"}} hello_world={{"Ref": "{hello}"}}\n' in text
    assert f'ETCD_ROOT_SECRET={{"Ref": "{etcd}"}}\n' in text


def test_node_group_waits_for_the_right_to_pull_the_images() -> None:
    template = synthesize().template_json
    (pull,) = [
        key
        for key, policy in node_policies(template).items()
        if "PullServiceImages" in json.dumps(policy["Properties"]["PolicyDocument"])
    ]
    (asg,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::AutoScaling::AutoScalingGroup"]
    assert pull in asg["DependsOn"]
