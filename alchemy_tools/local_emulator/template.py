"""The template changes the emulator's app makes, and only it.

Applied by :func:`alchemy_tools.local_emulator.app.build`, which runs only when
:func:`alchemy_tools.local_emulator.enabled` says so. Each change
works around one moto gap and keeps the meaning the template has on AWS, or touches only
what the emulator cannot model (tags of KMS keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsii
from aws_cdk import Annotations, Aspects, CfnCondition, CfnOutput, CfnResource, Fn, IAspect, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ssm as ssm
from constructs import IConstruct

from alchemy_tools.local_emulator import NAT_ROOT_VOLUME_GB


def adapt(stack: Stack) -> None:
    """Adds :class:`EmulatorTemplate` to ``stack``; call only when :func:`enabled` says so."""
    Aspects.of(stack).add(EmulatorTemplate())


@jsii.implements(IAspect)
class EmulatorTemplate:
    """Rewrites the few template constructs moto cannot handle into forms that mean the same on AWS.

    1. An ingress rule with ``IpProtocol: -1`` and no ports crashes moto's security group
       (``KeyError: 'FromPort'``). It gets ``FromPort``/``ToPort`` ``-1``; AWS ignores ports
       for protocol -1, so the rule admits exactly the same traffic.
    2. moto's ``Fn::GetAtt`` on an Elastic IP knows no ``PublicIp``. Outputs use ``Ref``
       instead, which on AWS returns the same address.
    3. moto's ``RunInstances`` needs a size on every EBS mapping; AWS takes the snapshot's.
       The NAT instance's root mapping gets the Amazon Linux 2023 snapshot size.
    4. Lambda-backed custom resources cannot run in moto (no Lambda runtime, so creation
       never answers). They get a condition that is always false on the emulator, and a
       warning names each one: what they do (e.g. CDK's removal of the default security
       group's rules) is not exercised locally.
    5. moto's ``AWS::KMS::Key`` reads tags in the API's ``TagKey``/``TagValue`` form and
       crashes (``KeyError: 'TagKey'``) on CloudFormation's ``Key``/``Value``; keys are left
       untagged on the emulator.
    6. moto's ``AWS::SSM::Parameter`` requires a ``Name`` (``AttributeError`` in ``put_parameter``,
       answered as a 500 that the CLI retries into ``AlreadyExistsException``), where CloudFormation
       generates one. An unnamed parameter is named ``<stack name>-<logical id>`` on the emulator;
       whoever reads it does so through its ``Ref``, which returns the name either way. moto also
       reads its ``Tags`` as a list where CloudFormation gives a map (``TypeError``): parameters are
       left untagged on the emulator, like keys.
    """

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, ec2.CfnSecurityGroup):
            self._ports_on_all_traffic_ingress(node)
        elif isinstance(node, ec2.CfnInstance):
            self._sizes_on_ebs_mappings(node)
        elif isinstance(node, kms.CfnKey):
            node.add_property_deletion_override("Tags")
        elif isinstance(node, CfnOutput):
            self._ref_for_elastic_ip_address(node)
        elif isinstance(node, ssm.CfnParameter):
            self._named_and_untagged_parameter(node)
        elif isinstance(node, CfnResource) and _is_custom_resource(node.cfn_resource_type):
            node.cfn_options.condition = _never(Stack.of(node))
            Annotations.of(node).add_warning_v2(
                "alchemy:local-emulator-skips-custom-resource",
                f"{node.cfn_resource_type} is skipped on the local emulator: moto cannot run its Lambda",
            )

    @staticmethod
    def _named_and_untagged_parameter(parameter: ssm.CfnParameter) -> None:
        stack = Stack.of(parameter)
        if stack.resolve(parameter.name) is None:
            parameter.name = Fn.join("-", [stack.stack_name, stack.get_logical_id(parameter)])
        parameter.add_property_deletion_override("Tags")

    @staticmethod
    def _ports_on_all_traffic_ingress(group: ec2.CfnSecurityGroup) -> None:
        rules = Stack.of(group).resolve(group.security_group_ingress) or []
        for index, rule in enumerate(rules):
            protocol = _first(rule, "ipProtocol", "IpProtocol")
            if str(protocol) == "-1" and _first(rule, "fromPort", "FromPort") is None:
                group.add_property_override(f"SecurityGroupIngress.{index}.FromPort", -1)
                group.add_property_override(f"SecurityGroupIngress.{index}.ToPort", -1)

    @staticmethod
    def _sizes_on_ebs_mappings(instance: ec2.CfnInstance) -> None:
        mappings = Stack.of(instance).resolve(instance.block_device_mappings) or []
        for index, mapping in enumerate(mappings):
            ebs = _first(mapping, "ebs", "Ebs")
            if isinstance(ebs, dict) and _first(ebs, "volumeSize", "VolumeSize") is None:
                instance.add_property_override(f"BlockDeviceMappings.{index}.Ebs.VolumeSize", NAT_ROOT_VOLUME_GB)

    @staticmethod
    def _ref_for_elastic_ip_address(output: CfnOutput) -> None:
        stack = Stack.of(output)
        value = stack.resolve(output.value)
        if not isinstance(value, dict) or list(value) != ["Fn::GetAtt"]:
            return
        logical_id, attribute = value["Fn::GetAtt"]
        if attribute == "PublicIp" and _resource_type(stack, logical_id) == "AWS::EC2::EIP":
            output.value = Fn.ref(logical_id)


SKIP_CONDITION_ID = "LocalEmulatorSkips"


def _never(stack: Stack) -> CfnCondition:
    """The stack's always-false condition that keeps a resource out of the emulator's deploy."""
    existing = stack.node.try_find_child(SKIP_CONDITION_ID)
    if isinstance(existing, CfnCondition):
        return existing
    return CfnCondition(stack, SKIP_CONDITION_ID, expression=Fn.condition_equals("local-emulator", "aws"))


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    """The value under the first key present (CDK's lazy values are camelCase, overrides PascalCase)."""
    for key in keys:
        if key in data:
            return data[key]
    return None


def _is_custom_resource(resource_type: str) -> bool:
    return resource_type == "AWS::CloudFormation::CustomResource" or resource_type.startswith("Custom::")


def _resource_type(stack: Stack, logical_id: str) -> str | None:
    for child in stack.node.find_all():
        if isinstance(child, CfnResource) and stack.resolve(child.logical_id) == logical_id:
            return str(child.cfn_resource_type)
    return None
