"""Least privilege and network exposure, read from the synthesized template of every variant."""

from __future__ import annotations

import copy

import pytest

from alchemy_constructs.node_group import CLUSTER_PORTS
from tests.security_checks import (
    MANAGED_POLICIES,
    aws_managed_policies,
    covers_the_internet,
    exposure_problems,
    iam_problems,
)
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
            {"Action": ["s3:DeleteObject", "secretsmanager:GetSecretValue"], "Effect": "Allow", "Resource": "*"}
        )

    problems = iam_problems(broken(synthesize().template_json, "AWS::IAM::ManagedPolicy", widen))
    assert any("action s3:DeleteObject is not in the allow-list" in p for p in problems)
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


def test_iam_review_reads_the_actions_of_an_attached_aws_managed_policy() -> None:
    """The old node role's AmazonSSMManagedInstanceCore fails the review: ssm:GetParameter(s) on Resource *."""

    def attach_ssm_core(role: dict) -> None:
        role["Properties"]["ManagedPolicyArns"] = [
            {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::aws:policy/AmazonSSMManagedInstanceCore"]]}
        ]

    problems = iam_problems(broken(synthesize().template_json, "AWS::IAM::Role", attach_ssm_core))
    assert any(
        "(AmazonSSMManagedInstanceCore): action ssm:GetParameters is not in the allow-list" in p for p in problems
    )
    assert any("(AmazonSSMManagedInstanceCore): ssm:GetParameter on Resource *" in p for p in problems)


def test_iam_review_fails_on_a_managed_policy_missing_from_the_table() -> None:
    def attach_admin(role: dict) -> None:
        role["Properties"]["ManagedPolicyArns"] = ["arn:aws:iam::aws:policy/AdministratorAccess"]

    problems = iam_problems(broken(synthesize().template_json, "AWS::IAM::Role", attach_admin))
    assert any("AWS managed policy AdministratorAccess is not in the managed policy table" in p for p in problems)


def test_every_managed_policy_the_stack_attaches_is_in_the_table() -> None:
    attached = {name for _, name in aws_managed_policies(synthesize().template_json)}
    assert attached == {"AWSLambdaBasicExecutionRole"}
    assert attached <= set(MANAGED_POLICIES)


def test_managed_policy_names_are_read_from_sub_and_join_arns() -> None:
    template = {
        "Resources": {
            "A": {
                "Properties": {
                    "ManagedPolicyArns": [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/X"}]
                }
            },
            "B": {
                "Properties": {
                    "ManagedPolicyArns": [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::aws:policy/Y"]]}]
                }
            },
            "C": {"Properties": {"ManagedPolicyArns": [{"Ref": "OwnPolicy"}]}},
        }
    }
    assert aws_managed_policies(template) == [("A", "X"), ("B", "Y")]


@pytest.mark.parametrize(
    "cidrs",
    [
        ["0.0.0.0/0"],
        ["::/0"],
        ["0.0.0.0/1", "128.0.0.0/1"],
        ["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"],
        # Every public range: all of 0.0.0.0/0 except 10.0.0.0/8.
        ["0.0.0.0/5", "8.0.0.0/7", "11.0.0.0/8", "12.0.0.0/6", "16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/2", "128.0.0.0/1"],
        ["2000::/4", "3000::/4"],
    ],
)
def test_cidrs_that_cover_the_internet_together_are_open(cidrs: list[str]) -> None:
    assert covers_the_internet(cidrs)


@pytest.mark.parametrize("cidrs", [["203.0.113.0/24"], ["0.0.0.0/1"], ["10.0.0.0/8", "172.16.0.0/12"], ["2000::/4"]])
def test_cidrs_that_leave_part_of_the_internet_out_are_not_open(cidrs: list[str]) -> None:
    assert not covers_the_internet(cidrs)


def test_exposure_review_fails_on_ssh_open_to_two_halves_of_the_internet() -> None:
    def open_ssh_in_halves(group: dict) -> None:
        group["Properties"].setdefault("SecurityGroupIngress", []).extend(
            {"CidrIp": half, "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22} for half in ("0.0.0.0/1", "128.0.0.0/1")
        )

    problems = exposure(broken(synthesize().template_json, "AWS::EC2::SecurityGroup", open_ssh_in_halves))
    assert any("tcp:22-22 open to the internet" in p for p in problems)


def test_exposure_review_fails_on_a_node_port_open_to_two_halves_of_the_internet() -> None:
    def open_amqp_in_halves(group: dict) -> None:
        if group["Properties"]["GroupDescription"].startswith("Alchemy nodes"):
            group["Properties"]["SecurityGroupIngress"] = [
                {"CidrIp": half, "IpProtocol": "tcp", "FromPort": 5672, "ToPort": 5672}
                for half in ("0.0.0.0/1", "128.0.0.0/1")
            ]

    template = copy.deepcopy(synthesize().template_json)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::EC2::SecurityGroup":
            open_amqp_in_halves(resource)
    problems = exposure(template)
    assert any("tcp:5672-5672 open to the internet" in p for p in problems)
