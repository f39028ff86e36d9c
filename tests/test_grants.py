"""grant_statements: statements land in the grantee's policy, with their acknowledgments beside them."""

from __future__ import annotations

import pytest
from aws_cdk import Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template
from constructs import IConstruct

from alchemy_constructs.grants import grant_statements
from tests.synth import construct_template

RULE = "AwsSolutions-IAM5[Resource::*]"
REASON = "A reason long enough for a reviewer to read why this wildcard is deliberate here."


def acknowledged(root: IConstruct) -> dict[str, set[str]]:
    """Construct path -> acknowledged rule ids, for every acknowledgment under ``root``."""
    found: dict[str, set[str]] = {}
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                found.setdefault(construct.node.path, set()).update(
                    rule.removeprefix("Annotation::") for rule in entry.data
                )
    return found


def granted_to_a_role() -> tuple[Template, dict[str, set[str]]]:
    paths: dict[str, set[str]] = {}

    def build(stack: Stack) -> None:
        role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
        holders = grant_statements(
            role,
            [iam.PolicyStatement(sid="Describe", actions=["ec2:DescribeInstances"], resources=["*"])],
            acknowledgments={RULE: REASON},
        )
        sns.Topic(stack, "Waits").node.add_dependency(holders)
        paths.update(acknowledged(stack))

    return construct_template(build), paths


def test_statements_keep_their_sid_in_the_grantees_policy() -> None:
    template, _ = granted_to_a_role()
    (policy,) = template.find_resources("AWS::IAM::Policy").values()
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {"Sid": "Describe", "Action": "ec2:DescribeInstances", "Effect": "Allow", "Resource": "*"}
    ]


def test_acknowledgments_go_on_the_policy_that_received_the_statements() -> None:
    _, paths = granted_to_a_role()
    assert paths == {"ConstructUnderTest/Role/DefaultPolicy/Resource": {RULE}}


def test_what_is_returned_makes_a_resource_wait_for_the_permission() -> None:
    template, _ = granted_to_a_role()
    (policy_id,) = template.find_resources("AWS::IAM::Policy")
    (topic,) = template.find_resources("AWS::SNS::Topic").values()
    assert topic["DependsOn"] == [policy_id]


def test_a_grantee_without_an_identity_policy_is_refused() -> None:
    def build(stack: Stack) -> None:
        principal = iam.ServicePrincipal("ec2.amazonaws.com")
        grant_statements(principal, [iam.PolicyStatement(actions=["ec2:DescribeInstances"], resources=["*"])])

    with pytest.raises(ValueError, match=r"^grantee .* takes no identity policy; grant to a role or a construct"):
        construct_template(build)
