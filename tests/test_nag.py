"""cdk-nag's AwsSolutions pack: no unacknowledged finding, and every acknowledgment is narrow and reasoned."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from aws_cdk import CfnResource, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancing as elb
from aws_cdk import aws_logs as logs
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

import app as cdk_app
from tests.synth import VARIANTS, bare_app, cdk_app_context, scratch_directory, synthesize

RULE_PACK_PREFIXES = ("AwsSolutions-", "NIST.800.53.R5-")

EXPECTED_ACKNOWLEDGMENTS = {
    ("AlchemyStack/AccessLogs/Resource/Resource", "NIST.800.53.R5-S3BucketReplicationEnabled"),
    ("AlchemyStack/AccessLogs/Resource/Resource", "NIST.800.53.R5-S3DefaultEncryptionKMS"),
    ("AlchemyStack/EtcdSnapshots/Resource/Resource", "NIST.800.53.R5-S3BucketReplicationEnabled"),
    (
        "AlchemyStack/EtcdSnapshotRestore/Policy/Resource",
        "AwsSolutions-IAM5[Resource::<EtcdSnapshotsF5CD1D58.Arn>/alchemy/etcd/*]",
    ),
    ("AlchemyStack/Network/Resource/PublicSubnet1/DefaultRoute", "NIST.800.53.R5-VPCNoUnrestrictedRouteToIGW"),
    ("AlchemyStack/Network/Resource/PublicSubnet1/NatInstance/Resource", "AwsSolutions-EC29"),
    ("AlchemyStack/Network/Resource/PublicSubnet2/DefaultRoute", "NIST.800.53.R5-VPCNoUnrestrictedRouteToIGW"),
    ("AlchemyStack/NodeGroup/Policy/Resource", "AwsSolutions-IAM5[Resource::*]"),
    (
        "AlchemyStack/NodeGroup/Policy/Resource",
        "AwsSolutions-IAM5[Resource::<EtcdSnapshotsF5CD1D58.Arn>/alchemy/etcd/*]",
    ),
    (
        "AlchemyStack/NodeGroup/Policy/Resource",
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:autoscaling:<AWS::Region>:<AWS::AccountId>:"
        "autoScalingGroup:*:autoScalingGroupName/*]",
    ),
    ("AlchemyStack/NodeGroup/Resource/ASG", "NIST.800.53.R5-AutoScalingGroupELBHealthCheckRequired"),
    ("AlchemyStack/NodeGroup/SessionManagerPolicy/Resource", "AwsSolutions-IAM5[Resource::*]"),
    ("AlchemyStack/RouterLoadBalancer/Resource/Resource", "AwsSolutions-ELB1"),
    ("AlchemyStack/RouterLoadBalancer/Resource/Resource", "AwsSolutions-ELB5"),
    ("AlchemyStack/RouterLoadBalancer/Resource/Resource", "NIST.800.53.R5-ELBACMCertificateRequired"),
    ("AlchemyStack/RouterLoadBalancer/Resource/Resource", "NIST.800.53.R5-ELBTlsHttpsListenersOnly"),
    ("AlchemyStack/RouterLoadBalancer/Resource/SecurityGroup/Resource", "AwsSolutions-EC23"),
    ("AlchemyStack/Secrets/EtcdRootPassword/Resource", "AwsSolutions-SMG4"),
    ("AlchemyStack/Secrets/EtcdRootPassword/Resource", "NIST.800.53.R5-SecretsManagerRotationEnabled"),
    ("AlchemyStack/Secrets/RabbitMqAdminPassword/Resource", "AwsSolutions-SMG4"),
    ("AlchemyStack/Secrets/RabbitMqAdminPassword/Resource", "NIST.800.53.R5-SecretsManagerRotationEnabled"),
    ("AlchemyStack/Secrets/RabbitMqErlangCookie/Resource", "AwsSolutions-SMG4"),
    ("AlchemyStack/Secrets/RabbitMqErlangCookie/Resource", "NIST.800.53.R5-SecretsManagerRotationEnabled"),
    ("AlchemyStack/Secrets/RabbitMqHelloWorldPassword/Resource", "AwsSolutions-SMG4"),
    ("AlchemyStack/Secrets/RabbitMqHelloWorldPassword/Resource", "NIST.800.53.R5-SecretsManagerRotationEnabled"),
    ("AlchemyStack/Secrets/RabbitMqRouterPassword/Resource", "AwsSolutions-SMG4"),
    ("AlchemyStack/Secrets/RabbitMqRouterPassword/Resource", "NIST.800.53.R5-SecretsManagerRotationEnabled"),
    ("AlchemyStack/ServerAccessLogs/Resource/Resource", "NIST.800.53.R5-S3BucketReplicationEnabled"),
    ("AlchemyStack/ServerAccessLogs/Resource/Resource", "NIST.800.53.R5-S3DefaultEncryptionKMS"),
}
"""Every deliberate finding on the default synth; a new one must be added here, in review."""


@functools.cache
def acknowledgments(root: IConstruct) -> tuple[tuple[IConstruct, str, str], ...]:
    """(construct, rule id, reason) for every rule-pack acknowledgment under ``root``.

    Cached: a synthesized variant's tree is shared by its tests, and walking it costs a jsii round trip a construct.
    """
    found = []
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule_id, reason in entry.data.items():
                    rule = rule_id.removeprefix("Annotation::")
                    if rule.startswith(RULE_PACK_PREFIXES):
                        found.append((construct, rule, reason))
    return tuple(found)


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_unacknowledged_finding(variant: str) -> None:
    synthesis = synthesize(**VARIANTS[variant])
    assert synthesis.nag_violations == []
    assert synthesis.passed_validation


def test_the_app_runs_the_nist_pack_too() -> None:
    """An unencrypted log group added to the app's stack is a NIST 800-53 rev 5 finding."""
    app = cdk_app.create_app(context=cdk_app_context(), outdir=scratch_directory("nag-"))
    stack = cdk_app.build(app)
    logs.LogGroup(stack, "Unencrypted", retention=logs.RetentionDays.ONE_DAY)
    with pytest.raises(RuntimeError, match=r"ValidationFailed"):
        app.synth()
    report = json.loads((Path(app.outdir) / "validation-report.json").read_text())
    rules = {v["ruleName"] for r in report["pluginReports"] for v in r["violations"]}
    assert "NIST.800.53.R5-CloudWatchLogGroupEncrypted" in rules


def test_the_pack_reports_a_finding_it_was_not_told_about() -> None:
    """The harness can fail: a bare classic ELB, not acknowledged, is reported."""
    app = bare_app(context=cdk_app_context(), outdir=scratch_directory("nag-"))
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
def test_every_acknowledgment_is_on_one_cloudformation_resource(variant: str) -> None:
    """Not on a stack, not on a construct whose subtree holds several resources."""
    for construct, rule, _ in acknowledgments(synthesize(**VARIANTS[variant]).stack):
        assert not isinstance(construct, Stack), f"{rule} acknowledged on a whole stack"
        assert isinstance(construct, CfnResource), f"{rule} acknowledged on a subtree: {construct.node.path}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_acknowledgment_has_a_real_reason(variant: str) -> None:
    for construct, rule, reason in acknowledgments(synthesize(**VARIANTS[variant]).stack):
        assert len(reason) >= 60, f"{construct.node.path} {rule}: reason too short"
        assert "TODO" not in reason.upper()


def test_plain_http_beside_https_is_acknowledged_for_what_it_is() -> None:
    reasons = {rule: reason for _, rule, reason in acknowledgments(synthesize(**VARIANTS["https"]).stack)}
    assert "cannot redirect" in reasons["AwsSolutions-ELB5"]
    assert "TLS ends at the ELB" in reasons["AwsSolutions-ELB5"]


def test_restricted_ingress_needs_no_open_to_the_world_acknowledgment() -> None:
    rules = {rule for _, rule, _ in acknowledgments(synthesize(**VARIANTS["restricted_ingress_with_key_pair"]).stack)}
    assert "AwsSolutions-EC23" not in rules
