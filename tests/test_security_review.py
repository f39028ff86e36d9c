"""Least privilege and network exposure, read from the synthesized template of every variant."""

from __future__ import annotations

import copy

import pytest

from alchemy_constructs.node_group import CLUSTER_PORTS
from tests.security_checks import exposure_problems, iam_problems
from tests.synth import VARIANTS, synthesize

NODE_PORTS = {8080, *(port for port, _ in CLUSTER_PORTS)}


def exposure(template: dict, listener_ports: set[int] | None = None) -> list[str]:
    return exposure_problems(template, listener_ports=listener_ports or {80, 443}, node_ports=NODE_PORTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_iam_action_is_allowed_and_scoped(variant: str) -> None:
    assert iam_problems(synthesize(**VARIANTS[variant]).template_json) == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_only_the_elb_listeners_face_the_internet_and_nodes_face_only_nodes(variant: str) -> None:
    assert exposure(synthesize(**VARIANTS[variant]).template_json) == []


def broken(template: dict, resource_type: str, change: object) -> dict:
    copied = copy.deepcopy(template)
    for resource in copied["Resources"].values():
        if resource["Type"] == resource_type:
            change(resource)  # type: ignore[operator]
            break
    return copied


def test_iam_review_fails_on_an_unlisted_action_and_on_a_wildcard_resource() -> None:
    def widen(policy: dict) -> None:
        policy["Properties"]["PolicyDocument"]["Statement"].append(
            {"Action": ["s3:GetObject", "secretsmanager:GetSecretValue"], "Effect": "Allow", "Resource": "*"}
        )

    problems = iam_problems(broken(synthesize().template_json, "AWS::IAM::ManagedPolicy", widen))
    assert any("action s3:GetObject is not in the allow-list" in p for p in problems)
    assert any("secretsmanager:GetSecretValue on Resource *" in p for p in problems)


def test_exposure_review_fails_on_ssh_and_on_a_node_port_open_to_the_vpc() -> None:
    def open_ssh(group: dict) -> None:
        group["Properties"].setdefault("SecurityGroupIngress", []).append(
            {"CidrIp": "0.0.0.0/0", "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
        )

    def open_amqp(rule: dict) -> None:
        rule["Properties"].pop("SourceSecurityGroupId")
        rule["Properties"]["CidrIp"] = "10.0.0.0/16"

    template = synthesize().template_json
    ssh = exposure(broken(template, "AWS::EC2::SecurityGroup", open_ssh))
    assert any("port 22 open" in p for p in ssh)
    assert any("tcp:22-22 open to the internet" in p for p in ssh)
    amqp = exposure(broken(template, "AWS::EC2::SecurityGroupIngress", open_amqp))
    assert any("open to 10.0.0.0/16, not only nodes or the ELB" in p for p in amqp)


def test_exposure_review_fails_when_the_internet_reaches_a_non_listener_port() -> None:
    assert any("open to the internet" in p for p in exposure(synthesize().template_json, listener_ports={443}))
