"""Acknowledging one cdk-nag finding on one construct, with the reason a reviewer reads."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Records that ``rule_id`` is a deliberate choice on ``construct`` (and its children).

    ``rule_id`` names one finding, e.g. ``AwsSolutions-ELB1`` or, for rules that report
    several findings per resource, ``AwsSolutions-IAM5[Resource::*]``.
    """
    Validations.of(construct).acknowledge(Acknowledgment(id=rule_id, reason=reason))
