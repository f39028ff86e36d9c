"""Granting policy statements to an ``iam.IGrantable``, the way the ``grant_*`` methods here do.

CDK's ``iam.Grant.add_to_principal`` makes statements without a ``Sid`` and says nothing about the
policy that received them. The grants here keep their statement ids (what a reviewer reads in the
console) and acknowledge, on the policy that received the statements, the cdk-nag findings those
statements are known to raise: the grantee's own policy, which only the grantee knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from aws_cdk import aws_iam as iam
from constructs import Construct, Dependable, DependencyGroup

from alchemy_constructs.acknowledge import acknowledge

NO_ACKNOWLEDGMENTS: Mapping[str, str] = MappingProxyType({})


def grant_statements(
    grantee: iam.IGrantable,
    statements: Sequence[iam.PolicyStatement],
    *,
    acknowledgments: Mapping[str, str] = NO_ACKNOWLEDGMENTS,
) -> DependencyGroup:
    """Adds ``statements`` to ``grantee``'s identity policy; returns what holds them.

    ``acknowledgments`` (rule id -> reason) go on every policy that received a statement. A
    resource that must not be created before the permission exists depends on the returned group
    (``node.add_dependency``), as with ``iam.Grant.apply_before``.

    Raises ValueError when the grantee takes no identity policy (an imported role without
    policy updates, a service principal): the permission would silently be missing.
    """
    holders = DependencyGroup()
    policies: list[Construct] = []
    for statement in statements:
        result = grantee.grant_principal.add_to_principal_policy(statement)
        if not result.statement_added or result.policy_dependable is None:
            raise ValueError(
                f"grantee {grantee.grant_principal} takes no identity policy; grant to a role or a construct "
                "that implements iam.IGrantable with one"
            )
        holders.add(result.policy_dependable)
        for policy in _receiving_policies(grantee.grant_principal, result.policy_dependable):
            if policy not in policies:
                policies.append(policy)
    if acknowledgments and not policies:
        raise ValueError(
            f"grantee {grantee.grant_principal} does not say which policy received the statements, so the "
            f"findings they raise ({', '.join(acknowledgments)}) cannot be acknowledged on it"
        )
    for policy in policies:
        for rule_id, reason in acknowledgments.items():
            acknowledge(policy, rule_id, reason)
    return holders


def _receiving_policies(principal: iam.IPrincipal, dependable: object) -> list[Construct]:
    """The policy constructs a principal put a statement into.

    A principal that answers with its policy (the node group's managed policy) names it; CDK's
    ``Role`` answers with a group it fills only at synth, and its statements go into its
    ``DefaultPolicy`` child, so that child is the answer there.
    """
    roots = [root for root in Dependable.of(dependable).dependency_roots if isinstance(root, Construct)]
    if roots:
        return roots
    default_policy = principal.node.try_find_child("DefaultPolicy") if isinstance(principal, Construct) else None
    return [default_policy] if isinstance(default_policy, Construct) else []
