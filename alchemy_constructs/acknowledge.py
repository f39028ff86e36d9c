"""Acknowledging one cdk-nag finding on one construct, with the reason a reviewer reads."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Stack, Token, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Records that ``rule_id`` is a deliberate choice on the one resource ``construct`` stands for.

    ``rule_id`` names one finding, e.g. ``AwsSolutions-ELB1`` or, for rules that report
    several findings per resource, ``AwsSolutions-IAM5[Resource::*]``. Given an L2 construct,
    the acknowledgment goes on its CloudFormation resource, not on the whole subtree (CDK's
    own ``Annotation::`` warnings are raised on the L2 construct, so they stay there).
    """
    resource = construct.node.default_child
    target = construct
    if isinstance(resource, CfnResource) and not rule_id.startswith("Annotation::"):
        target = resource
    Validations.of(target).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def nag_attribute_name(construct: IConstruct, attribute: str) -> str:
    """How cdk-nag names ``Fn::GetAtt`` of ``construct``'s resource in a finding: ``<LogicalId.Attribute>``.

    Read from the construct itself (its CloudFormation resource's logical id), so the name follows
    the resource wherever the construct sits.
    """
    resource = construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise ValueError(f"{construct.node.path} has no CloudFormation resource of its own to name")
    return f"<{Stack.of(resource).get_logical_id(resource)}.{attribute}>"


def nag_objects_name(bucket: IConstruct, pattern: str) -> str:
    """cdk-nag's name of ``bucket.arn_for_objects(pattern)`` for a bucket defined in this app."""
    return f"{nag_attribute_name(bucket, 'Arn')}/{pattern}"


def nag_arn_name(stack: Stack, *, service: str, resource: str) -> str:
    """cdk-nag's name of an ARN of ``stack``'s partition, region and account: each part is the literal
    when the stack knows it, else the pseudo parameter as cdk-nag writes it (``<AWS::Region>``)."""
    parts = {
        "AWS::Partition": stack.partition,
        "AWS::Region": stack.region,
        "AWS::AccountId": stack.account,
    }
    partition, region, account = (f"<{name}>" if Token.is_unresolved(value) else value for name, value in parts.items())
    return f"arn:{partition}:{service}:{region}:{account}:{resource}"
