"""Network: VPC, subnets per AZ, NAT instances (not gateways), flow logs."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Capture, Match, Template

from tests.builders import AZS, network_template


@pytest.fixture(scope="module")
def template() -> Template:
    return network_template()


def test_vpc_has_the_cidr_and_dns_support_and_hostnames(template: Template) -> None:
    template.has_resource_properties(
        "AWS::EC2::VPC", {"CidrBlock": "10.0.0.0/16", "EnableDnsSupport": True, "EnableDnsHostnames": True}
    )


def test_one_public_and_one_private_subnet_per_az(template: Template) -> None:
    template.resource_count_is("AWS::EC2::Subnet", 4)
    for az in AZS:
        template.has_resource_properties(
            "AWS::EC2::Subnet",
            {
                "AvailabilityZone": az,
                "MapPublicIpOnLaunch": False,
                "Tags": Match.array_with([{"Key": "aws-cdk:subnet-type", "Value": "Public"}]),
            },
        )
        template.has_resource_properties(
            "AWS::EC2::Subnet",
            {
                "AvailabilityZone": az,
                "MapPublicIpOnLaunch": False,
                "Tags": Match.array_with([{"Key": "aws-cdk:subnet-type", "Value": "Private"}]),
            },
        )


def test_subnets_are_slash_24s(template: Template) -> None:
    cidrs = [subnet["Properties"]["CidrBlock"] for subnet in template.find_resources("AWS::EC2::Subnet").values()]
    assert all(cidr.endswith("/24") for cidr in cidrs)
    assert len(set(cidrs)) == 4


def test_internet_gateway_is_attached(template: Template) -> None:
    template.resource_count_is("AWS::EC2::InternetGateway", 1)
    template.resource_count_is("AWS::EC2::VPCGatewayAttachment", 1)


def test_no_nat_gateway_is_used(template: Template) -> None:
    template.resource_count_is("AWS::EC2::NatGateway", 0)


def test_one_nat_instance_by_default(template: Template) -> None:
    template.resource_count_is("AWS::EC2::Instance", 1)


def test_one_nat_instance_per_az_when_asked() -> None:
    network_template(nat_per_az=True).resource_count_is("AWS::EC2::Instance", 2)
    network_template(nat_per_az=True).resource_count_is("AWS::EC2::EIP", 2)


def test_nat_instance_forwards_traffic(template: Template) -> None:
    template.has_resource_properties("AWS::EC2::Instance", {"SourceDestCheck": False})


def test_nat_instance_has_an_elastic_ip(template: Template) -> None:
    instance_id = next(iter(template.find_resources("AWS::EC2::Instance")))
    template.has_resource_properties("AWS::EC2::EIP", {"Domain": "vpc", "InstanceId": {"Ref": instance_id}})


def test_private_default_routes_go_to_the_nat_instance(template: Template) -> None:
    instance_id = next(iter(template.find_resources("AWS::EC2::Instance")))
    routes = template.find_resources(
        "AWS::EC2::Route", {"Properties": {"DestinationCidrBlock": "0.0.0.0/0", "InstanceId": {"Ref": instance_id}}}
    )
    assert len(routes) == len(AZS)


def test_public_default_route_goes_to_the_internet_gateway(template: Template) -> None:
    template.has_resource_properties(
        "AWS::EC2::Route", {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": Match.any_value()}
    )


def test_nat_instance_requires_imdsv2(template: Template) -> None:
    template_id = Capture()
    template.has_resource_properties(
        "AWS::EC2::Instance",
        {"LaunchTemplate": {"LaunchTemplateId": {"Ref": template_id}, "Version": Match.any_value()}},
    )
    launch_template = template.find_resources("AWS::EC2::LaunchTemplate")[template_id.as_string()]
    assert launch_template["Properties"]["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"


def test_nat_instance_root_volume_is_encrypted(template: Template) -> None:
    template.has_resource_properties(
        "AWS::EC2::Instance",
        {"BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": Match.object_like({"Encrypted": True})}]},
    )


def test_nat_security_group_admits_only_https_and_http_from_the_vpc(template: Template) -> None:
    (group,) = [
        g
        for g in template.find_resources("AWS::EC2::SecurityGroup").values()
        if g["Properties"]["GroupDescription"] == "Security Group for NAT instances"
    ]
    rules = {
        (r["CidrIp"], r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in group["Properties"]["SecurityGroupIngress"]
    }
    assert rules == {("10.0.0.0/16", "tcp", 80, 80), ("10.0.0.0/16", "tcp", 443, 443)}


def test_nothing_is_open_to_the_internet_or_to_ssh(template: Template) -> None:
    for group in template.find_resources("AWS::EC2::SecurityGroup").values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") != "0.0.0.0/0"
            assert rule.get("FromPort") != 22
    template.resource_count_is("AWS::EC2::SecurityGroupIngress", 0)


def test_flow_logs_capture_all_traffic_to_cloudwatch(template: Template) -> None:
    template.has_resource_properties(
        "AWS::EC2::FlowLog", {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"}
    )


def test_flow_logs_are_kept_for_a_month(template: Template) -> None:
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})


def test_three_azs_give_six_subnets() -> None:
    network_template(azs=("eu-west-1a", "eu-west-1b", "eu-west-1c")).resource_count_is("AWS::EC2::Subnet", 6)
