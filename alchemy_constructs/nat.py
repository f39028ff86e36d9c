"""Hardening of a NAT instance that CDK's ``NatProvider.instance_v2`` made.

The provider leaves IMDSv1 on, monitoring off and the root volume unencrypted, and gives the
instance no fixed public address: upstream allow-lists would break whenever it is replaced.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2

from alchemy_constructs.acknowledge import acknowledge

ROOT_DEVICE_NAME = "/dev/xvda"
"""Root device of Amazon Linux 2023, the image the NAT instances boot."""


def harden_nat_instance(instance: ec2.Instance, *, launch_template_name: str) -> ec2.CfnEIP:
    """Gives one NAT instance IMDSv2, detailed monitoring, an encrypted root volume and an Elastic IP.

    ``launch_template_name`` names the launch template that carries the metadata options: CDK's
    own ``InstanceRequireImdsv2Aspect`` names it after the construct path, which collides when two
    clusters share an account (left unnamed, cdk-nag's EC26 matches it to the node group's
    unnamed template). Returns the Elastic IP, whose address is the private subnets' public one.
    """
    if not launch_template_name or len(launch_template_name) > 128:
        raise ValueError(f"launch_template_name must be 1 to 128 characters (EC2); received {launch_template_name!r}")
    metadata_options = ec2.CfnLaunchTemplate(
        instance,
        "MetadataOptions",
        launch_template_name=launch_template_name,
        launch_template_data=ec2.CfnLaunchTemplate.LaunchTemplateDataProperty(
            metadata_options=ec2.CfnLaunchTemplate.MetadataOptionsProperty(
                http_tokens="required", http_endpoint="enabled", http_put_response_hop_limit=1
            )
        ),
    )
    cfn_instance = instance.instance
    cfn_instance.launch_template = ec2.CfnInstance.LaunchTemplateSpecificationProperty(
        launch_template_id=metadata_options.ref,
        version=metadata_options.attr_latest_version_number,
    )
    cfn_instance.monitoring = True
    cfn_instance.block_device_mappings = [
        ec2.CfnInstance.BlockDeviceMappingProperty(
            device_name=ROOT_DEVICE_NAME,
            ebs=ec2.CfnInstance.EbsProperty(encrypted=True, volume_type="gp3", delete_on_termination=True),
        )
    ]
    acknowledge(
        instance,
        "AwsSolutions-EC29",
        (
            "The NAT instance is the routed target of the private route tables and cannot sit in an "
            "Auto Scaling group; termination protection would make `cdk destroy` fail, and "
            "`cdk deploy` recreates the instance if it is lost."
        ),
    )
    return ec2.CfnEIP(instance, "ElasticIp", domain="vpc", instance_id=instance.instance_id)


def nat_launch_template_name(scope: Stack, index: int) -> str:
    """``<stack name>-nat-<index>``: unique per account and region, as stack names are."""
    return f"{scope.stack_name}-nat-{index}"
