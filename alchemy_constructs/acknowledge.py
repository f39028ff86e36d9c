"""Acknowledging one cdk-nag finding on one construct, with the reason a reviewer reads."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
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


def nag_resource_name(stack: Stack, value: str) -> str:
    """A resource string as cdk-nag names it in a finding: ``Ref`` as ``<AWS::Region>``, ``GetAtt``
    as ``<Id.Attr>``, literals as they are (an account-bound stack has literal ARNs)."""
    resolved = stack.resolve(value)
    if isinstance(resolved, str):
        return resolved
    parts = []
    for part in resolved["Fn::Join"][1]:
        if isinstance(part, str):
            parts.append(part)
        elif "Ref" in part:
            parts.append(f"<{part['Ref']}>")
        else:
            parts.append(f"<{'.'.join(part['Fn::GetAtt'])}>")
    return "".join(parts)
