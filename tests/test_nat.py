"""NAT hardening: what harden_nat_instance adds to a NAT instance of CDK's provider, alone in a stack."""

from __future__ import annotations

import pytest
from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Capture, Match, Template

from alchemy_constructs.nat import harden_nat_instance, nat_launch_template_name
from tests.synth import construct_template


def nat_instance(stack: Stack) -> ec2.Instance:
    provider = ec2.NatProvider.instance_v2(instance_type=ec2.InstanceType("t3.micro"))
    ec2.Vpc(stack, "Vpc", max_azs=1, nat_gateway_provider=provider, nat_gateways=1)
    (instance,) = provider.gateway_instances
    assert isinstance(instance, ec2.Instance)
    return instance


@pytest.fixture(scope="module")
def template() -> Template:
    def build(stack: Stack) -> None:
        harden_nat_instance(nat_instance(stack), launch_template_name="cluster-nat-1")

    return construct_template(build)


def test_metadata_options_require_imdsv2_in_a_named_launch_template(template: Template) -> None:
    template_id = Capture()
    template.has_resource_properties(
        "AWS::EC2::Instance",
        {"LaunchTemplate": {"LaunchTemplateId": {"Ref": template_id}, "Version": Match.any_value()}},
    )
    launch_template = template.find_resources("AWS::EC2::LaunchTemplate")[template_id.as_string()]["Properties"]
    assert launch_template["LaunchTemplateName"] == "cluster-nat-1"
    assert launch_template["LaunchTemplateData"]["MetadataOptions"] == {
        "HttpEndpoint": "enabled",
        "HttpPutResponseHopLimit": 1,
        "HttpTokens": "required",
    }


def test_root_volume_is_encrypted_gp3_and_monitoring_is_on(template: Template) -> None:
    template.has_resource_properties(
        "AWS::EC2::Instance",
        {
            "Monitoring": True,
            "BlockDeviceMappings": [
                {
                    "DeviceName": "/dev/xvda",
                    "Ebs": {"Encrypted": True, "VolumeType": "gp3", "DeleteOnTermination": True},
                }
            ],
        },
    )


def test_the_instance_gets_an_elastic_ip(template: Template) -> None:
    (instance_id,) = template.find_resources("AWS::EC2::Instance")
    template.has_resource_properties("AWS::EC2::EIP", {"Domain": "vpc", "InstanceId": {"Ref": instance_id}})


def test_launch_template_name_is_the_stack_name_and_index() -> None:
    names = []

    def build(stack: Stack) -> None:
        names.append(nat_launch_template_name(stack, 2))
        nat_instance(stack)

    construct_template(build)
    assert names == ["ConstructUnderTest-nat-2"]


@pytest.mark.parametrize("name", ["", "x" * 129])
def test_a_launch_template_name_ec2_refuses_is_refused(name: str) -> None:
    def build(stack: Stack) -> None:
        harden_nat_instance(nat_instance(stack), launch_template_name=name)

    with pytest.raises(ValueError, match=r"^launch_template_name must be 1 to 128 characters \(EC2\); received '"):
        construct_template(build)
