"""cdk-nag's AwsSolutions pack: no unacknowledged finding, and every acknowledgment is narrow and reasoned."""

from __future__ import annotations

import tempfile

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancing as elb
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from tests.synth import TEST_CERTIFICATE, VARIANTS, cdk_app_context, synthesize

EXPECTED_ACKNOWLEDGMENTS = {
    ("AlchemyStack/Network/Resource/PublicSubnet1/NatInstance", "AwsSolutions-EC29"),
    ("AlchemyStack/RouterLoadBalancer/Resource", "AwsSolutions-ELB1"),
    ("AlchemyStack/RouterLoadBalancer/Resource", "AwsSolutions-ELB5"),
    ("AlchemyStack/RouterLoadBalancer/Resource/SecurityGroup", "AwsSolutions-EC23"),
    ("AlchemyStack/Secrets/RabbitMqErlangCookie", "AwsSolutions-SMG4"),
    ("AlchemyStack/Secrets/RabbitMqAdminPassword", "AwsSolutions-SMG4"),
    (
        "AlchemyStack/NodeGroup/Role",
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
    ),
    ("AlchemyStack/NodeGroup/Role", "AwsSolutions-IAM5[Resource::<EtcdSnapshotsF5CD1D58.Arn>/alchemy/etcd/*]"),
    ("AlchemyStack/NodeGroup/Role/DefaultPolicy", "AwsSolutions-IAM5[Resource::*]"),
}
"""Every deliberate finding on the default synth; a new one must be added here, in review."""


def acknowledgments(root: IConstruct) -> list[tuple[IConstruct, str, str]]:
    """(construct, rule id, reason) for every rule-pack acknowledgment under ``root``."""
    found = []
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule_id, reason in entry.data.items():
                    rule = rule_id.removeprefix("Annotation::")
                    if rule.startswith("AwsSolutions-"):
                        found.append((construct, rule, reason))
    return found


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_unacknowledged_finding(variant: str) -> None:
    synthesis = synthesize(**VARIANTS[variant])
    assert synthesis.nag_violations == []
    assert synthesis.passed_validation


def test_the_pack_reports_a_finding_it_was_not_told_about() -> None:
    """The harness can fail: a bare classic ELB, not acknowledged, is reported."""
    app = App(context=cdk_app_context(), outdir=tempfile.mkdtemp())
    stack = Stack(app, "Unacknowledged")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0, restrict_default_security_group=False)
    elb.LoadBalancer(stack, "Elb", vpc=vpc, internet_facing=True).add_listener(external_port=80)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match=r"ValidationFailed"):
        app.synth()


def test_acknowledgments_are_exactly_the_reviewed_ones() -> None:
    found = {(construct.node.path, rule) for construct, rule, _ in acknowledgments(synthesize().stack)}
    assert found == EXPECTED_ACKNOWLEDGMENTS


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_acknowledgment_is_stack_wide(variant: str) -> None:
    for construct, rule, _ in acknowledgments(synthesize(**VARIANTS[variant]).stack):
        assert not isinstance(construct, Stack), f"{rule} acknowledged on a whole stack"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_acknowledgment_has_a_real_reason(variant: str) -> None:
    for construct, rule, reason in acknowledgments(synthesize(**VARIANTS[variant]).stack):
        assert len(reason) >= 60, f"{construct.node.path} {rule}: reason too short"
        assert "TODO" not in reason.upper()


def test_plain_http_beside_https_is_acknowledged_for_what_it_is() -> None:
    reasons = {rule: reason for _, rule, reason in acknowledgments(synthesize(certificate_arn=TEST_CERTIFICATE).stack)}
    assert "cannot redirect" in reasons["AwsSolutions-ELB5"]
    assert "TLS ends at the ELB" in reasons["AwsSolutions-ELB5"]


def test_restricted_ingress_needs_no_open_to_the_world_acknowledgment() -> None:
    rules = {rule for _, rule, _ in acknowledgments(synthesize(ingress_cidrs="203.0.113.0/24").stack)}
    assert "AwsSolutions-EC23" not in rules
