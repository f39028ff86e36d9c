"""The node's deploy values: one SSM parameter with the values CloudFormation knows only at deploy time.

The node bundle is built at synth, and the user data must stay small whatever the number of services, so
the values that only a deploy can fill in (secret ARNs, bucket names, the images' repository) travel in
one String parameter: an environment-file text (``NAME=value`` lines) that CloudFormation resolves. Each
node reads it at boot with its instance role, which may read this one parameter and nothing else of SSM.

A String parameter of the standard tier holds 4 KB (no charge, and no KMS key: the values are ARNs and
names, never a secret's value). The size is checked at synth with each deploy-time value counted at its
longest, so a stack that would not deploy fails to synthesize and says how many entries fit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import jsii
from aws_cdk import IStableStringProducer, Lazy, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from constructs import Construct, DependencyGroup, IValidation

from alchemy_constructs.grants import grant_statements

STANDARD_TIER_LIMIT = 4096
"""Bytes a standard-tier SSM parameter value may hold."""
PSEUDO_PARAMETER_LENGTHS = {
    "AWS::AccountId": 12,
    "AWS::Region": 14,
    "AWS::URLSuffix": 16,
    "AWS::Partition": 10,
    "AWS::StackName": 128,
}
"""The longest each pseudo parameter can be (a region such as ap-southeast-2; amazonaws.com.cn)."""
OTHER_VALUE_LENGTH = 160
"""What any other deploy-time value is counted as: a generated secret's ARN is about 60 bytes plus its
logical id plus 20 (about 120 for this stack's), a bucket name at most 63."""

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def longest_length(value: Any) -> int:
    """Bytes a resolved CloudFormation value can take once deployed, counting what only the deploy knows at
    its longest (see :data:`PSEUDO_PARAMETER_LENGTHS` and :data:`OTHER_VALUE_LENGTH`)."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, (int, float)):
        return len(str(value))
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref" and argument in PSEUDO_PARAMETER_LENGTHS:
            return PSEUDO_PARAMETER_LENGTHS[argument]
        if function == "Fn::Join" and isinstance(argument[1], list):
            separator, items = argument
            return sum(longest_length(item) for item in items) + len(separator) * max(len(items) - 1, 0)
        if function == "Fn::Sub" and isinstance(argument, str):
            return sum(
                PSEUDO_PARAMETER_LENGTHS.get(part, OTHER_VALUE_LENGTH) if index % 2 else len(part.encode())
                for index, part in enumerate(re.split(r"\$\{([^}]+)\}", argument))
            )
    return OTHER_VALUE_LENGTH


@jsii.implements(IStableStringProducer)
class _Digest:
    """SHA-256 of the parameter's value as CloudFormation receives it (references unresolved), produced
    at synth when every lazy part of the value is known. Its first 128 bits: the digest only has to
    change when the value does (so that the nodes roll), and the user data has 2 KB to hold it."""

    def __init__(self, stack: Stack, value: str) -> None:
        self._stack = stack
        self._value = value

    def produce(self) -> str:
        resolved = self._stack.resolve(self._value)
        return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:32]


class DeployValues(Construct):
    """One SSM String parameter holding ``values`` as ``NAME=value`` lines, in the given order."""

    parameter: ssm.StringParameter
    text: str
    """The parameter's value as the stack gives it (tokens unresolved): ``NAME=value`` lines."""
    parameter_name: str
    """The parameter's name (a deploy-time value: CloudFormation generates it)."""
    digest: str
    """SHA-256 of the unresolved value: it changes whenever the values' definition does (a new secret, a
    renamed bucket, another service), which is what should roll the nodes."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        values: Mapping[str, str],
        growing_entry: str | None = None,
        description: str = "Alchemy nodes: values known at deploy time (ARNs, names), read at boot",
    ) -> None:
        """
        :param values: name -> value (CDK tokens are fine); names are environment variable names.
        :param growing_entry: the name whose value is a space-separated list with an entry per service
            (``service=ARN``), for the size check's "how many fit".
        """
        super().__init__(scope, construct_id)
        if not values:
            raise ValueError("DeployValues values must name at least one value (SSM keeps no empty parameter)")
        for name, value in values.items():
            if not _NAME.match(name):
                raise ValueError(f"DeployValues name {name!r} must be upper case letters, digits and _")
            if not Token.is_unresolved(value) and "\n" in value:
                raise ValueError(f"DeployValues {name}: the value must be one line; received {value!r}")
        if growing_entry is not None and growing_entry not in values:
            raise ValueError(
                f"DeployValues growing_entry {growing_entry!r} is not one of the names: {', '.join(values)}"
            )
        self._values = dict(values)
        self._growing_entry = growing_entry
        self.text = "".join(f"{name}={value}\n" for name, value in values.items())
        self.parameter = ssm.StringParameter(
            self, "Parameter", string_value=self.text, tier=ssm.ParameterTier.STANDARD, description=description
        )
        self.parameter_name = self.parameter.parameter_name
        stack = Stack.of(self)
        self.digest = Lazy.string(_Digest(stack, self.text))
        self.node.add_validation(_SizeCheck(self))

    def longest_size(self) -> int:
        """Bytes of the value once deployed, each deploy-time value at its longest."""
        return longest_length(Stack.of(self).resolve(self.text))

    def size_problem(self) -> str | None:
        """Why the value may not fit a standard-tier parameter, or None."""
        size = self.longest_size()
        if size <= STANDARD_TIER_LIMIT:
            return None
        message = (
            f"DeployValues {self.node.path}: the value can be {size} bytes once deployed, over the "
            f"{STANDARD_TIER_LIMIT} bytes of a standard SSM parameter"
        )
        if self._growing_entry is not None:
            stack = Stack.of(self)
            entries = str(self._values[self._growing_entry])
            count = len(entries.split(" "))
            each = longest_length(stack.resolve(entries)) // count + 1
            fixed = size - each * count
            fit = max((STANDARD_TIER_LIMIT - fixed) // each, 0)
            message += f"; each service adds about {each} bytes ({self._growing_entry}): {fit} fit, {count} given"
        return message

    def read_statement(self) -> iam.PolicyStatement:
        """Reading this one parameter: ``ssm:GetParameter`` on its ARN, nothing else."""
        return iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[self.parameter.parameter_arn])

    def grant_read(self, grantee: iam.IGrantable) -> DependencyGroup:
        """Lets ``grantee`` read this parameter (and no other); a String parameter needs no KMS right.

        Returns the policies that hold the permission (a node's first boot reads the values).
        """
        return grant_statements(grantee, [self.read_statement()])


@jsii.implements(IValidation)
class _SizeCheck:
    """Run at synth, when the lazy parts of the value (the node group's logical id) are known."""

    def __init__(self, values: DeployValues) -> None:
        self._values = values

    def validate(self) -> list[str]:
        problem = self._values.size_problem()
        return [] if problem is None else [problem]
